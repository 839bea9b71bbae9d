#!/usr/bin/env bash
# pki.sh DIR VIN...: a throw-away TLS PKI for the MQTT integration tests, made with openssl:
#   DIR/ca.crt, ca.key              the test CA (P-256)
#   DIR/broker.crt, broker.key      the broker (subjectAltName IP:127.0.0.1, DNS:localhost)
#   DIR/soc.crt, soc.key            the SOC's client certificate (CN soc)
#   DIR/VIN.crt, VIN.key            one client certificate per vehicle (CN = VIN)
# P-256 throughout: mosquitto 2.0's clients fail the TLS handshake with Ed25519 certificates
# (Ed25519 stays right for the command signatures, which are not TLS). Exits non-zero with
# openssl's message on failure.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: pki.sh DIR VIN..." >&2; exit 2; }
dir=$1
shift
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign NAME CN [EXT]: a certificate for NAME.key signed by the CA, valid for one day.
sign() {
  local name=$1 cn=$2 ext=${3:-}
  key "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
  printf '%s\n' "basicConstraints=CA:FALSE" "$ext" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
    -sha256 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

key ca.key
openssl req -new -x509 -key ca.key -subj "/CN=vsoc test CA" -days 1 -sha256 -out ca.crt
sign broker localhost "subjectAltName=IP:127.0.0.1,DNS:localhost"
sign soc soc "extendedKeyUsage=clientAuth"
for vin in "$@"; do
  sign "$vin" "$vin" "extendedKeyUsage=clientAuth"
done
chmod 600 ./*.key
