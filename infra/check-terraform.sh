#!/usr/bin/env bash
# Static checks of the EC2 benchmark rig in terraform/; no AWS account, no
# credentials and no terraform binary are needed for steps 1-3.
#
#   1. every terraform/**/*.tf (and tests/*.tftest.hcl) parses with python-hcl2,
#      and every inline checkov suppression has a reason and is listed in
#      terraform/README.md;
#   2. the user-data templates render and pass `bash -n` (and shellcheck,
#      when it is installed);
#   3. checkov passes: no failed check (suppressions are inline
#      `#checkov:skip=CKV_...:reason` comments);
#   4. only when a terraform binary is present: `terraform fmt -check`, then
#      `terraform test` (plans and applies against a mocked AWS provider) or,
#      before terraform 1.7, `terraform validate`. The aws provider comes from
#      QUIVER_TF_PLUGIN_DIR (default /opt/tf-plugins) when that exists,
#      otherwise from the registry; when it cannot be installed this step is
#      skipped with a note.
#
# The tools live in venvs under ${QUIVER_TF_VENV:-$HOME/.cache/quiver-tf-venv},
# pinned by terraform/requirements.txt and reinstalled only when it changes.
set -euo pipefail
cd "$(dirname "$0")/.."

venv_root="${QUIVER_TF_VENV:-$HOME/.cache/quiver-tf-venv}"
requirements="terraform/requirements.txt"
plugin_dir="${QUIVER_TF_PLUGIN_DIR:-/opt/tf-plugins}"
started=$SECONDS

die() {
  echo "check-terraform: $*" >&2
  exit 1
}

[ -f "$requirements" ] || die "$requirements is missing"
command -v python3 >/dev/null 2>&1 || die "python3 is required"

# ensure_tool NAME PACKAGE: a venv at $venv_root/NAME with PACKAGE installed
# at the version pinned in the requirements file.
ensure_tool() {
  local name=$1 package=$2
  local venv="$venv_root/$name"
  local stamp="$venv/.quiver-requirements"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$requirements" "$stamp"; then
    return 0
  fi
  echo "==> installing $package into $venv (pinned by $requirements)"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --constraint "$requirements" "$package"
  cp "$requirements" "$stamp"
}

ensure_tool hcl2 python-hcl2
ensure_tool checkov checkov
hcl_python="$venv_root/hcl2/bin/python"
checkov_bin="$venv_root/checkov/bin/checkov"

# --- 1. parse every file; suppressions have reasons and are documented -----
echo "==> parsing terraform/ with python-hcl2"
"$hcl_python" - <<'PY'
import pathlib
import re
import sys

import hcl2

root = pathlib.Path("terraform")
files = sorted(
    p
    for pattern in ("*.tf", "*.tftest.hcl")
    for p in root.rglob(pattern)
    if ".terraform" not in p.parts
)
if not files:
    sys.exit("check-terraform: no .tf files under terraform/")

errors = []
for path in files:
    try:
        with path.open(encoding="utf-8") as handle:
            hcl2.load(handle)
    except Exception as exc:  # the parser raises several exception types
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        errors.append(f"{path}: does not parse: {first_line}")

readme = (root / "README.md").read_text(encoding="utf-8") if (root / "README.md").exists() else ""
skip = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")
suppressions = 0
for path in files:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = skip.search(line)
        if not match:
            continue
        suppressions += 1
        check_id, reason = match.group(1), (match.group(2) or "").strip()
        if len(reason) < 20:
            errors.append(f"{path}:{number}: suppression of {check_id} needs a real reason after the colon")
        if check_id not in readme:
            errors.append(f"{path}:{number}: suppression of {check_id} is not listed in terraform/README.md")

# Every variable is documented in the README's table.
variables = re.findall(r'^variable\s+"([^"]+)"', (root / "variables.tf").read_text(encoding="utf-8"), re.M)
for name in variables:
    if f"| `{name}` |" not in readme:
        errors.append(f"terraform/variables.tf: variable {name} is not in the README's variable table")

for error in errors:
    print(error, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"parsed {len(files)} files; {len(variables)} variables and {suppressions} inline suppressions, all documented")
PY

# --- 2. user data renders to valid shell ------------------------------------
echo "==> rendering the user-data templates"
rendered="$(mktemp -d)"
cleanup() { rm -rf "$rendered"; }
trap cleanup EXIT
"$hcl_python" - "$rendered" <<'PY'
import pathlib
import re
import sys

out = pathlib.Path(sys.argv[1])
templates = pathlib.Path("terraform/templates")

# Sample values like the ones main.tf passes to templatefile().
common_vars = {
    "repo_url": "https://example.com/quiver.git",
    "ref": "main",
    "binary_url": "",
    "binary_sha256": "",
}
role_vars = {
    "server": {
        "region": "us-east-1",
        "bucket": "quiver-bench-example",
        "data_prefix": "data/",
        "source_name": "lake",
        "flight_port": "50051",
        "admin_port": "9090",
        "cache_memory": "1GiB",
        "cache_disk": "auto",
        "use_instance_store": "true",
        "topology_key": "cluster/topology.json",
        "private_ip": "10.42.0.4",
        "tls": "true",
        "ca_cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "node_cert": "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----",
        "node_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
        "reader_token": "r3ader",
        "admin_token": "adm1n",
        "peer_token": "p33r",
        "sql_distributed": "on",
    },
    "client": {
        "region": "us-east-1",
        "bucket": "quiver-bench-example",
        "data_prefix": "data/",
        "source_name": "lake",
        "tls": "true",
        "ca_cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "admin_token": "adm1n",
        "ssh_user": "admin",
    },
}

# The templates use only plain ${name} interpolations and the $${ and %%{
# escapes, so a small renderer is exact for them; anything richer is refused.
token = re.compile(r"\$\$\{|%%\{|\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}|\$\{|%\{")


def render(name, values):
    text = (templates / name).read_text(encoding="utf-8")
    used = set()

    def substitute(match):
        whole = match.group(0)
        if whole == "$${":
            return "${"
        if whole == "%%{":
            return "%{"
        key = match.group(1)
        if key is None:
            raise SystemExit(f"check-terraform: {name}: unsupported template expression at offset {match.start()}")
        if key not in values:
            raise SystemExit(f"check-terraform: {name}: unknown template variable {key}")
        used.add(key)
        return str(values[key])

    result = token.sub(substitute, text)
    unused = set(values) - used
    if unused:
        raise SystemExit(f"check-terraform: {name}: variables passed but never used: {sorted(unused)}")
    return result


common = render("common.sh.tftpl", common_vars)
for role, values in role_vars.items():
    script = render(f"{role}.sh.tftpl", dict(values, common=common))
    (out / f"{role}.sh").write_text(script, encoding="utf-8")
print(f"rendered {', '.join(f'{role}.sh' for role in role_vars)}")
PY
for script in "$rendered"/*.sh; do
  bash -n "$script" || die "$(basename "$script"): rendered user data is not valid bash"
done
if command -v shellcheck >/dev/null 2>&1; then
  shellcheck --shell=bash "$rendered"/*.sh || die "shellcheck found problems in the rendered user data"
  echo "rendered user data passes bash -n and shellcheck"
else
  echo "rendered user data passes bash -n (shellcheck not installed: skipped)"
fi

# --- 3. checkov -------------------------------------------------------------
echo "==> checkov"
checkov_out="$rendered/checkov.txt"
set +e
"$checkov_bin" -d terraform --framework terraform --quiet --compact --skip-download \
  --skip-path '\.terraform/' >"$checkov_out" 2>&1
checkov_status=$?
set -e
cat "$checkov_out"
summary="$(grep -E 'Passed checks: [0-9]+, Failed checks: [0-9]+' "$checkov_out" || true)"
[ -n "$summary" ] || die "checkov printed no summary (exit $checkov_status)"
[ "$checkov_status" -eq 0 ] || die "checkov found failed checks (exit $checkov_status)"
case "$summary" in
  *"Passed checks: 0,"*) die "checkov ran no check" ;;
  *"Failed checks: 0,"*) ;;
  *) die "checkov found failed checks" ;;
esac

# --- 4. terraform fmt and tests, when terraform is here ----------------------
if command -v terraform >/dev/null 2>&1; then
  # A TF_CLI_CONFIG_FILE naming a missing file only makes terraform warn.
  if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -f "$TF_CLI_CONFIG_FILE" ]; then
    unset TF_CLI_CONFIG_FILE
  fi
  export TF_IN_AUTOMATION=1 TF_INPUT=0
  echo "==> terraform fmt -check"
  terraform fmt -check -recursive -diff terraform || die "terraform fmt would change files (run terraform fmt -recursive terraform)"

  # Work on a copy so no .terraform directory or lock file lands in the tree.
  work="$rendered/terraform"
  mkdir -p "$work"
  tar -C terraform --exclude=.terraform --exclude='*.tfstate*' --exclude=.terraform.lock.hcl -cf - . | tar -C "$work" -xf -
  init_args=(-backend=false -input=false -no-color)
  if [ -d "$plugin_dir" ]; then
    init_args+=("-plugin-dir=$plugin_dir")
  fi
  if terraform -chdir="$work" init "${init_args[@]}" >"$rendered/init.txt" 2>&1; then
    version="$(terraform version -json | "$hcl_python" -c 'import json, sys; print(json.load(sys.stdin)["terraform_version"])')"
    if "$hcl_python" -c 'import sys; major, minor = map(int, sys.argv[1].split(".")[:2]); sys.exit(0 if (major, minor) >= (1, 7) else 1)' "$version"; then
      echo "==> terraform test (terraform $version, mocked AWS provider)"
      terraform -chdir="$work" test -no-color || die "terraform test failed"
    else
      echo "==> terraform validate (terraform $version is older than 1.7: no mock providers, tests skipped)"
      terraform -chdir="$work" validate -no-color || die "terraform validate failed"
    fi
  else
    tail -n 5 "$rendered/init.txt" >&2
    echo "note: terraform init could not install the providers (aws, tls, random; set QUIVER_TF_PLUGIN_DIR to a plugin mirror that has them); terraform validate and tests skipped"
  fi
else
  echo "note: no terraform binary: terraform fmt, validate and tests skipped"
fi

echo "terraform checks passed in $((SECONDS - started)) s"
