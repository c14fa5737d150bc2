#!/usr/bin/env bash
# make_distractors.sh -- the real music behind the scale benchmark's distractor tracks
# (bench/bench_scale.sh): every audio file of at least MIN_S seconds in a fixed list of Debian 12
# (bookworm) game packages (GPL / CC-BY-SA / free music), none of which holds a track of the
# evaluation corpora (corpus/dev: wesnoth, extremetuxracer; corpus/neg: warzone2100). Packages are
# fetched with `apt-get download` and unpacked with `dpkg -x` into $ROOT/pkgs (nothing is installed
# system-wide); files are referenced in place (not copied).
#
# Usage:  bench/make_distractors.sh [--root DIR]    (default $SOUNDHASH_DATA_DIR or
#                                                    ~/.cache/soundhash-data)
# Output: ROOT/corpus/distract/manifest.csv: track_id,path,package,duration_s,sha256
#   One row per distinct file (byte-identical files shipped twice are kept once). Files that
#   libsndfile cannot read (Opus, MIDI, tracker modules) are skipped; shorter than MIN_S seconds
#   (sound effects, jingles; files under 100 KB are not even opened) too. Rerunning with the same packages gives the same manifest.
set -euo pipefail

ROOT="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="$2"; shift;;
    -h|--help) sed -n 2,16p "$0"; exit 0;;
    *) echo "unknown arg $1" >&2; exit 2;;
  esac; shift
done
MIN_S=45; MAX_S=1800
PKGS=(naev-data freeorion-data hedgewars-data flare-game lincity-ng-data widelands-data
      freedroidrpg-data supertux-data megaglest-data fillets-ng-data frozen-bubble-data
      supertuxkart-data nexuiz-music marsshooter-data pushover-data scorched3d-data
      freecol singularity-music openclonk-data xmoto-data zaz-data 0ad-data redeclipse-data)
PKGDIR="$ROOT/pkgs"; OUT="$ROOT/corpus/distract"
mkdir -p "$PKGDIR/debs" "$PKGDIR/x" "$OUT"
for c in apt-get dpkg soxi sha256sum unzip; do
  command -v "$c" > /dev/null || { echo "missing $c" >&2; exit 1; }
done

man="$OUT/manifest.csv.tmp"
echo "track_id,path,package,duration_s,sha256" > "$man"
declare -A seen=() probed=()
# Probe cache (path, size, mtime -> duration, sha256): a rerun with packages added only opens the
# new files (soxi and sha256sum over thousands of files take half an hour on a loaded machine)
PROBE="$PKGDIR/probe.tsv"
touch "$PROBE"
while IFS=$'\t' read -r k v; do probed[$k]=$v; done < "$PROBE"
for pkg in "${PKGS[@]}"; do
  deb=$(ls "$PKGDIR/debs/${pkg}_"*.deb 2> /dev/null | head -n1 || true)
  if [ -z "$deb" ]; then
    ( cd "$PKGDIR/debs" && apt-get download "$pkg" >&2 ) ||
      { apt-get update >&2 && ( cd "$PKGDIR/debs" && apt-get download "$pkg" >&2 ); }
    deb=$(ls "$PKGDIR/debs/${pkg}_"*.deb | head -n1)
  fi
  x="$PKGDIR/x/$pkg"
  [ -f "$x/.unpacked" ] || { rm -rf "$x"; mkdir -p "$x"; dpkg -x "$deb" "$x"; touch "$x/.unpacked"; }
  # Some games ship their music inside zip archives (nexuiz .pk3, 0ad public.zip): only
  # the audio members are extracted, next to the archive
  while IFS= read -r z; do
    [ -f "$z.d/.unpacked" ] && continue
    rm -rf "$z.d"
    unzip -qo "$z" '*.ogg' '*.OGG' '*.flac' '*.wav' '*.mp3' -d "$z.d" > /dev/null 2>&1 || true
    mkdir -p "$z.d" && touch "$z.d/.unpacked"
  done < <(find "$x" -type f \( -iname '*.pk3' -o -iname '*.zip' \) -size +1M | LC_ALL=C sort)
  n=0
  while IFS= read -r f; do
    key="$f|$(stat -c %s.%Y "$f")"
    if [ -z "${probed[$key]:-}" ]; then
      d=$(soxi -D "$f" 2> /dev/null) || d=-1
      sum=-
      awk -v d="$d" -v a=$MIN_S -v b=$MAX_S 'BEGIN { exit !(d >= a && d <= b) }' &&
        sum=$(sha256sum < "$f" | cut -c1-64)
      probed[$key]="$d $sum"
      printf '%s\t%s\n' "$key" "$d $sum" >> "$PROBE"
    fi
    read -r d sum <<< "${probed[$key]}"
    [ "$sum" != - ] || continue
    [ -z "${seen[$sum]:-}" ] || continue
    seen[$sum]=1
    rel="${f#"$x"/}"
    id="dx__${pkg}__$(echo "${rel%.*}" | tr '/ ,' '___')"
    echo "$id,$f,$pkg,$(printf %.3f "$d"),$sum" >> "$man"
    n=$((n + 1))
  done < <(find "$x" -type f -size +100k \( -iname '*.ogg' -o -iname '*.flac' -o -iname '*.wav' -o -iname '*.mp3' \) | LC_ALL=C sort)
  echo "$pkg: $n files" >&2
done
mv "$man" "$OUT/manifest.csv"
awk -F, 'NR > 1 { s += $4; n++ } END { printf "distractor sources: %d files, %.1f h -> %s\n", n, s / 3600, FILENAME }' "$OUT/manifest.csv"
