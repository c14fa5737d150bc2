#!/usr/bin/env bash
# Index eight real tracks into a shard with `soundhash index add`, then `soundhash match` excerpts
# cut with sox (clean and noisy): right track and offset; a never-indexed track matches nothing;
# stats counts; delete then match gives null; usage and runtime errors give exit codes 2 and 1.
# Uses the real-music corpus ($SH_DATA_DIR/corpus/dev), building it when missing.
. "$SH_ROOT/tests/integration/lib.sh"
D="$SH_DATA_DIR/corpus/dev"
[ -f "$D/manifest.csv" ] || SOUNDHASH_DATA_DIR="$SH_DATA_DIR" "$SH_ROOT/scripts/data/make_corpus.sh" --dev
# The nine shortest tracks: eight indexed, the ninth never. (Eight, not two: the matcher's
# confidence uses the best other track as the noise floor, which a tiny index lacks.)
mapfile -t T < <(tail -n +2 "$D/manifest.csv" | sort -t, -k6 -n | head -9 | cut -d, -f1)
[ "${#T[@]}" -eq 9 ] || fail "corpus has fewer than 9 tracks"
IDX="$SH_TMP/idx"; Q="$SH_TMP/q"; mkdir -p "$Q"
json() { python3 -c "import json,sys; d=json.loads(sys.stdin.readline()); print(eval(sys.argv[1]))" "$1"; }

files=(); for i in 0 1 2 3 4 5 6 7; do files+=("$D/${T[$i]}.ogg"); done
expect_exit 0 "$SH_BIN" index add --index "$IDX" "${files[@]}"
check "add prints one line per file" [ "$(wc -l < "$SH_TMP/out")" -eq 8 ]
check "default id is the file name" grep -q "\"track_id\":\"${T[1]}\",\"status\":\"added\"" "$SH_TMP/out"
total=$(python3 -c "import json,sys; print(sum(json.loads(l)['hashes'] for l in open(sys.argv[1])))" "$SH_TMP/out")

expect_exit 0 "$SH_BIN" index stats --index "$IDX"
check "stats: 8 tracks" [ "$(json "d['tracks']" < "$SH_TMP/out")" -eq 8 ]
check "stats: postings = sum of hashes ($total)" [ "$(json "d['postings']" < "$SH_TMP/out")" -eq "$total" ]

# Excerpts: 8 s from 20.5 s of track 1 (clean), 10 s from 30 s of track 2 with pink noise, and
# 10 s of the never-indexed track.
sox "$D/${T[1]}.ogg" "$Q/a.wav" trim 20.5 8
sox "$D/${T[2]}.ogg" "$Q/clean_b.wav" trim 30 10
sox "$Q/clean_b.wav" -p synth pinknoise vol 0.05 | sox -m "$Q/clean_b.wav" - "$Q/b.wav"
sox "$D/${T[8]}.ogg" "$Q/neg.wav" trim 10 10
expect_exit 0 "$SH_BIN" match --index "$IDX" --top 3 "$Q/a.wav" "$Q/b.wav" "$Q/neg.wav"
sed -n 1p "$SH_TMP/out" > "$SH_TMP/a.json"; sed -n 2p "$SH_TMP/out" > "$SH_TMP/b.json"
sed -n 3p "$SH_TMP/out" > "$SH_TMP/n.json"
check "clean excerpt: right track" [ "$(json "d['match']['track_id']" < "$SH_TMP/a.json")" = "${T[1]}" ]
check "clean excerpt: offset 20.5 s ± 0.2" python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if abs(d['match']['offset_s']-20.5) < 0.2 else 1)" "$SH_TMP/a.json"
check "noisy excerpt: right track" [ "$(json "d['match']['track_id']" < "$SH_TMP/b.json")" = "${T[2]}" ]
check "noisy excerpt: offset 30 s ± 0.2" python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if abs(d['match']['offset_s']-30) < 0.2 else 1)" "$SH_TMP/b.json"
check "top 3 gives candidates" [ "$(json "len(d['candidates']) >= 1" < "$SH_TMP/a.json")" = True ]
check "never-indexed track: match null" [ "$(json "d['match']" < "$SH_TMP/n.json")" = None ]

# Replace: adding the same id again replaces (counts unchanged); the ASan build does the writes.
expect_exit 0 "$SH_BIN_ASAN" index add --index "$IDX" "$D/${T[0]}.ogg"
check "re-add reports replaced" grep -q '"status":"replaced"' "$SH_TMP/out"
expect_exit 0 "$SH_BIN_ASAN" index stats --index "$IDX"
check "replace keeps postings exact" [ "$(json "d['postings']" < "$SH_TMP/out")" -eq "$total" ]

expect_exit 0 "$SH_BIN_ASAN" index delete --index "$IDX" "${T[1]}"
check "delete reports deleted" grep -q "\"deleted\":true" "$SH_TMP/out"
expect_exit 0 "$SH_BIN_ASAN" match --index "$IDX" "$Q/a.wav"
check "deleted track: match null" [ "$(json "d['match']" < "$SH_TMP/out")" = None ]
expect_exit 0 "$SH_BIN" index stats --index "$IDX"
check "stats after delete: 7 tracks, no dead postings" [ "$(json "(d['tracks'], d['dead_postings'])" < "$SH_TMP/out")" = "(7, 0)" ]
expect_exit 0 "$SH_BIN" match --index "$IDX" "$Q/b.wav"
check "other tracks still match" [ "$(json "d['match']['track_id']" < "$SH_TMP/out")" = "${T[2]}" ]

# Errors: usage → 2, runtime → 1 with a message.
expect_exit 2 "$SH_BIN" match "$Q/a.wav"
expect_exit 2 "$SH_BIN" index frobnicate --index "$IDX"
expect_exit 2 "$SH_BIN" index add --index "$IDX" --id x "$Q/a.wav" "$Q/b.wav"
expect_exit 1 "$SH_BIN" index delete --index "$IDX" no-such-track
expect_exit 1 "$SH_BIN" match --index "$SH_TMP/nowhere" "$Q/a.wav"
check "missing index named on stderr" grep -q "no shard index" "$SH_TMP/err"
head -c 20000 /dev/urandom > "$SH_TMP/junk.wav"
expect_exit 1 "$SH_BIN_ASAN" match --index "$IDX" "$SH_TMP/junk.wav" "$Q/b.wav"
check "a bad file does not stop the others" grep -q "\"track_id\":\"${T[2]}\"" "$SH_TMP/out"
mkdir -p "$SH_TMP/bad"; head -c 65536 /dev/urandom > "$SH_TMP/bad/data.mdb"
expect_exit 1 "$SH_BIN_ASAN" index stats --index "$SH_TMP/bad"
check "corrupted index: clear error" grep -q "not a SoundHash shard" "$SH_TMP/err"
echo "20_index_match: all checks passed"
