#!/usr/bin/env bash
# `soundhash ingest publish|delete` against a real `soundhash broker` process over TCP: files
# under a media root (sha256 + size), URLs, manifests (CSV and JSON lines), inline clips, deletes;
# and every bad input: a clear error naming the item, exit 1, and NOTHING published (checked with
# the broker's message counts). Decoding of what was published is covered by
# tests/unit/test_ingest.c; the workers' tests consume these events end to end.
source "$SH_ROOT/tests/integration/lib.sh"

media="$SH_TMP/media"; mkdir -p "$media/sub dir" "$SH_TMP/elsewhere"
sox -n -r 8000 -c 1 "$media/sub dir/tone one.wav" synth 1 sine 440 2> /dev/null
sox -n -r 8000 -c 1 "$media/clip.wav" synth 0.5 sine 880 2> /dev/null
head -c 1000000 /dev/urandom > "$media/big.wav"        # over the 900 KiB inline cap
echo "not under the root" > "$SH_TMP/elsewhere/out.wav"
ln -s "$SH_TMP/elsewhere/out.wav" "$media/escape.wav"  # symlink pointing out of the root

"$SH_BIN" broker --bootstrap-file "$SH_TMP/bs" > /dev/null 2> "$SH_TMP/broker.err" &
broker=$!
trap 'kill $broker 2> /dev/null || true' EXIT
wait_for 20 test -s "$SH_TMP/bs"
B=$(cat "$SH_TMP/bs")

events() { # messages currently in soundhash.audio.events
  "$SH_BIN" broker topics --brokers "$B" | grep '"soundhash.audio.events"' |
    sed 's/.*"messages":\([0-9]*\).*/\1/'
}

for bin in "$SH_BIN" "$SH_BIN_ASAN"; do
  before=$(events)
  # Files (relative to the working directory, with spaces), a URL, metadata.
  ( cd "$media" && expect_exit 0 "$bin" ingest publish --brokers "$B" --tenant acme \
      --meta genre=test --meta '{"year":1999}' --media-root "$media" "sub dir/tone one.wav" clip.wav \
      "https://cdn.example.com/a/song.flac?sig=1" )
  check "3 JSON lines" test "$(wc -l < "$SH_TMP/out")" -eq 3
  check "file event keyed by its name" \
    grep -Eq '^\{"track_id":"tone one","event_id":"[0-9a-f-]{36}","topic":"soundhash.audio.events","partition":[0-5],"offset":[0-9]+\}$' "$SH_TMP/out"
  check "URL event" grep -q '"track_id":"song"' "$SH_TMP/out"
  check "3 events stored" test "$(events)" -eq $((before + 3))

  # Same track again: same partition, next offset (key = track id keeps one track ordered).
  p1=$(grep '"track_id":"clip"' "$SH_TMP/out" | sed 's/.*"partition":\([0-9]*\),"offset":\([0-9]*\).*/\1 \2/')
  expect_exit 0 "$bin" ingest publish --brokers "$B" --media-root "$media" --inline "$media/clip.wav"
  p2=$(sed 's/.*"partition":\([0-9]*\),"offset":\([0-9]*\).*/\1 \2/' "$SH_TMP/out")
  set -- $p1; part1=$1 off1=$2; set -- $p2
  check "same partition for the same track ($part1 vs $1)" test "$1" -eq "$part1"
  check "later offset ($off1 < $2)" test "$2" -gt "$off1"

  # Scheme case does not matter; a file:// URI's track id comes from its decoded name.
  expect_exit 0 "$bin" ingest publish --brokers "$B" --media-root "$media" \
    "HTTPS://cdn.example.com/Upper.ogg" "file://$media/sub%20dir/tone%20one.wav"
  check "upper-case scheme accepted" grep -q '"track_id":"Upper"' "$SH_TMP/out"
  check "file URI: id from the decoded name" grep -q '"track_id":"tone one"' "$SH_TMP/out"

  # Manifests: CSV with quoting and metadata, JSON lines; bare paths are relative to the root.
  printf 'track_id,uri,tenant,metadata\n"m,1",sub dir/tone one.wav,t1,"{""title"":""x, y""}"\nm2,https://h.example/b.ogg,,\n' > "$SH_TMP/m.csv"
  expect_exit 0 "$bin" ingest publish --brokers "$B" --media-root "$media" --manifest "$SH_TMP/m.csv"
  check "CSV manifest: 2 events" test "$(wc -l < "$SH_TMP/out")" -eq 2
  check "quoted track id" grep -q '"track_id":"m,1"' "$SH_TMP/out"
  printf '{"track_id":"j1","uri":"file://%s/clip.wav","metadata":{"a":"b"}}\n\n{"track_id":"j2","uri":"https://h.example/c.ogg"}\n' "$media" > "$SH_TMP/m.jsonl"
  expect_exit 0 "$bin" ingest publish --brokers "$B" --media-root "$media" --manifest "$SH_TMP/m.jsonl"
  check "JSON-lines manifest: 2 events" test "$(wc -l < "$SH_TMP/out")" -eq 2

  expect_exit 0 "$bin" ingest delete --brokers "$B" --track-id "tone one" --track-id m2
  check "2 delete events" test "$(wc -l < "$SH_TMP/out")" -eq 2

  # ---- bad input: each named, exit 1, nothing published ----
  before=$(events)
  bad() { # bad "needle" args... : exit 1, stderr has needle, nothing published
    local needle="$1"; shift
    expect_exit 1 "$bin" ingest publish --brokers "$B" --media-root "$media" "$@"
    grep -qF -- "$needle" "$SH_TMP/err" || { cat "$SH_TMP/err" >&2; fail "no '$needle' in stderr"; }
    grep -q "nothing published" "$SH_TMP/err" || fail "no 'nothing published' for: $*"
    echo "ok: rejected ($needle)"
  }
  bad "'$media/missing.wav': " "$media/clip.wav" "$media/missing.wav"
  bad "is outside the media root" "$media/clip.wav" "$SH_TMP/elsewhere/out.wav"
  bad "'$media/escape.wav'" "$media/escape.wav"
  bad "unsupported scheme 'ftp'" "$media/clip.wav" "ftp://h.example/a.wav"
  bad "over the inline audio cap" --inline "$media/clip.wav" "$media/big.wav"
  bad "control character" --track-id "$(printf 'a\tb')" "https://h.example/a.ogg"
  bad "over the 256-byte limit" --track-id "$(head -c 257 /dev/zero | tr '\0' x)" https://h.example/a.ogg
  bad "empty track id" --track-id "" https://h.example/a.ogg
  bad "track id 'a' appears 2 times in the batch: 'https://h.example/a.ogg', 'https://h.example/b/a.ogg'" \
    https://h.example/a.ogg https://h.example/b/a.ogg
  printf 'track_id,uri\nd,https://h.example/1.ogg\nok,https://h.example/2.ogg\nd,https://h.example/3.ogg\n' > "$SH_TMP/dup.csv"
  bad "track id 'd' appears 2 times in the batch: manifest line 2, manifest line 4" --manifest "$SH_TMP/dup.csv"
  # Every problem at once: a missing file does not hide a duplicate.
  bad "appears 2 times" "$media/nope.wav" https://h.example/a.ogg https://h.example/b/a.ogg
  grep -q "nope.wav" "$SH_TMP/err" || fail "missing file not reported with the duplicate"
  : > "$SH_TMP/empty.csv"
  bad "manifest $SH_TMP/empty.csv: no rows" --manifest "$SH_TMP/empty.csv"
  bad "manifest $SH_TMP: not a file" --manifest "$SH_TMP"
  # A file name with a newline or an escape sequence: one line per problem, bytes shown as \xNN.
  nl_name="$media/$(printf 'n\nl').wav"; cp "$media/clip.wav" "$nl_name"
  bad "n\x0al.wav': track id contains control character 0x0a" "$nl_name"
  check "one line per problem" test "$(wc -l < "$SH_TMP/err")" -eq 2
  rm -f "$nl_name"
  bad "track id contains control character 0x85" --track-id "$(printf 'nel\xc2\x85')" https://h.example/a.ogg
  printf 'track_id,uri\ngood,https://h.example/a.ogg\n,https://h.example/b.ogg\nx,"open\n' > "$SH_TMP/bad.csv"
  bad "line 3: empty track id" --manifest "$SH_TMP/bad.csv"
  grep -q "line 4: unterminated quoted field" "$SH_TMP/err" || fail "line 4 not reported"
  printf '{"track_id":"a","uri":"https://h.example/a.ogg"}\n{"track_id":"b","uri":"gopher://h/x"}\n' > "$SH_TMP/bad.jsonl"
  bad "manifest line 2" --manifest "$SH_TMP/bad.jsonl"
  check "nothing was published by any bad batch" test "$(events)" -eq "$before"

  # Usage errors (exit 2) and an unreachable broker (bounded, exit 1).
  expect_exit 2 "$bin" ingest publish --brokers "$B"
  expect_exit 2 "$bin" ingest publish --brokers "$B" -X no.such.prop=1 https://h.example/a.ogg
  grep -q "no.such.prop" "$SH_TMP/err" || fail "bad -X not named"
  expect_exit 2 "$bin" ingest delete --brokers "$B"
  # --meta: key=value or a JSON object, the same format and exit code as `index add --meta`.
  expect_exit 2 "$bin" ingest publish --brokers "$B" --meta notkv https://h.example/a.ogg
  grep -q -- "--meta 'notkv'" "$SH_TMP/err" || fail "bad --meta not named"
  expect_exit 2 "$bin" ingest publish --brokers "$B" --meta '{"a":' https://h.example/a.ogg
  expect_exit 2 "$bin" ingest publish --brokers "$B" --manifest "$SH_TMP/none.csv"
  grep -q -- "--manifest .*none.csv" "$SH_TMP/err" || fail "missing manifest not named"
  check "nothing was published by any usage error" test "$(events)" -eq "$before"
  start=$(date +%s)
  expect_exit 1 "$bin" ingest publish --brokers 127.0.0.1:1 --timeout 1 https://h.example/a.ogg
  grep -q "no Kafka broker reachable at 127.0.0.1:1 within 1000 ms" "$SH_TMP/err" ||
    fail "unreachable broker not reported"
  check "unreachable broker: one line on stderr" test "$(wc -l < "$SH_TMP/err")" -eq 1
  check "unreachable broker: gave up within a few seconds" test $(( $(date +%s) - start )) -le 5
done
