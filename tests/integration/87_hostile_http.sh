#!/usr/bin/env bash
# Hostile HTTP against a real edge (optimised build: its RSS is measured) holding one real track,
# and against the replicator's server (the same code): tests/integration/helpers/hostile_http.py.
# Missing, wrong, empty and Basic tokens → 401 JSON; wrong methods → 405 JSON; malformed,
# wrong-version and garbage hashes and audio → 4xx JSON; path tricks (.., %2e%2e, //, %00, very
# long URIs) → 404 JSON, or one of libmicrohttpd's own answers listed in core/runtime/sh_http.h
# (400/413/414/431/505, HTML that cannot be replaced) and nothing else; a declared 100 MiB body is
# refused (413 JSON) before it is sent and a chunked one is discarded as it streams, the edge's
# RSS growing < 32 MiB; 20 trickled headers (408 JSON) and 20 trickled bodies are cut within the
# request timeout while a match is answered; 3000 connections from one address hold at most
# --max-conns-per-ip while another address is answered; the node answers a match at the end and
# exits 0 on SIGTERM.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
. "$SH_ROOT/tests/lib/edge.sh"

corpus="$SH_DATA_DIR/corpus/dev"
[ -d "$corpus" ] || fail "no dev corpus at $corpus (scripts/data/make_corpus.sh builds it)"
wk_setup
target=$(ls "$corpus"/*.ogg | head -n 1)
tid=$(basename "$target" .ogg)
cp "$target" "$MEDIA/"
wk_start w1 --threads 1 --worker-id it-hostile-http
wk_publish "$MEDIA/$tid.ogg"
wait_for 120 wk_tracks_active 1
rp_start rp
TOKEN=t0ken-hostile-87
printf '%s\n' "$TOKEN" > "$SH_TMP/token"
TMO=3
PER_IP=200
ed_start e1 --shards all --snapshot-source "http://127.0.0.1:$RP_PORT" --api-token-file "$SH_TMP/token" \
  --request-timeout "$TMO" --max-conns 1024 --max-conns-per-ip "$PER_IP"
ready() { curl -fsS -o /dev/null "127.0.0.1:$ED_PORT_e1/ready"; }
wait_for 90 ready
sox "$target" -r 22050 -c 1 "$SH_TMP/clip.wav" trim 20 8

PER_IP=$PER_IP FLOOD=3000 python3 "$SH_ROOT/tests/integration/helpers/hostile_http.py" \
  "$ED_PORT_e1" "$ED_PID_e1" "$TOKEN" "$SH_TMP/clip.wav" "$tid" "$TMO" "$RP_PORT" \
  || { tail -n 20 "$SH_TMP/e1.log" >&2; fail "hostile HTTP"; }
check "the header deadline is logged" grep -q 'event=http_headers_too_slow' "$SH_TMP/e1.log"
check "408s counted" sh -c "curl -fsS 127.0.0.1:$ED_PORT_e1/metrics | grep -q 'soundhash_http_responses_total{route=\"other\",code=\"408\"}'"
ed_stop e1 TERM
check "the edge exits 0" test "$ED_RC" = 0
echo "OK 87_hostile_http"
