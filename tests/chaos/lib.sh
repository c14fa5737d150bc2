# tests/chaos/lib.sh — sourced by storm.sh and soak.sh (after tests/integration/lib.sh).
#
#   chaos_media POOL QDIR SHADIR   puts a 30 s excerpt (from 10 s in, mono 22.05 kHz Ogg) of every
#                                  dev-corpus track in POOL/sN.ogg — real audio, but a worker on a
#                                  busy 2-core machine fingerprints a few per second, not one every
#                                  few seconds as with the whole tracks —, writes QDIR/N.json, the
#                                  query hashes a client would send for a 10 s clip of it (from 10 s
#                                  into the excerpt, `fingerprint --hashes --query`), and
#                                  SHADIR/sha.N, the excerpt's SHA-256; sets NSRC. Everything is
#                                  cached in $SH_DATA_DIR/chaos-media (keyed by file name and size,
#                                  made again when SH_FP_VERSION changes).
chaos_media() {
  local pool="$1" qdir="$2" shadir="$3" corpus="$SH_DATA_DIR/corpus/dev"
  local cache="$SH_DATA_DIR/chaos-media" i f key fpv
  [ -d "$corpus" ] || fail "no dev corpus at $corpus (scripts/data/make_corpus.sh builds it)"
  mkdir -p "$pool" "$qdir" "$shadir" "$cache"
  fpv=fp$(awk '$1 == "#define" && $2 == "SH_FP_VERSION" {print $3}' "$SH_ROOT/core/engine/sh_fp.h")
  mapfile -t SOURCES < <(ls "$corpus"/*.ogg)
  NSRC=${#SOURCES[@]}
  for i in "${!SOURCES[@]}"; do
    f="${SOURCES[i]}"
    key="$cache/$(basename "$f" .ogg).$(stat -c %s "$f").$fpv"
    if [ ! -s "$key.json" ] || [ ! -s "$key.sha" ] || [ ! -s "$key.ogg" ]; then
      sox "$f" -r 22050 -c 1 "$key.tmp$$.ogg" trim 10 30 2> /dev/null || fail "sox $f"
      mv "$key.tmp$$.ogg" "$key.ogg"
      sox "$key.ogg" "$shadir/clip$$.wav" trim 10 10 2> /dev/null || fail "sox $key.ogg"
      "$SH_BIN" fingerprint --hashes --query "$shadir/clip$$.wav" > "$key.json.tmp$$" || fail "fingerprint $f"
      sha256sum "$key.ogg" | awk '{print $1}' > "$key.sha.tmp$$"
      mv "$key.json.tmp$$" "$key.json"; mv "$key.sha.tmp$$" "$key.sha"
    fi
    ln "$key.ogg" "$pool/s$i.ogg" 2> /dev/null || cp "$key.ogg" "$pool/s$i.ogg"
    cp "$key.json" "$qdir/$i.json"; cp "$key.sha" "$shadir/sha.$i"
  done
  rm -f "$shadir/clip$$.wav"
}
