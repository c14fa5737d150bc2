#!/usr/bin/env bash
# ops/tests/check_grafana.sh — the dashboard and its provisioning, without a Grafana server
# (Debian 12 has none): the JSON parses; panels have unique ids, a grid position and the
# provisioned Prometheus datasource (by uid); the dashboard provider's path is where
# docker-compose.yml mounts ops/grafana/soundhash.json; and every panel query is valid PromQL —
# `promtool check rules` on a temporary rule file made of them ($__rate_interval read as 5m).
# Metric names are checked against the processes by check_metrics.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TOOLS="${SOUNDHASH_TOOLS_DIR:-$HOME/.cache/soundhash-tools}"
PROMTOOL="${PROMTOOL:-$(command -v promtool || echo "$TOOLS/promtool")}"
TMP=$(mktemp -d /tmp/sh-check-grafana.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
cd "$ROOT"
"${PYTHON:-/usr/bin/python3}" - "$TMP/queries.yml" <<'PY'
import json, sys, yaml
errors = []
d = json.load(open("ops/grafana/soundhash.json"))
ds = yaml.safe_load(open("ops/grafana/provisioning/datasources/prometheus.yml"))["datasources"]
uids = {x["uid"] for x in ds}
prov = yaml.safe_load(open("ops/grafana/provisioning/dashboards/soundhash.yml"))["providers"]
compose = yaml.safe_load(open("docker-compose.yml"))
mounts = compose["services"]["grafana"]["volumes"]
dash_mount = [m.split(":")[1] for m in mounts if m.split(":")[0] == "./ops/grafana/soundhash.json"]
if not dash_mount or not any(dash_mount[0].startswith(p["options"]["path"] + "/") for p in prov):
    errors.append(f"the dashboard is mounted at {dash_mount}, no provider reads {[p['options']['path'] for p in prov]}")
for k in ("uid", "title", "panels", "schemaVersion"):
    if k not in d:
        errors.append(f"dashboard without {k}")
ids, rules = set(), []
for p in d["panels"]:
    if p["id"] in ids:
        errors.append(f"panel id {p['id']} twice")
    ids.add(p["id"])
    if "gridPos" not in p:
        errors.append(f"panel {p['title']}: no gridPos")
    if p["type"] == "row":
        continue
    if p.get("datasource", {}).get("uid") not in uids:
        errors.append(f"panel {p['title']}: datasource {p.get('datasource')} is not provisioned ({uids})")
    if not p.get("targets"):
        errors.append(f"panel {p['title']}: no queries")
    for t in p.get("targets", []):
        expr = t["expr"].replace("$__rate_interval", "5m")
        rules.append({"record": f"panel_{p['id']}_{t['refId']}", "expr": expr})
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[1], "w"))
for e in errors:
    print("check_grafana:", e, file=sys.stderr)
print(f"check_grafana: {len(ids)} panels, {len(rules)} queries")
sys.exit(1 if errors else 0)
PY
"$PROMTOOL" check rules "$TMP/queries.yml" > "$TMP/promtool.out" 2>&1 ||
  { cat "$TMP/promtool.out" >&2; echo "check_grafana: a panel query is not valid PromQL" >&2; exit 1; }
