#!/usr/bin/env bash
# Smoke test of the edge benchmark (bench/bench_edge.sh, `make bench-edge`) at a tiny scale: 2
# corpus tracks (no speed-shifted copies; one written at full speed, one paced), 8 queries per
# pass, 1 s of saturation, its index cache in SH_TMP. Asserts that the script runs to its end and
# prints every figure, with no failed request; the figures themselves are not checked (timings are
# no test's business, and 2 tracks answer few of the queries). ~25 s on 2 shared cores.
. "$SH_ROOT/tests/integration/lib.sh"

[ -d "$SH_DATA_DIR/corpus/dev" ] || fail "no dev corpus at $SH_DATA_DIR/corpus/dev (scripts/data/make_corpus.sh)"
pk="rdkafka libpq avro-c sndfile fftw3f soxr libzstd lmdb libmicrohttpd jansson libcurl libcrypto"
TOOL="$SH_TMP/bench_edge_tool"
# shellcheck disable=SC2046
cc -std=c17 -D_GNU_SOURCE -O1 -I"$SH_ROOT/core/engine" -I"$SH_ROOT/core/runtime" \
  -I"$SH_ROOT/schemas" $(pkg-config --cflags $pk) -o "$TOOL" "$SH_ROOT/bench/bench_edge_tool.c" \
  "$(dirname "$SH_BIN")/libsoundhash.a" $(pkg-config --libs $pk) -lm -pthread ||
  fail "cannot build bench_edge_tool"

SH_BENCH_EDGE_TOOL="$TOOL" SH_BENCH_EDGE_TRACKS=2 SH_BENCH_EDGE_PACED=2 SH_BENCH_EDGE_RATE=20 \
  SH_BENCH_EDGE_QUERIES=8 SH_BENCH_EDGE_SECONDS=1 SH_BENCH_EDGE_CACHE_DIR="$SH_TMP/cache" \
  SOUNDHASH_DATA_DIR="$SH_DATA_DIR" "$SH_ROOT/bench/bench_edge.sh" "$SH_BIN" 0.1 > "$SH_TMP/bench.out" ||
  { cat "$SH_TMP/bench.out"; fail "bench_edge.sh failed"; }
cat "$SH_TMP/bench.out"

figure() { # figure DESCRIPTION REGEX: the output has a line matching REGEX
  grep -Eq -- "$2" "$SH_TMP/bench.out" || fail "no $1 in the output"
  echo "ok: prints $1"
}
figure "index size" '^   index: 2 tracks, [0-9.]+ h of audio'
figure "generation time" 'generated in [0-9.]+ s'
figure "apply throughput" 'edge applied them in [0-9.]+ s .*: [0-9.]+ M postings/s'
figure "commit -> applied lag" 'commit -> applied lag: p50 [0-9]+ ms, p99 [0-9]+ ms'
figure "edge CPU per phase" 'edge process: CPU [0-9.]+ s'
figure "bootstrap time per audio hour" 'bootstrap from .* = [0-9.]+ s per audio hour'
figure "shard bytes per audio hour" 'shard files: [0-9.]+ MB per audio hour'
figure "audio latency, 1 client" 'queries as audio, 1 client: .*latency p50 [0-9.]+ ms, p99 [0-9.]+ ms'
figure "audio saturation" 'queries as audio, [0-9]+ clients \(saturation\): .* matches/s'
figure "hashes latency, 1 client" 'queries as hashes, 1 client: .*latency p50 [0-9.]+ ms, p99 [0-9.]+ ms'
figure "hashes saturation" 'queries as hashes, [0-9]+ clients \(saturation\): .* matches/s'
figure "top-1 accuracy" 'top-1 [0-9.]+ % \([0-9]+ / [0-9]+\), false matches [0-9]+ / [0-9]+'
figure "peak RSS" 'edge peak RSS \(VmHWM\): [0-9.]+ MiB'
[ "$(grep -c 'errors 0$' "$SH_TMP/bench.out")" = 4 ] || fail "a match run had failed requests"
echo "ok: every match run answered every request"
# a second run reads the cached index instead of generating it
"$TOOL" gen --data "$SH_DATA_DIR" --out "$SH_TMP/cache/edge-0.1h-2t.idx" \
  --hours 0.1 --max-tracks 2 | grep -q 'cached: generation skipped' || fail "the index cache was not reused"
echo "ok: the index cache is reused"
