#!/usr/bin/env bash
# ops/tests/check_systemd.sh — the units in ops/systemd without booting them:
#  1. `systemd-analyze verify` of an instance of each template (ExecStart pointed at the built
#     binary, since /usr/local/bin/soundhash is not installed here); any complaint fails;
#  2. each unit has DynamicUser, ProtectSystem=strict, a restart policy that does not restart
#     usage errors, and a secrets env file;
#  3. its command line, with the example env file and the unit's own Environment= (specifiers
#     %i %H %S %C expanded, the state and cache directories made as systemd would, listen
#     addresses mapped to 127.0.0.1:0): `--print-config` exits 0, and the command exits 1 naming
#     the example's unreachable Kafka/PostgreSQL host, not 2 (usage error).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${SOUNDHASH_BIN:-$ROOT/build/soundhash}"
TMP=$(mktemp -d /tmp/sh-check-systemd.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
command -v systemd-analyze > /dev/null || { echo "check_systemd: systemd-analyze missing" >&2; exit 1; }
units=()
for u in "$ROOT"/ops/systemd/soundhash-*@.service; do
  name=$(basename "$u")
  sed "s|/usr/local/bin/soundhash|$BIN|" "$u" > "$TMP/$name"
  ln -s "$TMP/$name" "$TMP/${name%@.service}@check.service"
  units+=("$TMP/${name%@.service}@check.service")
done
[ ${#units[@]} -eq 3 ] || { echo "check_systemd: want 3 units, got ${#units[@]}" >&2; exit 1; }
rc=0
out=$(cd "$TMP" && systemd-analyze verify --man=no "${units[@]}" 2>&1) || rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
  echo "$out" >&2; echo "check_systemd: systemd-analyze verify: exit $rc" >&2; exit 1
fi
"${PYTHON:-/usr/bin/python3}" - "$ROOT/ops/systemd" "$BIN" "$TMP" <<'PY'
import os, re, shlex, socket, subprocess, sys
src, BIN, TMP = sys.argv[1:4]
errors = []
def unit_lines(path):
    out = []
    for line in open(path):
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            k, v = line.split("=", 1)
            out.append((k, v))
    return out
def spec(v, inst):
    return (v.replace("%i", inst).replace("%H", socket.gethostname())
             .replace("%S", f"{TMP}/state").replace("%C", f"{TMP}/cache"))
def envfile(path):
    env = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v
    return env
procs = []
for kind in ("worker", "replicator", "edge"):
    path = f"{src}/soundhash-{kind}@.service"
    kv = unit_lines(path)
    d = {}
    for k, v in kv:
        d.setdefault(k, []).append(v)
    for k, want in (("DynamicUser", "yes"), ("ProtectSystem", "strict"), ("Restart", "on-failure"),
                    ("RestartPreventExitStatus", "2")):
        if d.get(k) != [want]:
            errors.append(f"{kind}: {k}={d.get(k)}, want {want}")
    if "-/etc/soundhash/secrets.env" not in d.get("EnvironmentFile", []):
        errors.append(f"{kind}: no secrets env file")
    inst = "check"
    for k in ("StateDirectory", "CacheDirectory"):
        for v in d.get(k, []):
            base = "state" if k == "StateDirectory" else "cache"
            os.makedirs(f"{TMP}/{base}/{spec(v, inst)}", exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": TMP}
    media = f"{TMP}/media"; os.makedirs(media, exist_ok=True)
    for k, v in envfile(f"{src}/{kind}.env.example").items():
        v = re.sub(r"^\d+\.\d+\.\d+\.\d+:\d+$", "127.0.0.1:0", v)
        env[k] = media if k == "SOUNDHASH_MEDIA_ROOT" else v
    for v in d.get("Environment", []):
        k, val = spec(v, inst).split("=", 1)
        env[k] = val
    argv = shlex.split(spec(d["ExecStart"][0], inst))
    argv[0] = BIN
    pc = subprocess.run(argv + ["--print-config"], env=env, capture_output=True, text=True, timeout=20)
    if pc.returncode != 0:
        errors.append(f"{kind}: `{' '.join(argv[1:])} --print-config` exit {pc.returncode}: {pc.stderr.strip()}")
    fast = {"worker": ["--db-wait", "0", "--connect-timeout", "1"],
            "replicator": ["--connect-timeout", "1"], "edge": ["--connect-timeout", "1"]}[kind]
    procs.append((kind, argv, subprocess.Popen(argv + fast, env=env, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.PIPE, text=True)))
for kind, argv, p in procs:
    try:
        _, err = p.communicate(timeout=25)
    except subprocess.TimeoutExpired:
        p.kill(); p.communicate(); errors.append(f"{kind}: did not give up within 25 s"); continue
    if p.returncode != 1 or not re.search(r"kafka1|db\.internal", err):
        errors.append(f"{kind}: `{' '.join(argv[1:])}` exit {p.returncode}, want 1 naming the "
                      f"unreachable host: {err.strip().splitlines()[-3:]}")
for e in errors:
    print("check_systemd:", e, file=sys.stderr)
print(f"check_systemd: 3 units verified, {len(procs)} command lines: " + ("ok" if not errors else f"{len(errors)} problems"))
sys.exit(1 if errors else 0)
PY
