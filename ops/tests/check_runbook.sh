#!/usr/bin/env bash
# ops/tests/check_runbook.sh — ops/RUNBOOK.md stays true: every `soundhash` command in it (code
# blocks and inline code) names a real command, and every flag it passes is listed by that
# command's --help; every alert of ops/prometheus/alerts.yml has its section, under the heading
# its `runbook` annotation links to.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${SOUNDHASH_BIN:-$ROOT/build/soundhash}"
"${PYTHON:-/usr/bin/python3}" - "$ROOT/ops/RUNBOOK.md" "$ROOT/ops/prometheus/alerts.yml" "$BIN" <<'PY'
import re, shlex, subprocess, sys, yaml
text = open(sys.argv[1]).read()
BIN = sys.argv[3]
errors = []
cmds = []
for block in re.findall(r"```sh\n(.*?)```", text, re.S):
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if "soundhash " in line and not line.startswith("#"):
            cmds.append(line[line.index("soundhash "):])
for span in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
    if span.startswith("soundhash ") and len(span.split()) > 1:
        cmds.append(span)
listing = subprocess.run([BIN, "help"], capture_output=True, text=True).stdout
known = {tuple(m.split()) for m in re.findall(r"^  ([a-z]+(?: [a-z]+)?)\s{2,}", listing, re.M)}
helps = {}
checked = 0
for c in cmds:
    try:
        toks = shlex.split(c)
    except ValueError as e:
        errors.append(f"cannot split `{c}`: {e}"); continue
    toks = toks[1:]
    words = tuple(toks[:2]) if tuple(toks[:2]) in known else tuple(toks[:1])
    if words not in known:
        errors.append(f"`{c}`: no command `soundhash {' '.join(words)}`"); continue
    if words not in helps:
        helps[words] = subprocess.run([BIN, *words, "--help"], capture_output=True, text=True).stdout
    for t in toks[len(words):]:
        if re.fullmatch(r"--[a-z][a-z0-9-]*", t) or re.fullmatch(r"-[A-Za-z]", t):
            if not re.search(rf"^\s+(-\w, )?{re.escape(t)}\b|^\s+{re.escape(t)}, ", helps[words], re.M):
                errors.append(f"`{c}`: `soundhash {' '.join(words)}` has no {t}")
    checked += 1
headings = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", text, re.M)}
alerts = [r for g in yaml.safe_load(open(sys.argv[2]))["groups"] for r in g["rules"] if "alert" in r]
for r in alerts:
    link = r["annotations"].get("runbook", "")
    anchor = link.split("#", 1)[1] if "#" in link else ""
    if not link.startswith("ops/RUNBOOK.md#") or anchor not in headings:
        errors.append(f"alert {r['alert']}: runbook link {link!r} has no heading in RUNBOOK.md")
for e in errors:
    print("check_runbook:", e, file=sys.stderr)
print(f"check_runbook: {checked} soundhash commands, {len(alerts)} alert sections: "
      + ("ok" if not errors else f"{len(errors)} problems"))
sys.exit(1 if errors else 0)
PY
