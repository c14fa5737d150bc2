#!/usr/bin/env bash
# Installs the Debian packages SoundHash needs to build, test and demo — only those missing, so a
# fresh Debian 12 machine needs nothing else. Runs apt-get only when something is missing.
# Java 17 (what default-jre-headless is on Debian 12, named directly: it is what is installed) and
# Maven run the real Kafka cluster of ops/kafka.sh, whose jars come from Maven Central.
set -euo pipefail

PKGS=(
  build-essential pkg-config clang libclang-rt-14-dev
  librdkafka-dev libpq-dev libavro-dev libsndfile1-dev libfftw3-dev libzstd-dev liblmdb-dev
  libsoxr-dev libmicrohttpd-dev libjansson-dev libcmocka-dev libcurl4-openssl-dev libssl-dev
  postgresql postgresql-client sox libsox-fmt-mp3 opus-tools curl ca-certificates jq python3
  python3-yaml python3-jsonschema
  bsdutils
  openjdk-17-jre-headless maven
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
