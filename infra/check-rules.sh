#!/usr/bin/env bash
# Checks the Prometheus rules in deploy/prometheus: `promtool check rules`
# (syntax, PromQL, templates) and `promtool test rules` (the unit tests in
# alerts_test.yml, which feed synthetic series and assert when each alert
# fires and when it stays quiet); then parses every query of the Grafana
# dashboard the same way. That the metrics they name exist is
# tests/python/test_dashboards.py's job, against a live node.
#
# promtool comes from Debian's `prometheus` package, installed here when it
# is missing. Installing it must not leave a Prometheus server running on
# the machine (CI runs here), so while apt installs it a policy-rc.d that
# refuses every service start is in place, unless one already is.
set -euo pipefail

cd "$(dirname "$0")/.."

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  SUDO=(sudo)
fi
POLICY=/usr/sbin/policy-rc.d

install_promtool() {
  local own_policy=false
  if [[ ! -e $POLICY ]]; then
    own_policy=true
    trap '"${SUDO[@]}" rm -f "$POLICY"' EXIT
    printf '#!/bin/sh\n# infra/check-rules.sh: no service starts while it installs promtool.\nexit 101\n' \
      | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
  fi
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if $own_policy; then
    "${SUDO[@]}" rm -f "$POLICY"
    trap - EXIT
  fi
}

if ! command -v promtool >/dev/null 2>&1; then
  echo "check-rules: installing promtool (Debian's prometheus package)"
  install_promtool
fi

# The dashboard's queries, as recording rules, so promtool parses them too
# (Grafana's $__rate_interval and $instance given plain values).
dashboard_rules() {
  python3 - deploy/grafana/quiver.json <<'PY'
import json
import sys

top = json.load(open(sys.argv[1]))["panels"]
# Panels inside a collapsed row are nested in it.
panels = [p for row in top for p in [row, *row.get("panels", [])]]
print("groups:\n  - name: dashboard\n    rules:")
for panel in panels:
    for t in panel.get("targets", []):
        expr = t["expr"].replace("$__rate_interval", "5m").replace("$instance", ".+")
        print(f"      - record: dashboard:panel{panel['id']}:{t['refId']}")
        print(f"        expr: {json.dumps(expr)}")
PY
}

promtool --version 2>&1 | head -n 1
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml
queries=$(mktemp --suffix=.yml)
trap 'rm -f "$queries"' EXIT
dashboard_rules >"$queries"
echo "Checking the queries of deploy/grafana/quiver.json"
promtool check rules "$queries"
