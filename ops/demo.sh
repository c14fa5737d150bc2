#!/usr/bin/env bash
# `make demo`: SoundHash end to end on this machine, one stage at a time.
#   Stage 1 — local shard: fetch the demo corpus (real music from Debian's game-music packages, see
#   scripts/data/) and the degraded queries when missing, index corpus/dev into a fresh shard with
#   `soundhash index add`, match a sample of queries (2 per condition, negatives included) with
#   `soundhash match`, print a table and a summary.
# Environment: SOUNDHASH_BIN (default build/soundhash), SOUNDHASH_DATA_DIR (default
# ~/.cache/soundhash-data), DEMO_PER_COND (queries per condition, default 2), DEMO_KEEP=1 keeps the
# scratch directory.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SOUNDHASH_BIN:-$ROOT/build/soundhash}"
DATA="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
PER_COND="${DEMO_PER_COND:-2}"
export SOUNDHASH_DATA_DIR="$DATA"
WORK="$(mktemp -d /tmp/soundhash-demo.XXXXXX)"
[ "${DEMO_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# ensure_data: builds the corpus and the 384-query set into $DATA when missing.
ensure_data() {
  if [ ! -f "$DATA/corpus/dev/manifest.csv" ] || [ ! -f "$DATA/corpus/neg/manifest.csv" ]; then
    say "fetching the demo corpus into $DATA (Debian game-music packages)"
    "$ROOT/scripts/data/make_corpus.sh" --all --root "$DATA"
  fi
  if [ ! -f "$DATA/queries/dev/ground_truth.csv" ]; then
    say "rendering degraded queries into $DATA/queries/dev"
    "$ROOT/scripts/data/make_queries.sh" dev --root "$DATA"
  fi
}

# sample_queries GT N: N queries of each condition of ground_truth.csv GT, spread evenly over the
# condition's rows (c*5+1 mod total < N: 5 s and 10 s excerpts of different tracks), as CSV rows.
sample_queries() {
  awk -F, -v n="$2" 'NR == FNR { if (FNR > 1) total[$5]++; next }
                     FNR > 1 { c = seen[$5]++; if ((c * 5 + 1) % total[$5] < n) print }' "$1" "$1"
}

# print_match_table SAMPLE_CSV MATCH_JSONL: one row per query (ground-truth rows of SAMPLE_CSV in
# the order of the `soundhash match` lines of MATCH_JSONL), then a summary. Reusable by later
# stages that get their answers elsewhere (e.g. the edge's /v1/match) in the same JSON shape.
print_match_table() {
  local sample="$1" answers="$2"
  jq -r '[(.query | split("/") | last), (.match.track_id // "NONE"),
          (.match.offset_s // "" | tostring), (.elapsed_ms | tostring)] | @tsv' "$answers" |
    paste -d '\t' <(tr ',' '\t' < "$sample") - |
    awk -F'\t' '
      BEGIN {
        printf "%-30s %-14s %-34s %-34s %9s %9s %8s\n", "query", "condition", "expected",
               "answer", "offset_s", "want_s", "ms"
      }
      {
        expected = $2; sub(/\.[^.]*$/, "", expected)
        answer = $9; offset = $10; ms = $11; want = ($2 == "NONE") ? "" : sprintf("%.2f", $3 - $6)
        ok = (expected == answer)
        if (expected == "NONE") { neg++; if (!ok) fm++ } else { pos++; if (ok) hit++ }
        if (ok && expected != "NONE" && (offset - want > 0.2 || want - offset > 0.2)) offbad++
        lat[NR] = ms + 0
        printf "%-30s %-14s %-34s %-34s %9s %9s %8.1f %s\n", substr($1, 1, 30), $5,
               substr(expected, 1, 34), substr(answer, 1, 34),
               offset == "" ? "-" : sprintf("%.2f", offset), want == "" ? "-" : want, ms,
               ok ? "ok" : "MISS"
      }
      END {
        n = NR
        for (i = 2; i <= n; i++) { v = lat[i]; for (j = i - 1; j >= 1 && lat[j] > v; j--) lat[j + 1] = lat[j]; lat[j + 1] = v }
        printf "\nsummary: %d/%d positives identified (%.1f %%), %d with an offset off by > 0.2 s; " \
               "%d/%d negatives falsely matched; latency p50 %.1f ms (decode + fingerprint + " \
               "lookup, per query in one process)\n",
               hit, pos, pos ? 100 * hit / pos : 0, offbad, fm, neg, n ? lat[int((n + 1) / 2)] : 0
      }'
}

stage1_local_shard() {
  say "stage 1: local shard — index corpus/dev, match degraded clips"
  local shard="$WORK/shard" n
  n=$(tail -n +2 "$DATA/corpus/dev/manifest.csv" | wc -l)
  echo "indexing $n tracks into $shard"
  # A track that fails to decode is reported and skipped: the demo goes on with the others.
  "$BIN" index add --index "$shard" "$DATA"/corpus/dev/*.ogg > "$WORK/added.jsonl" ||
    echo "(some tracks could not be indexed: see the messages above)"
  "$BIN" index stats --index "$shard" |
    jq -r '"index: \(.tracks) tracks, \(.postings) postings, \(.file_bytes / 1024 | floor) KB on disk = \(.bytes_per_posting * 100 | round / 100) bytes/posting, \(.mb_per_audio_hour * 1000 | round / 1000) MB per audio hour"'
  sample_queries "$DATA/queries/dev/ground_truth.csv" "$PER_COND" > "$WORK/sample.csv"
  local files=()
  while IFS=, read -r q _; do files+=("$DATA/queries/dev/$q"); done < "$WORK/sample.csv"
  echo "matching ${#files[@]} queries ($PER_COND per condition, negatives included)"
  "$BIN" match --index "$shard" "${files[@]}" > "$WORK/answers.jsonl"
  echo
  print_match_table "$WORK/sample.csv" "$WORK/answers.jsonl"
}

[ -x "$BIN" ] || { echo "demo: $BIN not built (run make)" >&2; exit 1; }
ensure_data
stage1_local_shard
