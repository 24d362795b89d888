#!/usr/bin/env bash
# Runs Quiver's benchmark on EC2 with the rig in terraform/: apply it, wait
# until the client has built quiver-bench and every server answers /ready,
# run quiver-bench on the client against the servers and the real S3 bucket,
# and copy the results to bench-results/ec2-<timestamp>/.
#
# Costs money while the instances run; see terraform/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: infra/ec2-bench.sh [options]

Creates (or reuses) the EC2 rig in terraform/, waits until it is ready, runs
quiver-bench on the client instance against the server instances and copies
the results to bench-results/ec2-<timestamp>/. THE INSTANCES COST MONEY WHILE
THEY RUN: pass --destroy, or run `terraform -chdir=terraform destroy` after.

Options (environment variable in brackets):
  --operator-cidr CIDR  IPv4 CIDR allowed to SSH in, e.g. 203.0.113.7/32;
                        "auto" asks checkip.amazonaws.com for this machine's
                        address [QUIVER_OPERATOR_CIDR, or TF_VAR_operator_cidr]
  --ssh-key PATH        private key; PATH.pub is installed on the instances
                        [QUIVER_SSH_KEY, default ~/.ssh/id_ed25519]
  --repo-url URL        https URL of the Quiver repository the instances build
                        [QUIVER_REPO_URL; default: this checkout's origin if it
                        is https]
  --ref REF             branch, tag or commit to build [QUIVER_REF, default main]
  --var NAME=VALUE      any other Terraform variable (repeatable), e.g.
                        --var server_count=5 --var instance_type=c5d.xlarge
                        --var use_instance_store=true
  --bench-arg ARG       extra argument put right after `quiver-bench`
                        (repeatable), e.g. a workload name such as pushdown
  --full                leave out --quick: the full-size run (much longer)
  --timeout SECONDS     how long to wait for the rig to become ready
                        [QUIVER_READY_TIMEOUT, default 3600; building from
                        source takes about 15-25 minutes]
  --out DIR             local results directory
                        [default bench-results/ec2-<UTC timestamp>]
  --no-apply            use the rig that terraform/ already manages
  --destroy             destroy the rig when the script ends, also on failure
  --auto-approve        pass -auto-approve to terraform apply and destroy
  -h, --help            this text

Needs bash 4.4+, terraform (>= 1.5), the AWS CLI with credentials for the target
account (it checks them with `aws sts get-caller-identity`), ssh, scp and
python3.

On the client it runs:
  quiver-bench [--bench-arg ...] [--tls-ca /etc/quiver/ca.pem --token-file
    /etc/quiver/admin-token] --quick --nodes <Flight URLs, comma-separated>
    --s3 s3://<bucket>/data/ --source <source_name> --no-emulation
    --out /tmp/quiver-results
EOF
}

die() {
  echo "ec2-bench: $*" >&2
  exit 1
}

if [ "${BASH_VERSINFO[0]}" -lt 4 ] || { [ "${BASH_VERSINFO[0]}" -eq 4 ] && [ "${BASH_VERSINFO[1]}" -lt 4 ]; }; then
  die "needs bash 4.4 or newer (this is $BASH_VERSION; on macOS install a current bash)"
fi

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
tf_dir="$repo_root/terraform"

operator_cidr="${QUIVER_OPERATOR_CIDR:-}"
ssh_key="${QUIVER_SSH_KEY:-$HOME/.ssh/id_ed25519}"
repo_url="${QUIVER_REPO_URL:-}"
ref="${QUIVER_REF:-}"
timeout="${QUIVER_READY_TIMEOUT:-3600}"
out_dir=""
apply=true
destroy=false
approve=()
extra_vars=()
bench_args=()
quick=(--quick)

need_value() {
  if [ "$#" -lt 2 ] || [ -z "$2" ]; then
    die "$1 needs a value (see --help)"
  fi
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --operator-cidr) need_value "$@"; operator_cidr=$2; shift 2 ;;
    --ssh-key) need_value "$@"; ssh_key=$2; shift 2 ;;
    --repo-url) need_value "$@"; repo_url=$2; shift 2 ;;
    --ref) need_value "$@"; ref=$2; shift 2 ;;
    --var)
      need_value "$@"
      case "$2" in
        *=*) extra_vars+=(-var "$2") ;;
        *) die "--var takes NAME=VALUE, got '$2'" ;;
      esac
      shift 2
      ;;
    --bench-arg) need_value "$@"; bench_args+=("$2"); shift 2 ;;
    --timeout) need_value "$@"; timeout=$2; shift 2 ;;
    --out) need_value "$@"; out_dir=$2; shift 2 ;;
    --full) quick=(); shift ;;
    --no-apply) apply=false; shift ;;
    --destroy) destroy=true; shift ;;
    --auto-approve) approve=(-auto-approve); shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

case "$timeout" in
  '' | *[!0-9]*) die "--timeout must be a number of seconds, got '$timeout'" ;;
esac

# --- Tools and credentials ---------------------------------------------------
require() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}
require terraform "install Terraform 1.5 or newer and put it on PATH"
require aws "install the AWS CLI (v2) and configure credentials (aws configure, AWS_PROFILE or AWS_* variables)"
require ssh "install an OpenSSH client"
require scp "install an OpenSSH client (scp)"
require python3 "install Python 3 (used to read terraform output -json)"

aws sts get-caller-identity --output text --query Arn >/dev/null 2>&1 ||
  die "the AWS CLI has no working credentials (aws sts get-caller-identity failed); configure them first"

[ -d "$tf_dir" ] || die "no terraform/ directory at $tf_dir"
[ -f "$ssh_key" ] || die "SSH private key $ssh_key not found (--ssh-key or QUIVER_SSH_KEY)"

# --- Terraform variables -------------------------------------------------------
tf_vars=()
if [ "$operator_cidr" = auto ]; then
  require curl "install curl, or pass --operator-cidr explicitly"
  my_ip="$(curl -fsS -m 10 https://checkip.amazonaws.com | tr -d '[:space:]')" ||
    die "could not find this machine's public address; pass --operator-cidr"
  operator_cidr="$my_ip/32"
  echo "operator CIDR: $operator_cidr"
fi
if [ -n "$operator_cidr" ]; then
  tf_vars+=(-var "operator_cidr=$operator_cidr")
elif [ -z "${TF_VAR_operator_cidr:-}" ]; then
  die "--operator-cidr (or QUIVER_OPERATOR_CIDR / TF_VAR_operator_cidr) is required, e.g. 203.0.113.7/32 or auto"
fi

if [ -z "${TF_VAR_ssh_public_key:-}" ]; then
  [ -f "$ssh_key.pub" ] || die "public key $ssh_key.pub not found (or set TF_VAR_ssh_public_key)"
  tf_vars+=(-var "ssh_public_key=$(cat "$ssh_key.pub")")
fi

if [ -z "$repo_url" ] && [ -z "${TF_VAR_quiver_repo_url:-}" ]; then
  origin="$(git -C "$repo_root" remote get-url origin 2>/dev/null || true)"
  case "$origin" in
    https://*) repo_url=$origin ;;
  esac
fi
[ -n "$repo_url" ] && tf_vars+=(-var "quiver_repo_url=$repo_url")
[ -n "$ref" ] && tf_vars+=(-var "quiver_ref=$ref")
tf_vars+=("${extra_vars[@]}")

tf() {
  terraform -chdir="$tf_dir" "$@"
}

work="$(mktemp -d)"
# On every exit: remove the scratch folder and, with --destroy, the rig.
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  rm -rf "$work"
  if [ "$destroy" = true ]; then
    echo "==> terraform destroy (--destroy)"
    tf destroy "${approve[@]}" "${tf_vars[@]}" ||
      echo "ec2-bench: terraform destroy failed; run it again by hand" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$apply" = true ]; then
  echo "==> terraform init"
  tf init -input=false
  echo "==> terraform apply"
  tf apply "${approve[@]}" "${tf_vars[@]}"
fi

# --- Outputs -------------------------------------------------------------------
outputs="$work/outputs.json"
tf output -json >"$outputs" || die "terraform output failed; has the rig been applied?"

# out NAME: a Terraform output, lists one item per line.
out() {
  python3 - "$outputs" "$1" <<'PY'
import json
import sys

outputs = json.load(open(sys.argv[1], encoding="utf-8"))
name = sys.argv[2]
if name not in outputs:
    sys.exit(f"ec2-bench: terraform output {name} is missing; apply the rig first")
value = outputs[name]["value"]
if isinstance(value, bool):
    print(json.dumps(value))
elif isinstance(value, list):
    print("\n".join(str(item) for item in value))
else:
    print(value)
PY
}

region="$(out region)"
ssh_user="$(out ssh_user)"
client_ip="$(out client_public_ip)"
admin_port="$(out admin_port)"
bench_s3="$(out data_url)"
source_name="$(out source_name)"
mapfile -t server_private < <(out server_private_ips)
mapfile -t server_public < <(out server_public_ips)
mapfile -t flight_urls < <(out flight_urls)
if [ "${#server_private[@]}" -eq 0 ] || [ -z "${server_private[0]}" ]; then
  die "terraform reports no servers"
fi
[ -n "$client_ip" ] || die "terraform reports no client address"
nodes="$(IFS=,; echo "${flight_urls[*]}")"
# A TLS rig (the default, terraform/security.tf) left the CA and the admin
# token on the client.
tls_args=()
if [ "$(out tls)" = "true" ]; then
  tls_args=(--tls-ca /etc/quiver/ca.pem --token-file /etc/quiver/admin-token)
fi

ssh_opts=(
  -i "$ssh_key"
  -o BatchMode=yes
  -o ConnectTimeout=10
  -o ServerAliveInterval=30
  -o StrictHostKeyChecking=accept-new
  -o "UserKnownHostsFile=$work/known_hosts"
  -o LogLevel=ERROR
)
# Remote commands are run by the remote shell: callers quote with %q where
# a value could need it.
# shellcheck disable=SC2029
on_client() {
  ssh "${ssh_opts[@]}" "$ssh_user@$client_ip" "$@"
}
# shellcheck disable=SC2029
on_host() {
  local host=$1
  shift
  ssh "${ssh_opts[@]}" "$ssh_user@$host" "$@"
}

# Tail of the bootstrap log of a host, for failure messages.
bootstrap_log() {
  on_host "$1" 'cat /etc/quiver/bootstrap.failed 2>/dev/null; sudo -n tail -n 40 /var/log/cloud-init-output.log' 2>&1 || true
}

# --- Wait until the rig is ready ----------------------------------------------
# One SSH call per poll: the client reports its own bootstrap state and asks
# every server's /ready (the admin port is open only inside the group).
# shellcheck disable=SC2016 # expanded by the remote shell
probe='
state=building
if [ -f /etc/quiver/bootstrap.failed ]; then state=failed; elif [ -f /etc/quiver/bootstrap.done ]; then state=done; fi
echo "client $state"
port=$1
shift
for ip in "$@"; do
  if curl -fsS -m 3 "http://$ip:$port/ready" >/dev/null 2>&1; then echo "ready $ip"; else echo "waiting $ip"; fi
done
'
printf -v probe_cmd '%q ' bash -c "$probe" probe "$admin_port" "${server_private[@]}"

echo "==> waiting for the client and ${#server_private[@]} server(s) (timeout ${timeout}s; a build from source takes about 15-25 minutes)"
started=$SECONDS
polls=0
while :; do
  elapsed=$((SECONDS - started))
  report="$(on_client "$probe_cmd" 2>/dev/null || true)"
  client_state="$(sed -n 's/^client //p' <<<"$report")"
  ready_count="$(grep -c '^ready ' <<<"$report" || true)"
  case "$client_state" in
    failed) die "the client's bootstrap failed:
$(bootstrap_log "$client_ip")" ;;
    "") client_state=unreachable ;;
  esac
  printf '[%5ds/%ds] client: %s; servers ready: %d/%d\n' \
    "$elapsed" "$timeout" "$client_state" "$ready_count" "${#server_private[@]}"
  if [ "$client_state" = "done" ] && [ "$ready_count" -eq "${#server_private[@]}" ]; then
    break
  fi
  # Every fourth poll, look for a server whose bootstrap failed.
  if [ $((polls % 4)) -eq 3 ]; then
    for i in "${!server_private[@]}"; do
      if ! grep -qx "ready ${server_private[$i]}" <<<"$report" &&
        on_host "${server_public[$i]}" test -f /etc/quiver/bootstrap.failed 2>/dev/null; then
        die "server $i (${server_public[$i]}) failed to start:
$(bootstrap_log "${server_public[$i]}")"
      fi
    done
  fi
  if [ "$elapsed" -ge "$timeout" ]; then
    die "the rig was not ready after ${timeout}s; look at /var/log/cloud-init-output.log on the instances (terraform -chdir=terraform output ssh_client)"
  fi
  polls=$((polls + 1))
  sleep 20
done

# --- Run the benchmark ------------------------------------------------------------
if [ -z "$out_dir" ]; then
  out_dir="$repo_root/bench-results/ec2-$(date -u +%Y%m%dT%H%M%SZ)"
fi
[ -e "$out_dir" ] && die "$out_dir already exists"
mkdir -p "$(dirname "$out_dir")"

remote_out=/tmp/quiver-results
bench_cmd=(
  quiver-bench "${bench_args[@]}"
  "${tls_args[@]}"
  "${quick[@]}"
  --nodes "$nodes"
  --s3 "$bench_s3"
  --source "$source_name"
  --no-emulation
  --out "$remote_out"
)
printf -v remote_bench '%q ' "${bench_cmd[@]}"
echo "==> on the client: ${bench_cmd[*]}"
log="$work/bench-stdout.txt"
on_client "rm -rf $remote_out && AWS_REGION=$(printf '%q' "$region") $remote_bench" 2>&1 | tee "$log" ||
  die "quiver-bench failed on the client (output above)"

# --- Collect ----------------------------------------------------------------------
echo "==> copying the results to $out_dir"
# The target does not exist yet, so scp -r creates it with the folder's contents.
scp -r -q "${ssh_opts[@]}" "$ssh_user@$client_ip:$remote_out" "$out_dir" ||
  die "could not copy $remote_out from the client"
cp "$log" "$out_dir/bench-stdout.txt"
cp "$outputs" "$out_dir/terraform-outputs.json"

# Best effort: each server's metrics after the run, its service log, and
# which Quiver each instance runs.
mkdir -p "$out_dir/servers"
for i in "${!server_private[@]}"; do
  on_client curl -fsS -m 10 "http://${server_private[$i]}:$admin_port/metrics" \
    >"$out_dir/servers/server-$i.metrics.txt" 2>/dev/null || true
  on_host "${server_public[$i]}" sudo -n journalctl -u quiver.service --no-pager \
    >"$out_dir/servers/server-$i.log" 2>/dev/null || true
done
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "region: $region"
  echo "nodes: $nodes"
  echo "command: ${bench_cmd[*]}"
  echo "local checkout: $(git -C "$repo_root" rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "client runs: $(on_client cat /etc/quiver/source 2>/dev/null || echo unknown)"
} >"$out_dir/run.txt"

echo "results: $out_dir"
if [ "$destroy" != true ]; then
  echo "the rig is still running (and costing money): terraform -chdir=terraform destroy"
fi
