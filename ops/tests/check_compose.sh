#!/usr/bin/env bash
# ops/tests/check_compose.sh — docker-compose.yml without a Docker engine:
#  1. Debian's `docker-compose config` parses and normalises it (the real Compose schema);
#  2. the stack is what ops/README.md promises: Kafka from apache/kafka in KRaft mode, a
#     Confluent Schema Registry the processes point at, PostgreSQL with wal_level=logical, every
#     long-running service with a healthcheck, jobs that others wait for, every SoundHash HTTP
#     port scraped by ops/prometheus.yml, Prometheus and Grafana given our files;
#  3. every soundhash command line, with its service's environment (container paths mapped to
#     temporary ones, listen addresses to 127.0.0.1:0): `--print-config` exits 0 (every flag and
#     value parses), and the command itself, with its wait flags cut to 1 s appended, exits 1
#     naming the unreachable kafka/postgres — a runtime failure, not a usage error (exit 2).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${SOUNDHASH_BIN:-$ROOT/build/soundhash}"
TMP=$(mktemp -d /tmp/sh-check-compose.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
cd "$ROOT"
docker-compose -f docker-compose.yml --profile tools config > "$TMP/config.yml"
"${PYTHON:-/usr/bin/python3}" - "$TMP/config.yml" "$ROOT/ops/prometheus.yml" "$BIN" "$TMP" <<'PY'
import concurrent.futures, os, re, subprocess, sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
prom = yaml.safe_load(open(sys.argv[2]))
BIN, TMP = sys.argv[3], sys.argv[4]
svcs = cfg["services"]
errors = []
def err(msg):
    errors.append(msg)

def need(cond, msg):
    if not cond:
        err(msg)

# ---- 2. shape ------------------------------------------------------------------------------
need(svcs.get("kafka", {}).get("image", "").startswith("apache/kafka:"), "kafka: not the apache/kafka image")
kenv = svcs.get("kafka", {}).get("environment", {})
need("controller" in kenv.get("KAFKA_PROCESS_ROLES", ""), "kafka: not in KRaft mode (KAFKA_PROCESS_ROLES)")
need(svcs.get("schema-registry", {}).get("image", "").startswith("confluentinc/cp-schema-registry:"),
     "schema-registry: not a Confluent Schema Registry")
need("wal_level=logical" in svcs.get("postgres", {}).get("command", []), "postgres: wal_level=logical missing")
ours = {n: s for n, s in svcs.items() if "build" in s}
for n, s in ours.items():
    url = s.get("environment", {}).get("SOUNDHASH_SCHEMA_REGISTRY_URL", "")
    need(url.startswith("http://schema-registry:"), f"{n}: SOUNDHASH_SCHEMA_REGISTRY_URL does not name schema-registry")
waited = {d for s in svcs.values() for d, c in (s.get("depends_on") or {}).items()
          if c.get("condition") == "service_completed_successfully"}
for n, s in svcs.items():
    hc = s.get("healthcheck", {})
    tools = "tools" in (s.get("profiles") or [])
    if hc.get("disable"):
        need(tools or (n in waited and s.get("restart") == "no"),
             f"{n}: healthcheck disabled but it is neither a job others wait for nor a tool")
    else:
        need(bool(hc.get("test")), f"{n}: no healthcheck")
need("migrate" in waited and "kafka-topics" in waited, "migrate/kafka-topics are not waited for")

# Every SoundHash HTTP port is scraped: (service, port) pairs against prometheus.yml's targets.
targets = set()
for job in prom["scrape_configs"]:
    for sc in job.get("static_configs", []):
        targets |= set(sc["targets"])
    for dn in job.get("dns_sd_configs", []):
        targets |= {f"{name}:{dn['port']}" for name in dn["names"]}
served = {}
for n, s in ours.items():
    cmd = s.get("command") or []
    for flag in ("--http", "--listen"):
        if flag in cmd:
            served[n] = cmd[cmd.index(flag) + 1].rsplit(":", 1)[1]
for n, port in served.items():
    need(f"{n}:{port}" in targets, f"{n}: serves /metrics on {port} but ops/prometheus.yml does not scrape {n}:{port}")
need(len(served) >= 5, f"expected worker, replicator and three edges serving HTTP, got {sorted(served)}")
pv = [v["source"] if isinstance(v, dict) else v.split(":")[0] for v in svcs["prometheus"].get("volumes", [])]
need(any(p.endswith("ops/prometheus.yml") for p in pv) and any(p.endswith("ops/prometheus") for p in pv),
     "prometheus: ops/prometheus.yml and ops/prometheus/ not mounted")
for v in svcs["grafana"].get("volumes", []):
    src = v["source"] if isinstance(v, dict) else v.split(":")[0]
    need(os.path.exists(src), f"grafana: mounted {src} does not exist")

# ---- 3. command lines -----------------------------------------------------------------------
os.makedirs(f"{TMP}/secrets")
for sec in cfg.get("secrets", {}):
    with open(f"{TMP}/secrets/{sec}", "w") as f:
        f.write("not-a-secret\n")
# Container paths: secrets, and each volume's mount point as an existing temporary directory
# (what Docker gives the process).
mounts = {}
def remap(v, n):
    v = v.replace("/run/secrets/", f"{TMP}/secrets/")
    for target, local in sorted(mounts.get(n, {}).items(), key=lambda t: -len(t[0])):
        if v == target or v.startswith(target + "/"):
            v = local + v[len(target):]
            break
    return re.sub(r"^0\.0\.0\.0:\d+$", "127.0.0.1:0", v)
def check_line(n, cmd, argv, env):
    """--print-config must exit 0; the command itself, its waits cut to 1 s, exit 1 naming the
    unreachable kafka/postgres. Returns the problems found."""
    out = []
    pc = subprocess.run(argv + ["--print-config"], env=env, capture_output=True, text=True, timeout=20)
    if pc.returncode != 0:
        out.append(f"{n}: `{' '.join(cmd)} --print-config` exit {pc.returncode}: {pc.stderr.strip()}")
    words = [w for w in cmd[:2] if not w.startswith("-")]
    helptext = subprocess.run([BIN] + words + ["--help"], capture_output=True, text=True, timeout=20).stdout
    fast = [f for f in (["--db-wait", "0"], ["--connect-timeout", "1"], ["--timeout", "1"])
            if re.search(rf"^\s+(-\w, )?{f[0]} ", helptext, re.M)]
    try:
        p = subprocess.run(argv + sum(fast, []), env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, timeout=25)
    except subprocess.TimeoutExpired:
        return out + [f"{n}: `{' '.join(cmd)}` did not give up on unreachable dependencies within 25 s"]
    if p.returncode != 1 or not re.search(r"kafka|postgres", p.stderr):
        out.append(f"{n}: `{' '.join(cmd)}` exit {p.returncode}, want 1 for an unreachable "
                   f"kafka/postgres: {p.stderr.strip().splitlines()[-3:]}")
    return out
lines = []
for n, s in sorted(ours.items()):
    cmd = s.get("command")
    if not cmd:
        continue
    for i, vol in enumerate(s.get("volumes") or []):
        target = vol["target"] if isinstance(vol, dict) else vol.split(":")[1]
        mounts.setdefault(n, {})[target] = f"{TMP}/{n}/mount{i}"
        os.makedirs(f"{TMP}/{n}/mount{i}")
    argv = [BIN] + [remap(a, n) for a in cmd]
    env = {"PATH": os.environ["PATH"], "HOME": TMP}
    env.update({k: remap(str(v), n) for k, v in (s.get("environment") or {}).items()})
    lines.append((n, cmd, argv, env))
# Concurrently: each line mostly waits for its dependency's timeout.
with concurrent.futures.ThreadPoolExecutor(max_workers=len(lines) or 1) as pool:
    for problems in pool.map(lambda a: check_line(*a), lines):
        errors.extend(problems)
for e in errors:
    print("check_compose:", e, file=sys.stderr)
print(f"check_compose: {len(svcs)} services, {len(lines)} soundhash command lines, "
      f"{len(served)} scraped HTTP ports: " + ("ok" if not errors else f"{len(errors)} problems"))
sys.exit(1 if errors else 0)
PY
