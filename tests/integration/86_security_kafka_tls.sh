#!/usr/bin/env bash
# Kafka over TLS and SASL (ops/SECURITY.md), on a real Apache Kafka node (ops/kafka.sh; the mock
# broker has no TLS). The node gets two more listeners: SSL and SASL_SSL (SASL/PLAIN), with a PEM
# keystore (ssl.keystore.type=PEM) holding a certificate for localhost/127.0.0.1 signed by a CA made
# here with openssl. `ingest publish` and the replicator connect with -X security.protocol=ssl
# -X ssl.ca.location=CA; the worker and an edge with security.protocol=sasl_ssl, the SASL password
# from SOUNDHASH_KAFKA_SASL_PASSWORD_FILE (never argv). Tracks travel upload → worker → primary →
# replicator → edge, and `soundhash verify` passes. Failing clearly (exit 1, the reason on stderr):
# a CA that did not sign the broker's certificate, plaintext against the TLS port, and a wrong SASL
# password.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/pki.sh"
. "$SH_ROOT/tests/lib/worker.sh"
. "$SH_ROOT/tests/lib/edge.sh"
WK_KAFKA=real WK_KAFKA_NODES=1 wk_setup

# ---- a CA, the broker's certificate, an unrelated CA ----------------------------------------------
PKI="$SH_TMP/pki"
pki_make "$PKI" broker "DNS:localhost,IP:127.0.0.1"
# PEM keystore: the PKCS#8 key, then the certificate
cat "$PKI/broker.key" "$PKI/broker.crt" > "$PKI/broker.pem"
grep -q 'BEGIN PRIVATE KEY' "$PKI/broker.pem" || fail "openssl did not write a PKCS#8 key"

# ---- the node: + SSL and SASL_SSL listeners (restart) ----------------------------------------------
umask 077
K_PW="kpw-$(openssl rand -hex 12)"
printf '%s\n' "$K_PW" > "$SH_TMP/kafka.pw"
read -r SSL_PORT SASL_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
CONF="$KAFKA_DIR/config/node-1.properties"
"$SH_ROOT/ops/kafka.sh" node-stop --dir "$KAFKA_DIR" --node 1 2> /dev/null
sed -i -e "s|^listeners=\(.*\)|listeners=\1,SSL://127.0.0.1:$SSL_PORT,SASL_SSL://127.0.0.1:$SASL_PORT|" \
  -e "s|^advertised.listeners=\(.*\)|advertised.listeners=\1,SSL://127.0.0.1:$SSL_PORT,SASL_SSL://127.0.0.1:$SASL_PORT|" \
  -e "s|^listener.security.protocol.map=\(.*\)|listener.security.protocol.map=\1,SSL:SSL,SASL_SSL:SASL_SSL|" "$CONF"
cat >> "$CONF" <<EOF
ssl.keystore.type=PEM
ssl.keystore.location=$PKI/broker.pem
ssl.client.auth=none
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-pw" user_admin="admin-pw" user_soundhash="$K_PW";
EOF
# node-start waits for "Kafka Server started" in the node's log: start a fresh one
mv "$KAFKA_DIR/logs/node-1.log" "$KAFKA_DIR/logs/node-1.log.plain"
"$SH_ROOT/ops/kafka.sh" node-start --dir "$KAFKA_DIR" --node 1 2> "$SH_TMP/node-start.err" || {
  cat "$SH_TMP/node-start.err"; tail -n 30 "$KAFKA_DIR/logs/node-1.log"; fail "node with SSL listeners"; }
SSL_BOOT="127.0.0.1:$SSL_PORT"
SASL_BOOT="127.0.0.1:$SASL_PORT"
TLS=(-X security.protocol=ssl -X "ssl.ca.location=$PKI/ca.crt")
SASL=(-X security.protocol=sasl_ssl -X "ssl.ca.location=$PKI/ca.crt" -X sasl.mechanism=PLAIN
      -X sasl.username=soundhash)
SASL_ENV=(env "SOUNDHASH_KAFKA_SASL_PASSWORD_FILE=$SH_TMP/kafka.pw")

topics_ok() { "$SH_BIN" broker topics --brokers "$SSL_BOOT" "${TLS[@]}" > "$SH_TMP/topics.out" 2> /dev/null; }
wait_for 60 topics_ok
check "broker topics over SSL: the 4 topics, all ok" test "$(grep -c '"ok":true' "$SH_TMP/topics.out")" = 4
expect_exit 0 "${SASL_ENV[@]}" "$SH_BIN" broker topics --brokers "$SASL_BOOT" "${SASL[@]}"
check "broker topics over SASL_SSL (password from SOUNDHASH_KAFKA_SASL_PASSWORD_FILE)" \
  test "$(grep -c '"ok":true' "$SH_TMP/out")" = 4

sox -n -r 22050 -c 1 "$MEDIA/a.wav" synth 10 sine 300-2400 vol 0.5
sox -n -r 44100 -c 2 "$MEDIA/b.flac" synth 12 pluck 220 pluck 330 tremolo 4 50

# ---- failing clearly -------------------------------------------------------------------------------
expect_exit 1 "$SH_BIN" broker topics --brokers "$SSL_BOOT" -X security.protocol=ssl \
  -X "ssl.ca.location=$PKI/wrong-ca.crt" -X socket.timeout.ms=5000
check "a wrong CA: exit 1, 'certificate verify failed' on stderr" grep -q 'certificate verify failed' "$SH_TMP/err"
head -c 400 "$SH_TMP/err"; echo
expect_exit 1 "$SH_BIN" ingest publish --brokers "$SSL_BOOT" -X security.protocol=ssl \
  -X "ssl.ca.location=$PKI/wrong-ca.crt" -X message.timeout.ms=8000 --media-root "$MEDIA" "$MEDIA/a.wav"
check "ingest publish with a wrong CA: exit 1 and the reason" grep -q 'certificate verify failed\|SSL' "$SH_TMP/err"
expect_exit 1 env SOUNDHASH_KAFKA_SASL_PASSWORD="wrong-$K_PW" "$SH_BIN" broker topics \
  --brokers "$SASL_BOOT" "${SASL[@]}"
check "a wrong SASL password: exit 1, 'Authentication failed' on stderr" \
  grep -qi 'authentication failed' "$SH_TMP/err"
check "... and the password is not echoed" test -z "$(grep -F -- "$K_PW" "$SH_TMP/err")"
head -c 400 "$SH_TMP/err"; echo
expect_exit 1 "$SH_BIN" broker topics --brokers "$SSL_BOOT" -X socket.timeout.ms=5000
check "plaintext against the TLS port: exit 1" grep -q 'no Kafka broker reachable\|Disconnected\|transport' "$SH_TMP/err"

# ---- the pipeline over TLS and SASL ---------------------------------------------------------------
"${SASL_ENV[@]}" "$SH_BIN" worker --brokers "$SASL_BOOT" "${SASL[@]}" --dsn "$SH_DSN" --media-root "$MEDIA" \
  --http 127.0.0.1:0 -X session.timeout.ms=6000 > /dev/null 2> "$SH_TMP/w.log" &
W_PID=$!; WK_PIDS+=("$W_PID")
wait_for 60 grep -q 'event=http_listening' "$SH_TMP/w.log"
"$SH_BIN" ingest publish --brokers "$SSL_BOOT" "${TLS[@]}" --media-root "$MEDIA" "$MEDIA/a.wav" \
  "$MEDIA/b.flac" > "$SH_TMP/publish.out" 2> "$SH_TMP/publish.err" || {
  cat "$SH_TMP/publish.err"; fail "ingest publish over SSL"; }
check "ingest publish over SSL: 2 events acknowledged" test "$(wc -l < "$SH_TMP/publish.out")" = 2
wait_for 180 wk_tracks_active 2
echo "ok: the worker (SASL_SSL) wrote both tracks"

"$SH_BIN" replicator --brokers "$SSL_BOOT" "${TLS[@]}" --dsn "$SH_DSN" --http 127.0.0.1:0 \
  --heartbeat-ms 200 > /dev/null 2> "$SH_TMP/rp.log" &
RP_PID=$!; WK_PIDS+=("$RP_PID")
wait_for 60 grep -q 'event=replicator_started' "$SH_TMP/rp.log"
"${SASL_ENV[@]}" "$SH_BIN" edge --brokers "$SASL_BOOT" "${SASL[@]}" --listen 127.0.0.1:0 \
  --data "$SH_TMP/edge" --shards all --region secondary > /dev/null 2> "$SH_TMP/ed.log" &
ED_PID=$!; WK_PIDS+=("$ED_PID")
wait_for 60 grep -q 'event=http_listening' "$SH_TMP/ed.log"
ED_PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/ed.log" | head -n1)
verify_ok() { "$SH_BIN" verify --dsn "$SH_DSN" --edge "http://127.0.0.1:$ED_PORT" --wait 5 > "$SH_TMP/verify.out" 2>&1; }
wait_for 120 verify_ok
check "replicator (SSL) → edge (SASL_SSL): soundhash verify passes" grep -q '"mismatched":0' "$SH_TMP/verify.out"

for pid in "$W_PID" "$RP_PID" "$ED_PID"; do tr '\0' ' ' < "/proc/$pid/cmdline"; echo; done > "$SH_TMP/cmdlines"
check "the SASL password is in no argv and no log" \
  test -z "$(grep -lF -- "$K_PW" "$SH_TMP/cmdlines" "$SH_TMP"/{w,rp,ed}.log || true)"
kill -TERM "$W_PID" "$RP_PID" "$ED_PID"
for pid in "$W_PID" "$RP_PID" "$ED_PID"; do
  set +e; wait "$pid"; rc=$?; set -e
  check "SIGTERM: pid $pid exits 0" test "$rc" -eq 0
done
