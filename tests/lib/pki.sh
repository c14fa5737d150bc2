# Sourceable helper for the TLS tests (after lib.sh): a throw-away PKI.
#
#   pki_make DIR NAME SAN   creates in DIR a test CA (ca.key, ca.crt), an unrelated CA with the
#                           same name (wrong-ca.key, wrong-ca.crt: a client trusting it must
#                           refuse the server) and NAME.key / NAME.crt for CN=localhost with the
#                           subjectAltName SAN (e.g. "DNS:localhost,IP:127.0.0.1"), serverAuth,
#                           signed by the CA, valid 2 days. openssl's output goes to
#                           DIR/openssl.log, shown when a step fails.
pki_make() {
  local dir="$1" name="$2" san="$3"
  mkdir -p "$dir"
  ossl() { openssl "$@" 2>> "$dir/openssl.log" || { cat "$dir/openssl.log" >&2; fail "openssl $1"; }; }
  ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=soundhash test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt"
  ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=soundhash test CA" \
    -keyout "$dir/wrong-ca.key" -out "$dir/wrong-ca.crt"
  ossl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$dir/$name.key" -out "$dir/$name.csr"
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" > "$dir/$name.ext"
  ossl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/$name.ext" -out "$dir/$name.crt"
}
