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
jcheck() { # jcheck "description" FILE JQ_FILTER : the filter must be true on FILE's first line
  local what="$1" file="$2"; shift 2
  if head -n 1 "$file" | jq -e "$@" > /dev/null; then echo "ok: $what"; else fail "$what: $(head -c 400 "$file")"; fi
}

files=(); for i in 0 1 2 3 4 5 6 7; do files+=("$D/${T[$i]}.ogg"); done
expect_exit 0 "$SH_BIN" index add --index "$IDX" "${files[@]}"
check "add prints one line per file" [ "$(wc -l < "$SH_TMP/out")" -eq 8 ]
check "default id is the file name" grep -q "\"track_id\":\"${T[1]}\",\"status\":\"added\"" "$SH_TMP/out"
total=$(jq -s 'map(.hashes) | add' "$SH_TMP/out")

expect_exit 0 "$SH_BIN" index stats --index "$IDX"
jcheck "stats: 8 tracks" "$SH_TMP/out" '.tracks == 8'
jcheck "stats: postings = sum of hashes ($total)" "$SH_TMP/out" --argjson n "$total" '.postings == $n'

# Excerpts: 8 s from 20.5 s of track 1 (clean), 10 s from 30 s of track 2 with pink noise, and
# 10 s of the never-indexed track.
sox "$D/${T[1]}.ogg" "$Q/a.wav" trim 20.5 8
sox "$D/${T[2]}.ogg" "$Q/clean_b.wav" trim 30 10
sox "$Q/clean_b.wav" -p synth pinknoise vol 0.05 | sox -m "$Q/clean_b.wav" - "$Q/b.wav"
sox "$D/${T[8]}.ogg" "$Q/neg.wav" trim 10 10
expect_exit 0 "$SH_BIN" match --index "$IDX" --top 3 "$Q/a.wav" "$Q/b.wav" "$Q/neg.wav"
sed -n 1p "$SH_TMP/out" > "$SH_TMP/a.json"; sed -n 2p "$SH_TMP/out" > "$SH_TMP/b.json"
sed -n 3p "$SH_TMP/out" > "$SH_TMP/n.json"
jcheck "clean excerpt: right track" "$SH_TMP/a.json" --arg t "${T[1]}" '.match.track_id == $t'
jcheck "clean excerpt: offset 20.5 s ± 0.2" "$SH_TMP/a.json" '(.match.offset_s - 20.5) | . < 0.2 and . > -0.2'
jcheck "noisy excerpt: right track" "$SH_TMP/b.json" --arg t "${T[2]}" '.match.track_id == $t'
jcheck "noisy excerpt: offset 30 s ± 0.2" "$SH_TMP/b.json" '(.match.offset_s - 30) | . < 0.2 and . > -0.2'
jcheck "top 3 gives candidates" "$SH_TMP/a.json" '(.candidates | length) >= 1'
jcheck "never-indexed track: match null" "$SH_TMP/n.json" '.match == null'

# Replace: adding the same id again replaces (counts unchanged); the ASan build does the writes.
expect_exit 0 "$SH_BIN_ASAN" index add --index "$IDX" "$D/${T[0]}.ogg"
check "re-add reports replaced" grep -q '"status":"replaced"' "$SH_TMP/out"
expect_exit 0 "$SH_BIN_ASAN" index stats --index "$IDX"
jcheck "replace keeps postings exact" "$SH_TMP/out" --argjson n "$total" '.postings == $n and .tracks == 8'

expect_exit 0 "$SH_BIN_ASAN" index delete --index "$IDX" "${T[1]}"
check "delete reports deleted" grep -q "\"deleted\":true" "$SH_TMP/out"
expect_exit 0 "$SH_BIN_ASAN" match --index "$IDX" "$Q/a.wav"
jcheck "deleted track: match null" "$SH_TMP/out" '.match == null'
expect_exit 0 "$SH_BIN" index stats --index "$IDX"
jcheck "stats after delete: 7 tracks, no dead postings" "$SH_TMP/out" '.tracks == 7 and .dead_postings == 0'
expect_exit 0 "$SH_BIN" match --index "$IDX" "$Q/b.wav"
jcheck "other tracks still match" "$SH_TMP/out" --arg t "${T[2]}" '.match.track_id == $t'

# Errors: usage → 2, runtime → 1 with a message.
expect_exit 2 "$SH_BIN" match "$Q/a.wav"
expect_exit 2 "$SH_BIN" index frobnicate --index "$IDX"
expect_exit 2 "$SH_BIN" index add --index "$IDX" --id x "$Q/a.wav" "$Q/b.wav"
expect_exit 2 "$SH_BIN" match --index "$IDX" --min-confidence -0.5 "$Q/a.wav"
expect_exit 2 "$SH_BIN" match --index "$IDX" --top 0 "$Q/a.wav"
expect_exit 1 "$SH_BIN" index delete --index "$IDX" no-such-track
expect_exit 2 "$SH_BIN" match --index "$SH_TMP/nowhere" "$Q/a.wav"  # a missing --index: usage
check "missing index named on stderr" grep -q -- "--index .*no shard index" "$SH_TMP/err"
head -c 20000 /dev/urandom > "$SH_TMP/junk.wav"
expect_exit 1 "$SH_BIN_ASAN" match --index "$IDX" "$SH_TMP/junk.wav" "$Q/b.wav"
check "a bad file does not stop the others" grep -q "\"track_id\":\"${T[2]}\"" "$SH_TMP/out"
mkdir -p "$SH_TMP/bad"; head -c 65536 /dev/urandom > "$SH_TMP/bad/data.mdb"
expect_exit 1 "$SH_BIN_ASAN" index stats --index "$SH_TMP/bad"
check "corrupted index: clear error" grep -q "not a SoundHash shard" "$SH_TMP/err"

# delete/stats/match never create an index: a mistyped directory stays absent.
expect_exit 2 "$SH_BIN" index delete --index "$SH_TMP/typo" some-id
check "delete on a missing index: clear error" grep -q "no shard index" "$SH_TMP/err"
check "delete on a missing index creates nothing" test ! -e "$SH_TMP/typo"
mkdir "$SH_TMP/emptydir"
expect_exit 2 "$SH_BIN" index delete --index "$SH_TMP/emptydir" some-id
check "delete on an empty directory writes nothing" test -z "$(ls -A "$SH_TMP/emptydir")"
: > "$SH_TMP/afile"
expect_exit 2 "$SH_BIN" index add --index "$SH_TMP/afile" "$Q/a.wav"
check "an index path that is a file: clear error" grep -q "not a directory" "$SH_TMP/err"

# --id must fit the shard's 256-byte limit: refused as a usage error, never silently cut.
expect_exit 2 "$SH_BIN" index add --index "$IDX" --id "$(printf 'x%.0s' {1..257})" "$Q/a.wav"
expect_exit 2 "$SH_BIN" index add --index "$IDX" --id "" "$Q/a.wav"
expect_exit 0 "$SH_BIN" index add --index "$SH_TMP/idx256" --id "$(printf 'y%.0s' {1..256})" "$Q/a.wav"

# Two files of one batch with the same default id: the second replaces the first and says so.
mkdir -p "$SH_TMP/d1" "$SH_TMP/d2"
cp "$D/${T[3]}.ogg" "$SH_TMP/d1/same.ogg"; cp "$D/${T[4]}.ogg" "$SH_TMP/d2/same.ogg"
expect_exit 0 "$SH_BIN" index add --index "$SH_TMP/dup" "$SH_TMP/d1/same.ogg" "$SH_TMP/d2/same.ogg"
check "same id twice in a batch: added, then replaced" \
  test "$(jq -r .status "$SH_TMP/out" | tr '\n' ' ')" = "added replaced "

# Progress bar: only on a terminal (script(1) fakes one), never in piped output.
expect_exit 0 "$SH_BIN" index add --index "$SH_TMP/prog" "$Q/a.wav" "$Q/b.wav"
check "no progress bar without a terminal" test ! -s "$SH_TMP/err"
script -qec "$SH_BIN index add --index $SH_TMP/prog $Q/a.wav $Q/b.wav" /dev/null > "$SH_TMP/tty" < /dev/null
check "progress bar on a terminal" grep -q '\[##############################\] 2/2' "$SH_TMP/tty"
check "JSON lines start on their own line" \
  test "$(tr '\r' '\n' < "$SH_TMP/tty" | grep -c '^{"file"')" -eq 2

# Two processes adding to one shard at once (LMDB's lock serialises the writers; a tiny map makes
# both grow it) while a third matches: every add lands, no reader sees an error once the shard
# exists, and the final shard answers.
CI="$SH_TMP/conc"
"$SH_BIN_ASAN" index add --index "$CI" --map-size 64K --batch 1 "$D/${T[0]}.ogg" "$D/${T[1]}.ogg" \
  "$D/${T[2]}.ogg" "$D/${T[3]}.ogg" > "$SH_TMP/c1" 2> "$SH_TMP/c1.err" & p1=$!
"$SH_BIN" index add --index "$CI" --map-size 64K --batch 1 "$D/${T[4]}.ogg" "$D/${T[5]}.ogg" \
  "$D/${T[6]}.ogg" "$D/${T[7]}.ogg" > "$SH_TMP/c2" 2> "$SH_TMP/c2.err" & p2=$!
merr=0
while kill -0 $p1 2> /dev/null || kill -0 $p2 2> /dev/null; do
  set +e; "$SH_BIN" match --index "$CI" "$Q/b.wav" > /dev/null 2> "$SH_TMP/m.err"; rc=$?; set -e
  # Before the first writer has created the shard, "no shard index there" is the right answer.
  [ $rc -eq 0 ] || grep -q "no shard index there" "$SH_TMP/m.err" || { cat "$SH_TMP/m.err"; merr=1; }
done
wait $p1 || fail "first concurrent add failed: $(cat "$SH_TMP/c1.err")"
wait $p2 || fail "second concurrent add failed: $(cat "$SH_TMP/c2.err")"
check "matching during concurrent adds: no errors" test $merr -eq 0
expect_exit 0 "$SH_BIN" index stats --index "$CI"
jcheck "concurrent adds: all 8 tracks, postings = serial build" "$SH_TMP/out" --argjson n "$total" \
  '.tracks == 8 and .postings == $n'
expect_exit 0 "$SH_BIN" match --index "$CI" "$Q/b.wav"
jcheck "concurrently built shard matches" "$SH_TMP/out" --arg t "${T[2]}" '.match.track_id == $t'
# Compact: a shard written one track per `index add` run (what an edge applying deltas does) keeps
# the free pages of LMDB's copy-on-write; `index compact` repacks it and shrinks the file, with the
# same counts and the same answers, and the shard stays writable.
CP="$SH_TMP/cpt"
for i in 0 1 2 3 4 5 6 7; do expect_exit 0 "$SH_BIN" index add --index "$CP" "$D/${T[$i]}.ogg"; done
expect_exit 0 "$SH_BIN" index stats --index "$CP"; cp "$SH_TMP/out" "$SH_TMP/cs0.json"
expect_exit 0 "$SH_BIN" match --index "$CP" --top 3 "$Q/a.wav" "$Q/b.wav" "$Q/neg.wav"
jq -c 'del(.elapsed_ms)' "$SH_TMP/out" > "$SH_TMP/cm0.json"
jcheck "match --top: candidates best first, the first is the match, each with a scale" \
  "$SH_TMP/out" 'select(.match != null) | (.candidates[0] == .match) and (.match.scale > 0.9 and .match.scale < 1.1)'

bytes0=$(jq .file_bytes "$SH_TMP/cs0.json")
expect_exit 0 "$SH_BIN_ASAN" index compact --index "$CP"
jcheck "compact: bytes_before = stats, bytes_after smaller" "$SH_TMP/out" --argjson b "$bytes0" \
  '.bytes_before == $b and .bytes_after < $b and .mb_per_audio_hour < .mb_per_audio_hour_before'
jcheck "compact: bytes per posting and MB per audio hour" "$SH_TMP/out" \
  '.bytes_per_posting > 0 and .mb_per_audio_hour > 0 and .elapsed_ms >= 0 and .waited_ms < 1000'
bytes1=$(jq .bytes_after "$SH_TMP/out")
check "compact: data.mdb shrank on disk ($bytes0 -> $bytes1)" test "$(stat -c %s "$CP/data.mdb")" -eq "$bytes1"
check "compact: nothing left behind" test "$(ls -A "$CP" | tr '\n' ' ')" = "data.mdb lock.mdb "
expect_exit 0 "$SH_BIN" index stats --index "$CP"
jcheck "compact: counts identical" "$SH_TMP/out" --slurpfile a "$SH_TMP/cs0.json" \
  '[.tracks, .postings, .audio_s, .dead_postings] == [$a[0].tracks, $a[0].postings, $a[0].audio_s, 0]'
expect_exit 0 "$SH_BIN" match --index "$CP" --top 3 "$Q/a.wav" "$Q/b.wav" "$Q/neg.wav"
check "compact: same match answers" test "$(jq -c 'del(.elapsed_ms)' "$SH_TMP/out")" = "$(cat "$SH_TMP/cm0.json")"
expect_exit 0 "$SH_BIN_ASAN" index add --index "$CP" --id after "$Q/b.wav"
expect_exit 0 "$SH_BIN" index stats --index "$CP"
jcheck "compacted shard stays writable" "$SH_TMP/out" '.tracks == 9'
expect_exit 0 "$SH_BIN" index add --index "$SH_TMP/cpt2" --compact "$D/${T[0]}.ogg"
check "add --compact: add line then compact line" \
  test "$(jq -r 'if .status then .status else (.bytes_after > 0 | tostring) end' "$SH_TMP/out" | tr '\n' ' ')" = "added true "
expect_exit 2 "$SH_BIN" index compact --index "$SH_TMP/nowhere2"
check "compact on a missing index: clear error, creates nothing" \
  sh -c 'grep -q "no shard index" "$0" && test ! -e "$1"' "$SH_TMP/err" "$SH_TMP/nowhere2"
expect_exit 2 "$SH_BIN" index compact --index "$CP" extra
expect_exit 2 "$SH_BIN" index compact --index "$CP" --wait -1
expect_exit 0 "$SH_BIN" index compact --help
check "compact --help documents the refusal" grep -q "another process has the index open" "$SH_TMP/out"

# Another process holding the shard open (simulated exactly as LMDB does it: a shared lock on
# byte 0 of lock.mdb, kept while the environment is open): compact refuses and changes nothing;
# with --wait it proceeds once that process closes the shard.
exec {hin}> >(python3 -c 'import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR); fcntl.lockf(fd, fcntl.LOCK_SH, 1, 0)
open(sys.argv[2], "w").close(); sys.stdin.read()' "$CP/lock.mdb" "$SH_TMP/held")
wait_for 60 test -e "$SH_TMP/held"   # python starts in 6 s and more on a loaded machine
size_held=$(stat -c %s "$CP/data.mdb")
expect_exit 1 "$SH_BIN" index compact --index "$CP"
check "compact while the shard is open elsewhere: refused, named" grep -q "open in another process" "$SH_TMP/err"
check "the refusal names --wait" grep -q -- "--wait SECONDS" "$SH_TMP/err"
check "refused compact leaves the file alone" test "$(stat -c %s "$CP/data.mdb")" -eq "$size_held"
# (the compact must not inherit the pipe to the holder, or the holder never sees it close)
"$SH_BIN" index compact --index "$CP" --wait 60 > "$SH_TMP/cw" 2> "$SH_TMP/cw.err" {hin}>&- & pw=$!
wait_for 30 grep -q "waiting up to 60 s for other processes" "$SH_TMP/cw.err"
echo "ok: compact --wait says it waits"
exec {hin}>&-
wait $pw || fail "compact --wait did not proceed once the shard was closed: $(cat "$SH_TMP/cw.err")"
echo "ok: compact --wait proceeds once the other process closes the shard"
jcheck "compact --wait reports the wait and the compaction apart" "$SH_TMP/cw" \
  '.waited_ms > 0 and .elapsed_ms >= 0 and .bytes_after > 0'

# Compact racing real `index add` runs, never losing an add. Add first (a compact once the add
# has committed a file, while it is still at work): the compact is refused, or goes ahead if the
# add has already closed the shard. Compact first: an add starting meanwhile waits in its open
# and writes into the new file. Every add must succeed and land.
CC="$SH_TMP/cc"
expect_exit 0 "$SH_BIN" index add --index "$CC" "$D/${T[0]}.ogg"
refused=0
for pair in "1 2" "3 4"; do
  set -- $pair
  "$SH_BIN_ASAN" index add --index "$CC" --batch 1 "$D/${T[$1]}.ogg" "$D/${T[$2]}.ogg" \
    > "$SH_TMP/ra" 2> "$SH_TMP/ra.err" & pa=$!
  wait_for 60 grep -q '"status"' "$SH_TMP/ra"
  set +e; "$SH_BIN" index compact --index "$CC" > /dev/null 2> "$SH_TMP/rc.err"; rc=$?; set -e
  [ $rc -eq 0 ] || { grep -q "open in another process" "$SH_TMP/rc.err" || fail "compact: $(cat "$SH_TMP/rc.err")"; refused=$((refused + 1)); }
  wait $pa || fail "add running under a compact failed: $(cat "$SH_TMP/ra.err")"
done
echo "ok: compact during a running add: $refused of 2 refused (the others ran after the add closed)"
for i in 5 6 7; do
  "$SH_BIN_ASAN" index compact --index "$CC" > /dev/null 2> "$SH_TMP/rc.err" & pc=$!
  "$SH_BIN" index add --index "$CC" "$D/${T[$i]}.ogg" > "$SH_TMP/ra" 2> "$SH_TMP/ra.err" \
    || fail "add started during a compact failed: $(cat "$SH_TMP/ra.err")"
  wait $pc || grep -q "open in another process" "$SH_TMP/rc.err" || fail "compact: $(cat "$SH_TMP/rc.err")"
done
echo "ok: adds started during a compact all succeeded"
expect_exit 0 "$SH_BIN" index compact --index "$CC"
expect_exit 0 "$SH_BIN" index stats --index "$CC"
jcheck "adds and compacts interleaved: all 8 tracks, postings = serial build" "$SH_TMP/out" --argjson n "$total" \
  '.tracks == 8 and .postings == $n'
expect_exit 0 "$SH_BIN" match --index "$CC" "$Q/b.wav"
jcheck "shard compacted under races matches" "$SH_TMP/out" --arg t "${T[2]}" '.match.track_id == $t'
echo "20_index_match: all checks passed"
