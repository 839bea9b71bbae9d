# broker.sh: sourced by the integration tests that need a real MQTT broker: a throw-away PKI
# (pki.sh) and mosquitto on a free loopback port with TLS client certificates and the
# per-vehicle ACL of docs/vsoc-respond.md. The caller sets $work (a scratch directory) and
# $src (the source tree) and defines fail MESSAGE. A broker that does not start is a failure.

broker_pid=
pki=

broker_stop_pid() { # TERM, then wait
  [ -n "${1:-}" ] || return 0
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

broker_stop() {
  broker_stop_pid "$broker_pid"
  broker_pid=
}

# broker_pki VIN...: $work/pki with the CA, the broker, the SOC (CN soc) and each vehicle.
broker_pki() {
  pki=$work/pki
  bash "$src/tests/integration/pki.sh" "$pki" "$@" || fail "pki.sh failed"
}

# broker_start [PORT]: mosquitto on 127.0.0.1:PORT, or else on a free port (a few are
# tried: a busy port is retried); sets $port; logs to $work/broker.log; returns once it
# listens.
broker_start() {
  local mosq as_root= fixed=${1-}
  mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  [ -x "$mosq" ] || fail "mosquitto is not installed (apt-get install mosquitto)"
  [ "$(id -u)" = 0 ] && as_root="user root" # else mosquitto cannot read the key files
  cat >"$work/acl" <<EOF
pattern read vehicles/%u/commands
pattern write vehicles/%u/acks

user soc
topic write vehicles/+/commands
topic read vehicles/+/acks
EOF
  for _ in 1 2 3 4 5; do
    port=${fixed:-$((20000 + RANDOM % 40000))}
    cat >"$work/mosquitto.conf" <<EOF
per_listener_settings false
allow_anonymous false
acl_file $work/acl
persistence false
log_dest stderr
log_type all
$as_root
listener $port 127.0.0.1
cafile $pki/ca.crt
certfile $pki/broker.crt
keyfile $pki/broker.key
require_certificate true
use_identity_as_username true
tls_version tlsv1.2
EOF
    "$mosq" -c "$work/mosquitto.conf" >"$work/broker.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 50); do
      grep -q "mosquitto version .* running" "$work/broker.log" && return 0
      kill -0 "$broker_pid" 2>/dev/null || break
      sleep 0.1
    done
    broker_stop
    [ -z "$fixed" ] && grep -q "Address already in use" "$work/broker.log" || break
  done
  fail "mosquitto did not start: $(tail -n 3 "$work/broker.log" | tr '\n' ' ')"
}

# broker_client CERT-NAME: TLS options for mosquitto_pub/sub with that certificate.
broker_client() {
  echo "-h 127.0.0.1 -p $port --cafile $pki/ca.crt --cert $pki/$1.crt --key $pki/$1.key"
}
