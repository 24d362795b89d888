#!/bin/sh
# Brings a Quiver cluster's topology to list every node of QUIVER_INIT_NODES,
# with the real `quiver` command line. The Helm chart's init Job runs it after
# every install and upgrade, and compose.yaml's `init` service once; running
# it again changes nothing.
#
#   - It waits until every listed node answers (QUIVER_INIT_WAIT seconds).
#   - No topology yet (epoch 0): `quiver cluster init` with all the nodes.
#   - A topology: `quiver cluster add-node` for each listed node it lacks,
#     then one `quiver cluster rebalance`, so each moved slot moves once.
#   - Nodes the topology has but the list lacks are reported, never removed:
#     removing moves their slots, which is the operator's call
#     (docs/operations.md, "Shrink").
#
# Environment:
#   QUIVER_INIT_NODES        ID=URL,ID=URL,... (required)
#   QUIVER_INIT_REPLICATION  owners per slot of a new topology (default 2)
#   QUIVER_INIT_WAIT         seconds to wait for the nodes (default 600)
#   QUIVER_ENDPOINT          the node the changes go through (default: the
#                            first listed node)
#   QUIVER_ADMIN_TOKEN_FILE, QUIVER_TLS_CA
#                            read by `quiver` itself: the admin token, and the
#                            CA of grpc+tls:// nodes
set -eu
set -f

log() {
  printf 'init-topology: %s\n' "$*"
}

die() {
  printf 'init-topology: %s\n' "$*" >&2
  exit 1
}

nodes="${QUIVER_INIT_NODES:?QUIVER_INIT_NODES must list the nodes as ID=URL,...}"
replication="${QUIVER_INIT_REPLICATION:-2}"
wait_seconds="${QUIVER_INIT_WAIT:-600}"
case "$replication" in '' | *[!0-9]*) die "QUIVER_INIT_REPLICATION must be a number, not '$replication'" ;; esac
case "$wait_seconds" in '' | *[!0-9]*) die "QUIVER_INIT_WAIT must be a number of seconds, not '$wait_seconds'" ;; esac
if [ -z "${QUIVER_ENDPOINT:-}" ]; then
  first="${nodes%%,*}"
  QUIVER_ENDPOINT="${first#*=}"
  export QUIVER_ENDPOINT
fi

# Every `quiver` call gets an answer or fails within this many seconds.
answer_timeout=30
errors="$(mktemp)"
trap 'rm -f "$errors"' EXIT

# The topology document as JSON on stdout.
show() {
  quiver --timeout "$answer_timeout" cluster show --json
}

# The epoch of the document on stdin.
epoch_of() {
  sed -n 's/^ *"epoch": *\([0-9][0-9]*\),*$/\1/p' | head -n 1
}

# "ID URL" for each node of the document on stdin.
members_of() {
  sed -n -e 's/^ *"id": *"\([^"]*\)",*$/\1/p' -e 's/^ *"url": *"\([^"]*\)",*$/\1/p' | paste -d ' ' - -
}

# --- wait for every node ------------------------------------------------------
deadline=$(( $(date +%s) + wait_seconds ))
old_ifs=$IFS
IFS=,
for spec in $nodes; do
  IFS=$old_ifs
  case "$spec" in
    ?*=?*) ;;
    *) die "'$spec' in QUIVER_INIT_NODES is not ID=URL" ;;
  esac
  url="${spec#*=}"
  until quiver --endpoint "$url" --timeout "$answer_timeout" cluster show --json >/dev/null 2>"$errors"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      die "$url did not answer within ${wait_seconds}s: $(cat "$errors")"
    fi
    sleep 3
  done
  log "$url answers"
  IFS=,
done
IFS=$old_ifs

# --- init, or add the missing nodes -------------------------------------------
attempt=0
while :; do
  attempt=$((attempt + 1))
  document="$(show)" || die "cannot read the topology through $QUIVER_ENDPOINT"
  epoch="$(printf '%s\n' "$document" | epoch_of)"
  [ -n "$epoch" ] || die "the topology read through $QUIVER_ENDPOINT has no epoch"
  if [ "$epoch" != 0 ]; then
    break
  fi
  log "no topology yet: initialising with replication $replication"
  if quiver --timeout "$answer_timeout" cluster init --nodes "$nodes" --replication "$replication" 2>"$errors"; then
    exit 0
  fi
  # Another init may have won the race: read the topology again.
  [ "$attempt" -lt 3 ] || die "cluster init failed: $(cat "$errors")"
  log "cluster init did not apply ($(cat "$errors")); reading the topology again"
done

members="$(printf '%s\n' "$document" | members_of)"
added=0
IFS=,
for spec in $nodes; do
  IFS=$old_ifs
  id="${spec%%=*}"
  url="${spec#*=}"
  known_url="$(printf '%s\n' "$members" | awk -v id="$id" '$1 == id { print $2 }')"
  if [ -z "$known_url" ]; then
    log "adding $id at $url"
    quiver --timeout "$answer_timeout" cluster add-node --id "$id" --url "$url"
    added=$((added + 1))
  elif [ "$known_url" != "$url" ]; then
    log "warning: $id is at $known_url in the topology, not $url; remove and add it again to move it"
  fi
  IFS=,
done
IFS=$old_ifs

if [ "$added" -gt 0 ]; then
  quiver --timeout "$answer_timeout" cluster rebalance
fi

printf '%s\n' "$members" | while read -r id url; do
  case ",$nodes," in
    *",$id="*) ;;
    *) log "warning: $id ($url) is in the topology but not among the nodes; when it is gone for good: quiver cluster remove-node --id $id" ;;
  esac
done
log "the topology (epoch $epoch before this run) lists every node; $added added"
