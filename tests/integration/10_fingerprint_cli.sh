#!/usr/bin/env bash
# `soundhash fingerprint` on real files: sox-made audio in every format libsndfile reads, broken
# inputs built from those bytes, usage errors. Checks exit codes, the JSON fields (python3) and that
# each failure names its file on stderr. Runs the optimised and the ASan+UBSan binary alike.
source "$(dirname "$0")/lib.sh"
cd "$SH_TMP"

# ---- inputs ------------------------------------------------------------------------------------
sox -n -b 16 -r 44100 -c 2 st44.wav synth 5 sine 300-3000 pinknoise vol 0.5 2>/dev/null
sox st44.wav st44.flac
sox st44.wav st44.ogg
sox st44.wav -C 128 st44.mp3
sox st44.wav st44.aiff
sox -n -b 24 -r 96000 -c 1 mono96.flac synth 3 sine 1000 2>/dev/null
sox -n -b 16 -r 8000 -c 1 mono8.wav synth 3 whitenoise vol 0.3 2>/dev/null
sox -n -r 22050 -c 6 six.wav synth 2 sine 440 2>/dev/null
sox st44.wav -r 48000 st48.wav && opusenc --quiet st48.wav st48.opus
# wesnoth__northerners.ogg (if the corpus is built) ends 0.13 s before its last granule: a real
# file that a too-strict length check would refuse.
real=$(ls "$SH_DATA_DIR"/corpus/dev/wesnoth__northerners.ogg "$SH_DATA_DIR"/corpus/dev/*.ogg 2>/dev/null | head -n 1 || true)

# Written to a pipe, sox cannot seek back to fill in the data size: placeholders, not lies.
sox st44.wav -t raw - | sox -t raw -r 44100 -c 2 -e signed -b 16 - -t wav - 2>/dev/null | cat > piped.wav
sox st44.wav -t raw - | sox -t raw -r 44100 -c 2 -e signed -b 16 - -t aiff - 2>/dev/null | cat > piped.aiff

: > empty.wav
head -c 6000 /dev/urandom > random.bin
head -c 44 mono8.wav > header_only.wav
for f in st44.flac st44.ogg st48.opus st44.wav st44.aiff; do
  head -c $(( $(stat -c %s $f) / 2 )) $f > "trunc_$f"
done
python3 - <<'EOF'
import struct
d = bytearray(open('st44.wav', 'rb').read()); i = d.find(b'data')
d[i+4:i+8] = struct.pack('<I', 50_000_000); open('lying.wav', 'wb').write(d)
d = bytearray(open('st44.wav', 'rb').read()); d[24:28] = struct.pack('<I', 1)
open('rate1.wav', 'wb').write(d)
d = bytearray(open('st44.wav', 'rb').read()); d[22:24] = struct.pack('<H', 300)
open('chan300.wav', 'wb').write(d)
EOF
mkdir adir
mkfifo afifo # opening a FIFO must not block waiting for a writer
cp st44.wav unreadable.wav && chmod 000 unreadable.wav
# root reads anything: run the unreadable-file check as nobody when we are root.
as_user=(); if [ "$(id -u)" -eq 0 ] && command -v setpriv > /dev/null; then
  chmod 755 "$SH_TMP"; as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups); fi

# check_json FILE DURATION RATE CHANNELS [TOL]: the one JSON line in $SH_TMP/out describes FILE.
check_json() {
  python3 - "$@" <<'EOF'
import json, sys
f, dur, rate, ch = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
tol = float(sys.argv[5]) if len(sys.argv) > 5 else 0.001
lines = open('out').read().splitlines()
assert len(lines) == 1, lines
o = json.loads(lines[0])
# The issue's fields, in its order, come first.
assert list(o)[:6] == ["file", "duration_s", "sample_rate", "channels", "fp_version", "hashes"], o
assert o["file"] == f, o
assert abs(o["duration_s"] - dur) <= tol, (o["duration_s"], dur)
assert o["sample_rate"] == rate and o["channels"] == ch, o
assert isinstance(o["fp_version"], int) and o["fp_version"] >= 1, o
assert isinstance(o["hashes"], int) and o["hashes"] > 0, o
assert "hash_list" not in o
EOF
}

for bin in "$SH_BIN" "$SH_BIN_ASAN"; do
  [ -x "$bin" ] || fail "missing binary $bin"
  tag=$(basename "$(dirname "$bin")")

  # ---- good files: one JSON line each ---------------------------------------------------------
  for spec in "st44.wav 5 44100 2" "st44.flac 5 44100 2" "st44.ogg 5 44100 2" \
              "st44.aiff 5 44100 2" "mono96.flac 3 96000 1" "mono8.wav 3 8000 1" \
              "six.wav 2 22050 6" "st48.opus 5 48000 2" "st44.mp3 5 44100 2 0.08" \
              "piped.wav 5 44100 2" "piped.aiff 5 44100 2"; do
    set -- $spec
    expect_exit 0 "$bin" fingerprint "$1"
    check "$tag: $1 JSON" check_json "$@"
  done
  if [ -n "$real" ]; then
    expect_exit 0 "$bin" fingerprint "$real"
    check "$tag: real Ogg track has hashes" grep -q '"hashes":[1-9]' "$SH_TMP/out"
  fi

  # --hashes: hash_list holds exactly `hashes` [hash, t] pairs, t non-decreasing.
  expect_exit 0 "$bin" fingerprint --hashes st44.flac
  check "$tag: --hashes list" python3 -c '
import json; o = json.loads(open("out").read())
h = o["hash_list"]; assert len(h) == o["hashes"] > 0
assert all(len(p) == 2 and 0 <= p[0] < 2**32 and p[1] >= 0 for p in h)
assert all(a[1] <= b[1] for a, b in zip(h, h[1:]))'
  # The same audio in two lossless containers gives the same hashes.
  "$bin" fingerprint --hashes st44.wav | python3 -c 'import json,sys; print(json.load(sys.stdin)["hash_list"])' > w.txt
  "$bin" fingerprint --hashes st44.flac | python3 -c 'import json,sys; print(json.load(sys.stdin)["hash_list"])' > f.txt
  check "$tag: WAV and FLAC of the same audio hash alike" cmp -s w.txt f.txt

  # ---- bad inputs: exit 1, the file named on stderr, nothing on stdout -------------------------
  for f in empty.wav random.bin header_only.wav trunc_st44.flac trunc_st44.ogg trunc_st48.opus \
           trunc_st44.wav trunc_st44.aiff lying.wav rate1.wav chan300.wav nonexistent.wav adir \
           afifo; do
    expect_exit 1 "$bin" fingerprint "$f"
    check "$tag: $f fails with its name on stderr" grep -q "fingerprint: $f: " "$SH_TMP/err"
    check "$tag: $f prints no JSON" test ! -s "$SH_TMP/out"
  done
  expect_exit 1 timeout 10 "${as_user[@]}" "$bin" fingerprint unreadable.wav
  check "$tag: unreadable file: permission denied" grep -q "unreadable.wav: .*Permission denied" "$SH_TMP/err"

  # An MP3 cut inside a frame is refused; one cut on a frame boundary (undetectable) decodes as a
  # shorter stream: no crash, never longer.
  head -c $(( $(stat -c %s st44.mp3) - 1 )) st44.mp3 > cut1.mp3
  expect_exit 1 "$bin" fingerprint cut1.mp3
  check "$tag: MP3 cut inside a frame" grep -q "cut1.mp3: .*truncated" "$SH_TMP/err"
  head -c $(( $(stat -c %s st44.mp3) / 2 )) st44.mp3 > trunc.mp3
  set +e; "$bin" fingerprint trunc.mp3 > out 2> err; rc=$?; set -e
  check "$tag: truncated MP3 exits 0 or 1" test "$rc" -le 1
  [ "$rc" -eq 0 ] && check "$tag: truncated MP3 is shorter" python3 -c '
import json; assert json.loads(open("out").read())["duration_s"] < 3.0'

  # Several files, one bad: the good ones are printed, exit 1, the bad one named.
  expect_exit 1 "$bin" fingerprint st44.flac random.bin mono8.wav
  check "$tag: two JSON lines for two good files" test "$(wc -l < "$SH_TMP/out")" -eq 2
  check "$tag: bad file named" grep -q "random.bin" "$SH_TMP/err"

  # Caps.
  expect_exit 1 "$bin" fingerprint --max-duration 4 st44.flac
  check "$tag: duration cap" grep -q "SH_ETOOLONG" "$SH_TMP/err"
  expect_exit 1 "$bin" fingerprint --max-bytes 10K st44.wav
  check "$tag: size cap" grep -q "SH_ETOOBIG" "$SH_TMP/err"
  SOUNDHASH_MAX_DURATION=4 expect_exit 1 "$bin" fingerprint st44.flac

  # Usage errors exit 2.
  expect_exit 2 "$bin" fingerprint
  expect_exit 2 "$bin" fingerprint --no-such-flag st44.wav
  expect_exit 0 "$bin" fingerprint --help
  check "$tag: --help mentions --hashes" grep -q -- "--hashes" "$SH_TMP/out"
done
echo "fingerprint CLI: all checks passed"
