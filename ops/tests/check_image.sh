#!/usr/bin/env bash
# ops/tests/check_image.sh — the Dockerfile's runtime stage installs a Debian package for every
# shared library build/soundhash links directly (its ELF NEEDED entries, mapped to the packages
# owning them through dpkg's file lists on this Debian 12 machine), and every package it names
# exists in Debian 12. Without a Docker engine this is what can be checked of the image; a library
# added to the build but not to the image would otherwise only show when a container starts.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${SOUNDHASH_BIN:-$ROOT/build/soundhash}"
exec "${PYTHON:-/usr/bin/python3}" - "$ROOT/Dockerfile" "$BIN" <<'PY'
import glob, os, re, subprocess, sys
dockerfile, BIN = sys.argv[1:3]
errors = []
# The package list of the last stage's `apt-get install` (backslash-continued lines joined).
last = re.split(r"^FROM ", open(dockerfile).read(), flags=re.M)[-1].replace("\\\n", " ")
m = re.search(r"apt-get install ([^&\n]*)", last)
pkgs = sorted({w for w in (m.group(1).split() if m else []) if not w.startswith("-")})
if not pkgs:
    sys.exit("check_image: no apt-get install in the Dockerfile's last stage")
# Installed here means it exists; apt-cache (seconds: it reads the whole index) only for the rest.
q = subprocess.run(["dpkg-query", "-W", "-f=${Package}\n", *pkgs], capture_output=True, text=True)
known = set(q.stdout.split())
others = [p for p in pkgs if p not in known]
if others:
    a = subprocess.run(["apt-cache", "show", "--no-all-versions", *others], capture_output=True, text=True)
    known |= set(re.findall(r"^Package: (\S+)", a.stdout, re.M))
for p in pkgs:
    if p not in known:
        errors.append(f"the Dockerfile installs {p}, which Debian 12 does not have")
needed = set(re.findall(r"NEEDED\s+(\S+)", subprocess.run(["objdump", "-p", BIN], capture_output=True, text=True).stdout))
libs = {}
for line in subprocess.run(["ldd", BIN], capture_output=True, text=True).stdout.splitlines():
    f = line.split()
    if len(f) >= 3 and f[0] in needed and f[2].startswith("/"):
        libs[f[0]] = f[2]
variants = {}
for lib, path in libs.items():
    for v in (path, os.path.realpath(path), "/usr" + path, path.removeprefix("/usr")):
        variants[v] = lib
owner = {}
for lst in glob.glob("/var/lib/dpkg/info/*.list"):
    pkg = os.path.basename(lst)[:-5].split(":")[0]
    for line in open(lst, errors="replace"):
        lib = variants.get(line.rstrip("\n"))
        if lib:
            owner.setdefault(lib, pkg)
for lib, path in sorted(libs.items()):
    pkg = owner.get(lib)
    if pkg is None:
        errors.append(f"no Debian package owns {path} ({lib})")
    elif pkg != "libc6" and pkg not in pkgs:  # libc6 is in debian:12-slim
        errors.append(f"soundhash needs {lib} from {pkg}, which the Dockerfile does not install")
if len(libs) < 10:
    errors.append(f"only {len(libs)} linked libraries found in {BIN}")
for e in errors:
    print("check_image:", e, file=sys.stderr)
print(f"check_image: {len(libs)} linked libraries, {len(pkgs)} packages in the image: "
      + ("ok" if not errors else f"{len(errors)} problems"))
sys.exit(1 if errors else 0)
PY
