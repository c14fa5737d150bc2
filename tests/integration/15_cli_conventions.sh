#!/usr/bin/env bash
# One set of command-line conventions, checked as tables: every command × its usage errors exits 2
# with a message naming the flag (before touching any broker or database); every subcommand's
# --help lists exactly its own options; `soundhash help` lists every subcommand and `help CMD SUB`
# shows its help; stdout is JSON, one object per line; a password inside --dsn is warned about.
. "$SH_ROOT/tests/integration/lib.sh"
cd "$SH_TMP"
sox -n -r 22050 -c 1 a.wav synth 6 sine 300-2400 vol 0.5
sox -n -r 22050 -c 1 b.wav synth 6 pluck 220 pluck 330 tremolo 4 50
"$SH_BIN" index add --index idx a.wav b.wav > /dev/null
: > afile
B=127.0.0.1:1   # nothing listens: a usage error must be found before any connection is tried

# ---- usage errors: exit 2, the message names the flag -------------------------------------------
# Each row: the text stderr must contain | the arguments (split on spaces; no argument has one).
usage_table=$(cat <<'T'
--max-duration|fingerprint --max-duration x a.wav
no FILE|fingerprint
--bogus|fingerprint --bogus a.wav
no FILE|index add --index idx
--batch|index add --index idx --batch 0 a.wav
--meta 'notkv'|index add --index idx --meta notkv a.wav
--meta|index add --index idx --meta {"a":[1]} a.wav
--index|index add --index afile a.wav
--index|index delete --index missing x
--index is required|index stats
--map-size|index stats --index idx --map-size 1M
--wait|index compact --index idx --wait -1
--index|index compact --index missing
--top|match --index idx --top 0 a.wav
--index|match --index missing a.wav
--edge|match --index idx --edge http://127.0.0.1:1 a.wav
--edge|match --edge notaurl a.wav
--token-file|match --edge http://127.0.0.1:1 --token-file /nonexistent a.wav
--min-confidence|match --edge http://127.0.0.1:1 --min-confidence 0.5 a.wav
unknown verb|index frobnicate
--broker-count|broker --broker-count 99
--brokers is required|broker topics
-X|broker topics --brokers 127.0.0.1:1 -X nokey
--timeout|broker topics --brokers 127.0.0.1:1 --timeout 0
bogus.prop|ingest publish --brokers 127.0.0.1:1 -X bogus.prop=1 https://h.example/a.ogg
--meta 'notkv'|ingest publish --brokers 127.0.0.1:1 --meta notkv https://h.example/a.ogg
--manifest|ingest publish --brokers 127.0.0.1:1 --manifest /nonexistent.csv
--media-root|ingest publish --brokers 127.0.0.1:1 --media-root /nonexistent a.wav
--priority|ingest publish --brokers 127.0.0.1:1 --priority 5000 https://h.example/a.ogg
--track-id|ingest delete --brokers 127.0.0.1:1
--dsn|ingest delete --brokers 127.0.0.1:1 --track-id a --dsn notadsn
--checkpoint|ingest reindex --brokers 127.0.0.1:1 --dsn host=x --all --checkpoint /nonexistent/ck
--list|ingest reindex --brokers 127.0.0.1:1 --dsn host=x --list /nonexistent.txt --checkpoint c
--bootstrap-file|broker --bootstrap-file /nonexistent/boot
--rate|ingest reindex --brokers 127.0.0.1:1 --dsn host=x --all --checkpoint c --rate fast
--dsn|ingest reindex --brokers 127.0.0.1:1 --dsn notadsn --all --checkpoint c
--pg-bin|db start --dir pgdir --pg-bin /nonexistent
--port|db start --dir pgdir --port 70000
--dir is required|db stop
--follow|db start --dir pgdir --follow notadsn
--slot|db start --dir pgdir --follow host=x --slot Bad-Name
--dir is required|db promote
--dir is required|db fence
--dsn|worker rewind --brokers 127.0.0.1:1 --dsn notadsn
--brokers is required|worker rewind --dsn host=x
-X|worker rewind --brokers 127.0.0.1:1 --dsn host=x -X bogus.prop=1
--dsn|db migrate --dsn notadsn
--db-password|db status --dsn host=x --db-password pw
/nonexistent.conf|db status --dsn host=x --config /nonexistent.conf
--db-password-file|db status --dsn host=x --db-password-file /nonexistent.pw
--since|dlq show --brokers 127.0.0.1:1 --since yesterday
--brokers is required|dlq tail
unknown subcommand|dlq frobnicate
--dsn|replicator --brokers 127.0.0.1:1 --dsn notadsn
-X|replicator --brokers 127.0.0.1:1 --dsn host=x -X bogus.prop=1
--http|replicator --brokers 127.0.0.1:1 --dsn host=x --http notanaddr
--batch-ms|replicator --brokers 127.0.0.1:1 --dsn host=x --batch-ms 0
--api-token-file|replicator --brokers 127.0.0.1:1 --dsn host=x --api-token-file /nonexistent
--shard|replicator snapshot --dsn host=x --shard 9 --shards 8 --out snap
--tombstone-days|replicator prune --dsn host=x --brokers 127.0.0.1:1 --tombstone-days -1
--listen is required|edge --brokers 127.0.0.1:1 --data ed --shards 0-3
--shards|edge --brokers 127.0.0.1:1 --data ed --shards 3-1 --listen :0
--listen|edge --brokers 127.0.0.1:1 --data ed --shards all --listen notanaddr
-X|edge --brokers 127.0.0.1:1 --data ed --shards all --listen :0 -X bogus.prop=1
--api-token-file|edge --brokers 127.0.0.1:1 --data ed --shards all --listen :0 --api-token-file /nonexistent
--upstream|edge --brokers 127.0.0.1:1 --data ed --shards 0 --listen :0 --upstream ftp://x
--upstream-token-file|edge --brokers 127.0.0.1:1 --data ed --shards 0 --listen :0 --upstream-token-file /x
--upstream-token-file|edge --brokers 127.0.0.1:1 --data ed --shards 0 --listen :0 --upstream http://x:1 --upstream-token-file /nonexistent
--upstream-timeout-ms|edge --brokers 127.0.0.1:1 --data ed --shards 0 --listen :0 --upstream-timeout-ms 0
--snapshot-token-file|edge --brokers 127.0.0.1:1 --data ed --shards 0 --listen :0 --snapshot-token-file /x
--dsn|verify --dsn notadsn --edge http://127.0.0.1:1
--edge|verify --dsn host=x --edge notaurl
--edge|verify --dsn host=x
--wait|verify --dsn host=x --edge http://127.0.0.1:1 --wait -1
nothing to show|status
--node|status --node notaurl
--dsn|status --dsn notadsn
-X|status --brokers 127.0.0.1:1 -X bogus.prop=1
--timeout-ms|status --dsn host=x --timeout-ms 5
unknown command 'nope'|help nope
unknown command 'nope'|nope
T
)
n=0
while IFS='|' read -r want args; do
  # shellcheck disable=SC2086
  expect_exit 2 "$SH_BIN" $args
  grep -qF -- "$want" "$SH_TMP/err" || fail "soundhash $args: stderr does not name '$want': $(cat "$SH_TMP/err")"
  n=$((n + 1))
done <<< "$usage_table"
check "$n usage errors: exit 2, each naming its flag" test "$n" -ge 40
check "pgdir was never created by a refused db start" test ! -e pgdir
# a token goes into an HTTP header: a control character (header injection) is a usage error
SOUNDHASH_API_TOKEN=$'tok\r\nX-Evil: 1' expect_exit 2 "$SH_BIN" edge --brokers 127.0.0.1:1 --data ed \
  --shards all --listen 127.0.0.1:0 --connect-timeout 1
check "an edge token with CR/LF is refused, naming its variable" \
  grep -q 'SOUNDHASH_API_TOKEN: the token holds a control character' "$SH_TMP/err"

# ---- --help lists exactly the options each subcommand takes -------------------------------------
help_table=$(cat <<'T'
fingerprint|hashes query max-duration max-bytes
index add|index id tenant meta batch max-duration map-size progress compact wait
index delete|index map-size
index stats|index
index compact|index map-size wait
match|index edge top max-duration min-confidence token-file timeout
broker|broker-count bootstrap-file
broker topics|brokers property timeout create replication
ingest publish|brokers property timeout delivery-timeout topic tenant meta media-root manifest track-id inline inline-max priority
ingest delete|brokers property timeout delivery-timeout topic tenant track-id dsn
ingest reindex|brokers property timeout delivery-timeout dsn tenant older-than-fp-version fp-version list all rate checkpoint batch restart
db start|dir port pg-bin run-as timeout follow slot
db stop|dir pg-bin run-as timeout
db promote|dir pg-bin run-as timeout
db fence|dir pg-bin run-as timeout
db migrate|dsn db-password-file connect-timeout statement-timeout-ms
db status|dsn db-password-file connect-timeout statement-timeout-ms
dlq show|brokers property since timeout topic
dlq tail|brokers property since timeout topic
worker rewind|brokers dsn group property timeout
worker|brokers dsn media-root threads group http worker-id property max-inflight batch max-duration max-fetch-bytes http-timeout retry-max-ms shutdown-grace tmp-dir connect-timeout max-retry-time db-wait fetch-deny-private
replicator|dsn brokers http region topic property batch-ms batch-bytes poll-ms heartbeat-ms lag-threshold-ms connect-timeout zstd-level max-delta-bytes api-token-file
replicator snapshot|dsn shard shards out
replicator prune|dsn brokers topic property tombstone-days
edge|brokers data shards listen region snapshot-source topic api-token-file upstream upstream-token-file upstream-timeout-ms property lag-threshold-ms connect-timeout max-body max-clip-s http-threads match-threads request-timeout max-conns max-conns-per-ip snapshot-max-bytes snapshot-timeout snapshot-token-file snapshot-confirm-timeout
verify|dsn edge wait shards
status|brokers property dsn node group json timeout-ms
T
)
opts_of() { # the long options a --help text on stdin lists, built-ins left out
  sed -n '/^options/,/^$/p' | grep -oE '^  (-[a-zA-Z], )?--[a-z0-9-]+' | sed -E 's/^  (-[a-zA-Z], )?--//' |
    grep -vxE 'config|log-level|print-config|help' | tr '\n' ' ' | sed 's/ $//'
}
"$SH_BIN" help > "$SH_TMP/help"
while IFS='|' read -r cmd want; do
  # shellcheck disable=SC2086
  got=$("$SH_BIN" $cmd --help | opts_of)
  [ "$got" = "$want" ] || fail "soundhash $cmd --help lists '$got', want '$want'"
  # shellcheck disable=SC2086
  "$SH_BIN" help $cmd > "$SH_TMP/h2" || fail "soundhash help $cmd"
  head -n1 "$SH_TMP/h2" | grep -q "^usage: soundhash $cmd " || fail "help $cmd: $(head -n1 "$SH_TMP/h2")"
  grep -qE "^  $cmd +[a-z]" "$SH_TMP/help" || fail "soundhash help does not list '$cmd'"
  grep -q '^examples:' "$SH_TMP/h2" || fail "soundhash help $cmd shows no examples"
done <<< "$help_table"
echo "ok: --help of $(wc -l <<< "$help_table") subcommands lists exactly their options, with examples"
check "soundhash help lists worker" grep -qE '^  worker +[a-z]' "$SH_TMP/help"

# ---- stdout is JSON, one object per line ----------------------------------------------------------
json_lines() { # json_lines N : stdout of the last expect_exit holds N lines, each one JSON object
  [ "$(wc -l < "$SH_TMP/out")" -eq "$1" ] && jq -e 'type == "object"' "$SH_TMP/out" > /dev/null
}
expect_exit 0 "$SH_BIN" fingerprint a.wav b.wav;                 check "fingerprint: 2 lines" json_lines 2
expect_exit 0 "$SH_BIN" index add --index idx2 --meta k=v --meta '{"n":1}' a.wav b.wav
check "index add: 2 lines" json_lines 2
expect_exit 0 "$SH_BIN" index stats --index idx2;                check "index stats: 1 line" json_lines 1
expect_exit 0 "$SH_BIN" match --index idx2 --top 3 a.wav b.wav; check "match --top: 2 lines" json_lines 2
jcheck_all() { jq -se "$1" "$SH_TMP/out" > /dev/null || fail "$2: $(cat "$SH_TMP/out")"; echo "ok: $2"; }
jcheck_all 'all(.match.scale != null and (.candidates | type) == "array")' "match: scale and candidates"
expect_exit 0 "$SH_BIN" index delete --index idx2 a;             check "index delete: 1 line" json_lines 1
expect_exit 0 "$SH_BIN" index compact --index idx2;              check "index compact: 1 line" json_lines 1
jcheck_all 'all(has("waited_ms") and has("elapsed_ms"))' "compact: waited_ms and elapsed_ms"

# ---- a password inside --dsn: accepted, warned about, with the way to pass it -------------------
expect_exit 1 "$SH_BIN" db status --dsn "host=127.0.0.1 port=1 password=hunter2" --connect-timeout 1
check "password in --dsn: warned" grep -q 'level=warn event=secret_on_command_line option=--dsn' "$SH_TMP/err"
check "... saying how to pass it" grep -q 'SOUNDHASH_DB_PASSWORD' "$SH_TMP/err"
expect_exit 1 "$SH_BIN" db status --dsn "postgresql://u:hunter2@127.0.0.1:1/x" --connect-timeout 1
check "password in a --dsn URI: warned" grep -q 'event=secret_on_command_line' "$SH_TMP/err"
SOUNDHASH_DSN="host=127.0.0.1 port=1 password=hunter2" expect_exit 1 "$SH_BIN" db status --connect-timeout 1
check "password in SOUNDHASH_DSN (the environment): no warning" bash -c "! grep -q secret_on_command_line '$SH_TMP/err'"
echo "15_cli_conventions: all checks passed"
