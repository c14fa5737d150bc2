#!/usr/bin/env bash
# PostgreSQL over TLS (ops/SECURITY.md): the private server gets ssl=on with a server certificate
# for "localhost" signed by a CA made here with openssl, and pg_hba refuses every TCP connection
# that is not encrypted. `soundhash db migrate/status`, a worker and the replicator connect with
# `sslmode=verify-full sslrootcert=CA`, write and read tracks, and the server sees every one of
# their connections encrypted (pg_stat_ssl). Failing clearly (exit 1, the reason on stderr): a CA
# that did not sign the server's certificate, a host name the certificate does not name (verify-full
# checks it), and a plaintext connection.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/pki.sh"
. "$SH_ROOT/tests/lib/worker.sh"
WK_KAFKA=mock wk_setup

# ---- a CA, a server certificate for "localhost", and an unrelated CA ------------------------------
PKI="$SH_TMP/pki"
pki_make "$PKI" server "DNS:localhost"

# ---- the server: ssl=on, plaintext TCP refused ---------------------------------------------------
DATA="$SH_PG_DIR/data"
cp "$PKI/server.crt" "$PKI/server.key" "$DATA/"
chmod 0600 "$DATA/server.key"
chown --reference="$DATA" "$DATA/server.crt" "$DATA/server.key"
printf "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_min_protocol_version = 'TLSv1.2'\n" \
  >> "$DATA/postgresql.conf"
{ echo "hostnossl all all 0.0.0.0/0 reject"; echo "hostnossl all all ::/0 reject"; cat "$DATA/pg_hba.conf"; } \
  > "$DATA/pg_hba.conf.new"
mv "$DATA/pg_hba.conf.new" "$DATA/pg_hba.conf"
chown --reference="$DATA" "$DATA/pg_hba.conf"
pg_stop
"$SH_BIN" db start --dir "$SH_PG_DIR" > /dev/null 2> "$SH_TMP/pg-restart.err" || {
  cat "$SH_TMP/pg-restart.err" "$SH_PG_DIR/postgres.log" >&2; fail "restart with ssl=on"; }

PORT=$(cat "$SH_PG_DIR/port")
PASSFILE="$SH_PG_DIR/pgpass"
plain="host=localhost port=$PORT dbname=soundhash user=soundhash passfile=$PASSFILE connect_timeout=5"
TLS_DSN="$plain sslmode=verify-full sslrootcert=$PKI/ca.crt"
# the superuser over TLS, for the checks below (pg_sql uses SH_DSN)
SH_DSN="$TLS_DSN"

expect_exit 0 "$SH_BIN" db migrate --dsn "$TLS_DSN"
expect_exit 0 "$SH_BIN" db status --dsn "$TLS_DSN"
check "db status over verify-full TLS" jq -e '.migrated == true' "$SH_TMP/out"
check "the server sees this session encrypted (pg_stat_ssl), TLS ≥ 1.2" \
  test "$(pg_sql "SELECT ssl, version IN ('TLSv1.2', 'TLSv1.3') FROM pg_stat_ssl WHERE pid = pg_backend_pid()")" = "t|t"

# ---- failing clearly -------------------------------------------------------------------------------
expect_exit 1 "$SH_BIN_ASAN" db status --dsn "$plain sslmode=verify-full sslrootcert=$PKI/wrong-ca.crt"
check "a wrong CA: exit 1, 'certificate verify failed' on stderr" grep -q 'certificate verify failed' "$SH_TMP/err"
cat "$SH_TMP/err"
expect_exit 1 "$SH_BIN" db status --dsn "${TLS_DSN/host=localhost/host=127.0.0.1}"
check "verify-full and a host name the certificate lacks: exit 1, the mismatch named" \
  grep -q 'does not match host name "127.0.0.1"' "$SH_TMP/err"
cat "$SH_TMP/err"
expect_exit 1 "$SH_BIN" db status --dsn "$plain sslmode=disable"
check "plaintext TCP: refused by pg_hba, 'no encryption' named" grep -q 'no encryption' "$SH_TMP/err"
expect_exit 1 "$SH_BIN" worker --brokers "$BOOT" --dsn "$plain sslmode=verify-full sslrootcert=$PKI/wrong-ca.crt" \
  --media-root "$MEDIA" --db-wait 20
check "a worker given the wrong CA exits 1 naming the certificate failure" \
  grep -q 'certificate verify failed' "$SH_TMP/err"

# ---- the worker and the replicator over TLS -------------------------------------------------------
sox -n -r 22050 -c 1 "$MEDIA/a.wav" synth 10 sine 300-2400 vol 0.5
sox -n -r 44100 -c 2 "$MEDIA/b.flac" synth 12 pluck 220 pluck 330 tremolo 4 50
"$SH_BIN" worker --brokers "$BOOT" --dsn "$TLS_DSN" --media-root "$MEDIA" --http 127.0.0.1:0 \
  -X session.timeout.ms=6000 > /dev/null 2> "$SH_TMP/w.log" &
W_PID=$!; WK_PIDS+=("$W_PID")
wait_for 30 grep -q 'event=http_listening' "$SH_TMP/w.log"
wk_publish "$MEDIA/a.wav" "$MEDIA/b.flac"
wait_for 120 wk_tracks_active 2
echo "ok: the worker wrote both tracks over TLS"

"$SH_BIN" replicator --brokers "$BOOT" --dsn "$TLS_DSN" --http 127.0.0.1:0 --heartbeat-ms 200 \
  > /dev/null 2> "$SH_TMP/rp.log" &
RP_PID=$!; WK_PIDS+=("$RP_PID")
wait_for 30 grep -q 'event=replicator_started' "$SH_TMP/rp.log"
RP_PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/rp.log" | head -n1)
wait_for 60 bash -c "curl -fsS 127.0.0.1:$RP_PORT/health | grep -q '\"status\":\"ok\"'"
expect_exit 0 "$SH_BIN" replicator snapshot --dsn "$TLS_DSN" --shard 0 --out "$SH_TMP/snap0"
echo "ok: replicator snapshot over TLS"

conns() { pg_sql "SELECT count(*), bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                  WHERE a.application_name LIKE 'soundhash-$1%'"; }
check "the worker's connections are all encrypted ($(conns worker))" bash -c "[[ '$(conns worker)' =~ ^[1-9][0-9]*\|t$ ]]"
check "the replicator's connections are all encrypted ($(conns replicator))" bash -c "[[ '$(conns replicator)' =~ ^[1-9][0-9]*\|t$ ]]"
check "no unencrypted client connection at all" \
  test "$(pg_sql "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                  WHERE a.client_addr IS NOT NULL AND NOT s.ssl")" = 0

kill -TERM "$W_PID" "$RP_PID"
for pid in "$W_PID" "$RP_PID"; do
  set +e; wait "$pid"; rc=$?; set -e
  check "SIGTERM: pid $pid exits 0" test "$rc" -eq 0
done
