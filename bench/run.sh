#!/usr/bin/env bash
# `make bench`: runs every benchmark section in turn and prints its figures. One section per
# benchmark; add yours as a `section NAME CMD...` line. BUILD selects the build directory.
set -u
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
failed=0
section() { # section NAME CMD... : prints a header, runs CMD, remembers failures
  local name="$1"; shift
  echo "== $name"
  if [ ! -x "$1" ]; then echo "   (not built: $1)"; failed=$((failed + 1)); return; fi
  "$@" || { echo "   FAILED: $name"; failed=$((failed + 1)); }
}

# Test audio (scripts/data, real music from Debian packages; see its README), built when missing:
# the corpus (38 tracks to index, 12 never indexed) and the 1536-query set (--k 48 --kneg 96).
DATA="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
export SOUNDHASH_DATA_DIR="$DATA"
if [ ! -f "$DATA/corpus/dev/manifest.csv" ] || [ ! -f "$DATA/corpus/neg/manifest.csv" ]; then
  scripts/data/make_corpus.sh --all --root "$DATA" || failed=$((failed + 1))
fi
if [ ! -f "$DATA/q1536/queries/dev/ground_truth.csv" ]; then
  mkdir -p "$DATA/q1536" && ln -sfn ../corpus "$DATA/q1536/corpus"
  scripts/data/make_queries.sh dev --k 48 --kneg 96 --root "$DATA/q1536" || failed=$((failed + 1))
fi

# Publish throughput of metadata-only audio events to a broker over loopback TCP (target >= 50k/s).
section publish "$BUILD/bench/bench_publish" 200000

# Encode/decode throughput of the Avro contract (audio event, inline clip, index delta).
section schema "$BUILD/bench/bench_schema" 200000

# The index-delta payload codec over the real corpus: bytes per posting on the wire (one track per
# payload, per-shard batches, whole corpus) vs today's posting blob, the entropy bound of the
# columns it writes, encode/decode postings/s (target <= 4.0 bytes/posting, >= 2 M postings/s).
section dpay "$BUILD/bench/bench_dpay"

# The LMDB shard over the real corpus: index bytes per posting and MB per audio hour (bulk build,
# incremental build, compacted snapshot), shard build speed, match latency p50/p99 of 5 s and 10 s
# queries in-process (q1536 set), shard lookup alone.
section shard "$BUILD/bench/bench_shard"

# Decode cost per core over the corpus's Ogg files: libsndfile alone, + downmix/resample, + fingerprint
# (extraction including decoding, x realtime per core; cost relative to libsndfile's own decode).
section audio "$BUILD/bench/bench_audio"

# Fingerprint + matcher accuracy on the q1536 set with an in-memory index: top-1 per degradation
# for 5 s / 10 s queries, false matches on negatives, postings per second, extraction speed
# excluding decoding, match latency p50/p99 (CPU time).
section accuracy "$BUILD/bench/eval_accuracy" --repeat 3

# Worker end to end (broker + PostgreSQL + worker, dev corpus) vs raw `soundhash fingerprint` on the
# same threads (target >= 80 %), worker CPU vs raw CPU, and worker peak RSS incl. a 90 min file.
section worker bench/bench_worker.sh "$BUILD/soundhash" 2

# Replicator (broker + PostgreSQL + two workers ingesting the dev corpus): commit -> Kafka-ack lag
# p50/p99 (target p99 <= 250 ms), bytes per posting on the wire next to the primary's blob, and
# sustained throughput through a fresh replicator over the corpus copied 20x (target >= 2 M
# postings/s) with its CPU share.
section replicator bench/bench_replicator.sh "$BUILD/soundhash" 20

# Edge (broker + PostgreSQL + replicator + `soundhash edge`, all 8 shards) over >= 100 h of distinct
# audio (the dev corpus speed-shifted into new tracks, generated once into DATA/bench): apply
# throughput and commit -> applied lag under ingest (target p99 <= 1 s), bootstrap time and shard
# bytes per audio hour, 10 s queries over HTTP as audio (latency p50/p99 for one client, matches/s
# at saturation, top-1 accuracy), edge peak RSS. Alone: `make bench-edge`.
section edge bench/bench_edge.sh "$BUILD/soundhash" 100

# The shard lookup alone over the edge section's 100 h index, in-process: wall-clock p50/p99 and
# instructions (callgrind) per 10 s hash query against one shard (12.5 h) and all 8.
# Alone: `make bench-lookup`.
section lookup bench/bench_lookup.sh "$BUILD/bench/bench_lookup"

[ "$failed" -eq 0 ] || { echo "bench: $failed section(s) failed"; exit 1; }
