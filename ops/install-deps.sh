#!/usr/bin/env bash
# Installs the Debian packages SoundHash needs to build, test and demo — only those missing, so a
# fresh Debian 12 machine needs nothing else. Runs apt-get only when something is missing.
# Java 17 (what default-jre-headless is on Debian 12, named directly: it is what is installed) and
# Maven run the real Kafka cluster of ops/kafka.sh, whose jars come from Maven Central.
#   ops/install-deps.sh        what `make`, `make test` and `make demo` need
#   ops/install-deps.sh ops    also what `make test-ops` needs: docker-compose (its `config`
#                              parser; no Docker engine), systemd-analyze, and promtool
#   ops/install-deps.sh soak   also gnuplot (gnuplot-nox), which draws `make soak`'s plot
set -euo pipefail

PKGS=(
  build-essential pkg-config clang libclang-rt-14-dev
  librdkafka-dev libpq-dev libavro-dev libsndfile1-dev libfftw3-dev libzstd-dev liblmdb-dev
  libsoxr-dev libmicrohttpd-dev libjansson-dev libcmocka-dev libcurl4-openssl-dev libssl-dev
  postgresql postgresql-client sox libsox-fmt-mp3 opus-tools curl ca-certificates jq python3
  python3-yaml python3-jsonschema
  bsdutils iproute2 iptables
  openjdk-17-jre-headless maven
)
OPS=0
if [ "${1:-}" = ops ]; then
  OPS=1
  PKGS+=(docker-compose systemd)
fi
[ "${1:-}" = soak ] && PKGS+=(gnuplot-nox)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

# One dpkg-query for all (one per package takes seconds on a busy machine).
installed=" $( (dpkg-query -W -f='${Package}=${Status}\n' "${PKGS[@]}" 2>/dev/null || true) |
              sed -n 's/=install ok installed$//p' | tr '\n' ' ') "
missing=()
for p in "${PKGS[@]}"; do
  [[ "$installed" == *" $p "* ]] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
[ $OPS -eq 1 ] || exit 0

# promtool comes from Debian's `prometheus` package, but only the binary is taken (apt-get
# download + dpkg-deb, into $SOUNDHASH_TOOLS_DIR, default ~/.cache/soundhash-tools): installing the
# package would also enable and start a Prometheus server (port 9090) on this machine.
TOOLS="${SOUNDHASH_TOOLS_DIR:-$HOME/.cache/soundhash-tools}"
if ! command -v promtool > /dev/null && [ ! -x "$TOOLS/promtool" ]; then
  echo "install-deps: fetching promtool (Debian package prometheus) into $TOOLS" >&2
  mkdir -p "$TOOLS"
  dl=$(mktemp -d)
  trap 'rm -rf "$dl"' EXIT
  (cd "$dl" && apt-get download prometheus > /dev/null 2>&1) ||
    { $SUDO apt-get update -qq && (cd "$dl" && apt-get download prometheus > /dev/null); }
  dpkg-deb --fsys-tarfile "$dl"/prometheus_*.deb | tar -x -C "$dl" ./usr/bin/promtool
  mv "$dl/usr/bin/promtool" "$TOOLS/promtool.tmp" && mv "$TOOLS/promtool.tmp" "$TOOLS/promtool"
fi
