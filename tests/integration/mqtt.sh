#!/usr/bin/env bash
# mqtt.sh TEST: one integration test of vsoc-agent run (docs/vsoc-agent.md) against a real
# mosquitto this script starts on loopback with TLS client certificates (tests/integration/
# pki.sh) and the per-vehicle ACL. The SOC is played by mosquitto_pub / mosquitto_sub with
# the SOC's certificate and vsoc-sign-envelope. Needs $VSOC_AGENT, $VSOC_SIGN, $VSOC_SRC.
#   ack       a signed quarantine is applied; the signed applied ack reaches the SOC and
#             verifies with the vehicle's key (a tampered copy does not)
#   acl       vehicle B's certificate receives nothing on vehicle A's command topic
#   reject    forged signature, unknown key, wrong VIN, expired, replayed seq and unknown
#             action each give a rejected ack with that reason
#   dedupe    a resent envelope gets the same ack again and is applied once
#   gate      a gated quarantine is deferred at 50 kph and applied once the speed is 0
#   ttl       a quarantine with ttl_s 2 is released by the agent after about 2 s
#   restart   the last seq and the answers survive a restart; a command sent while the
#             agent was down is delivered and applied when it is back
#   reconnect the broker restarts: the agent reconnects by itself, subscribes again and
#             applies the next command
#   all       every test above, each with its own broker and agent
# Exits 0 on success, 1 on failure (saying why). A broker that does not start is a failure.
# Every client runs under timeout(1) and every wait is bounded, so nothing hangs.
set -euo pipefail
t=${1:?usage: mqtt.sh TEST}
agent=${VSOC_AGENT:?VSOC_AGENT is not set}
sign=${VSOC_SIGN:?VSOC_SIGN is not set}
src=${VSOC_SRC:?VSOC_SRC is not set}
work=$(mktemp -d)
broker_pid= agent_pid= sub_pid= bsub_pid=

# shellcheck source=tests/integration/broker.sh
. "$src/tests/integration/broker.sh"
stop() { broker_stop_pid "$@"; }
cleanup() {
  stop "$agent_pid"
  stop "$sub_pid"
  stop "$bsub_pid"
  stop "$broker_pid"
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL ($t): $*" >&2
  for f in agent.err broker.log acks.log; do
    if [ -s "$work/$f" ]; then
      echo "--- $f (last lines):" >&2
      tail -n 15 "$work/$f" >&2
    fi
  done
  exit 1
}

for c in mosquitto_pub mosquitto_sub openssl timeout; do
  command -v "$c" >/dev/null || fail "$c is not installed"
done

VA=WVWZZZ1JZXW000001
VB=WVWZZZ1JZXW000002
keys=$work/keys
broker_pki "$VA" "$VB"
mkdir -p "$keys"
# Command signatures are Ed25519 (not TLS): the SOC's key, a key the vehicle does not trust,
# and the vehicle's own key for its acks, named after its VIN as vsoc respond expects
# (--vehicle-keys DIR/<VIN>.pub). Key ids are the file names.
for k in vsoc-soc vsoc-rogue "$VA"; do
  openssl genpkey -algorithm ed25519 -out "$keys/$k.key" 2>/dev/null || fail "openssl genpkey"
  openssl pkey -in "$keys/$k.key" -pubout -out "$keys/$k.pub" || fail "openssl pkey"
done

start_broker() { broker_start "$@"; }
client() { broker_client "$@"; }

# The SOC's subscription to every vehicle's acks, for the whole test: one line per ack,
# "TOPIC PAYLOAD", among mosquitto_sub's debug lines (which start with "Client").
start_soc_sub() {
  # shellcheck disable=SC2046
  timeout 58 stdbuf -oL mosquitto_sub $(client soc) -i soc-acks -q 1 -v -d \
    -t 'vehicles/+/acks' >"$work/acks.log" 2>&1 &
  sub_pid=$!
  for _ in $(seq 50); do
    grep -q "Sending SUBACK to soc-acks" "$work/broker.log" && return 0
    sleep 0.1
  done
  fail "the SOC's mosquitto_sub did not subscribe"
}

# start_agent [EXTRA...]: vehicle A's agent; returns once it is subscribed.
start_agent() {
  local before
  before=$(grep -c "waiting for commands" "$work/agent.err" 2>/dev/null || true)
  "$agent" run --vin "$VA" --broker "127.0.0.1:$port" --cafile "$pki/ca.crt" \
    --cert "$pki/$VA.crt" --key "$pki/$VA.key" --trust "$keys/vsoc-soc.pub" \
    --signing-key "$keys/$VA.key" --state-dir "$work/state" --speed-file "$work/speed" \
    "$@" 2>>"$work/agent.err" &
  agent_pid=$!
  for _ in $(seq 100); do
    [ "$(grep -c "waiting for commands" "$work/agent.err" || true)" -gt "${before:-0}" ] &&
      return 0
    kill -0 "$agent_pid" 2>/dev/null || fail "vsoc-agent run exited"
    sleep 0.1
  done
  fail "vsoc-agent run did not connect and subscribe within 10 s"
}

stop_agent() {
  kill -TERM "$agent_pid" 2>/dev/null || fail "the agent is not running"
  local rc=0
  wait "$agent_pid" || rc=$?
  agent_pid=
  [ $rc -eq 0 ] || fail "vsoc-agent run exited $rc on SIGTERM"
}

uuid() { cat /proc/sys/kernel/random/uuid; }

# envelope [vsoc-sign-envelope options]: signed by the SOC key for vehicle A unless told.
envelope() {
  "$sign" --key "$keys/vsoc-soc.key" --vin "$VA" "$@" || fail "vsoc-sign-envelope $*"
}

publish() { # publish ENVELOPE-TEXT [VIN]: as the SOC, on the vehicle's command topic
  # shellcheck disable=SC2046
  timeout 10 mosquitto_pub $(client soc) -i "soc-pub-$RANDOM" -q 1 \
    -t "vehicles/${2:-$VA}/commands" -m "$1" || fail "mosquitto_pub failed"
}

# wait_ack CMD_ID STATUS [REASON] [NTH]: waits (10 s) for the NTH (default 1st) ack of
# CMD_ID with STATUS, checks its reason, verifies its signature with the vehicle's key and
# leaves it in $work/ack.json.
wait_ack() {
  local id=$1 status=$2 reason=${3-} nth=${4:-1} line=
  for _ in $(seq 100); do
    line=$(grep "^vehicles/$VA/acks {" "$work/acks.log" | grep -F "\"cmd_id\":\"$id\"" |
      grep -F "\"status\":\"$status\"" | sed -n "${nth}p" || true)
    [ -n "$line" ] && break
    sleep 0.1
  done
  [ -n "$line" ] || fail "no ack $status for $id within 10 s"
  printf '%s\n' "${line#vehicles/$VA/acks }" >"$work/ack.json"
  if [ -n "$reason" ]; then
    grep -qF "\"reason\":\"$reason" "$work/ack.json" ||
      fail "ack for $id: reason is not '$reason': $(cat "$work/ack.json")"
  fi
  local v
  v=$("$agent" verify-ack --pubkey "$keys/$VA.pub" --vin "$VA" "$work/ack.json") ||
    fail "the ack for $id does not verify: $v"
  case $v in "valid: $status"*) ;; *) fail "verify-ack said '$v' for a $status ack" ;; esac
}

status_json() { "$agent" status --state-dir "$work/state" || fail "vsoc-agent status failed"; }

QUAR='{"segment":"telematics","mode":"block_external"}'

test_ack() {
  local id
  id=$(uuid)
  publish "$(envelope --cmd-id "$id" --seq 1 --action quarantine --args "$QUAR" --ttl 3600)"
  wait_ack "$id" applied ""
  # The same ack with one field changed must not verify.
  sed 's/"status":"applied"/"status":"rejected"/' "$work/ack.json" >"$work/tampered.json"
  local v rc=0
  v=$("$agent" verify-ack --pubkey "$keys/$VA.pub" "$work/tampered.json") || rc=$?
  [ $rc -eq 1 ] && [ "$v" = "invalid: bad_signature" ] ||
    fail "a tampered ack gave '$v' (exit $rc)"
  grep -q "cmd $id seq 1 quarantine: applied" "$work/agent.err" || fail "no log line for $id"
  status_json | grep -q '"segments":{"telematics":{"mode":"block_external","cmd_id":"'"$id" ||
    fail "status does not show the quarantined segment: $(status_json)"
}

test_acl() {
  # Vehicle B subscribes to A's command topic with its own certificate. mosquitto grants the
  # subscription or refuses it; either way nothing published there may reach B.
  # shellcheck disable=SC2046
  timeout 20 stdbuf -oL mosquitto_sub $(client "$VB") -i "$VB-spy" -q 1 -v -d \
    -t "vehicles/$VA/commands" >"$work/bsub.log" 2>&1 &
  bsub_pid=$!
  for _ in $(seq 50); do
    grep -q "Sending SUBACK to $VB-spy" "$work/broker.log" && break
    sleep 0.1
  done
  grep -q "received CONNACK (0)" "$work/bsub.log" ||
    fail "B's mosquitto_sub did not connect: $(cat "$work/bsub.log")"
  local id
  id=$(uuid)
  publish "$(envelope --cmd-id "$id" --seq 1 --action collect_logs --args '{"minutes":10}')"
  wait_ack "$id" applied "" # A received it: the message was delivered where allowed
  sleep 0.5
  if grep -q "received PUBLISH\|^vehicles/" "$work/bsub.log"; then
    fail "vehicle B read vehicle A's command: $(cat "$work/bsub.log")"
  fi
  # And B cannot publish commands (its write pattern is its own acks only).
  # shellcheck disable=SC2046
  timeout 10 mosquitto_pub $(client "$VB") -i "$VB-pub" -q 1 -t "vehicles/$VA/commands" \
    -m "$(envelope --seq 99 --action notify)" >/dev/null 2>&1 || true
  sleep 0.5
  status_json | grep -q '"last_seq":1,' || fail "B's publish reached A: $(status_json)"
  stop "$bsub_pid"
  bsub_pid=
}

test_reject() {
  local id
  id=$(uuid)
  publish "$(envelope --cmd-id "$id" --seq 10 --action notify --args '{"channel":"x"}')"
  wait_ack "$id" applied ""
  local cases=(
    "bad_signature|--seq 11 --action quarantine --args $QUAR --forge"
    "wrong_vin|--seq 12 --action quarantine --args $QUAR --vin $VB"
    "expired|--seq 13 --action quarantine --args $QUAR --issued $(($(date +%s) - 600)) --valid 60"
    "replayed|--seq 10 --action quarantine --args $QUAR"
    "unknown_action|--seq 14 --action self_destruct"
  )
  local c reason opts
  for c in "${cases[@]}"; do
    reason=${c%%|*}
    opts=${c#*|}
    id=$(uuid)
    # shellcheck disable=SC2086
    publish "$(envelope --cmd-id "$id" $opts)"
    wait_ack "$id" rejected "$reason"
    grep -q "cmd $id seq [0-9]* [a-z_]*: rejected: $reason" "$work/agent.err" ||
      fail "no log line for the $reason rejection"
  done
  id=$(uuid)
  publish "$("$sign" --key "$keys/vsoc-rogue.key" --vin "$VA" --cmd-id "$id" --seq 15 \
    --action quarantine --args "$QUAR")"
  wait_ack "$id" rejected unknown_key
  status_json | grep -q '"last_seq":10,' || fail "a rejected command moved last_seq"
}

test_dedupe() {
  local id env first
  id=$(uuid)
  env=$(envelope --cmd-id "$id" --seq 3 --action quarantine --args "$QUAR")
  publish "$env"
  wait_ack "$id" applied ""
  first=$(cat "$work/ack.json")
  publish "$env"
  wait_ack "$id" applied "" 2
  [ "$(cat "$work/ack.json")" = "$first" ] || fail "the resent ack differs from the first"
  local s
  s=$(status_json)
  grep -q '"counters":{"applied":1,' <<<"$s" || fail "applied more than once: $s"
  [ "$(grep -o '"cmd_id":"'"$id"'","seq":3' <<<"$s" | wc -l)" -eq 1 ] ||
    fail "the quarantine is not active exactly once: $s"
  [ "$(grep -c "cmd $id .*: applied" "$work/agent.err")" -eq 1 ] ||
    fail "the agent logged more than one application"
  grep -q "cmd $id seq 3 quarantine: answered again (applied)" "$work/agent.err" ||
    fail "the resend is not logged as answered again"
}

test_gate() {
  echo 50 >"$work/speed"
  sleep 1.2 # the agent re-reads the speed every second
  local id args
  id=$(uuid)
  args='{"segment":"telematics","mode":"block_external","vehicle_state":{"speed_kph":{"lte":0}}}'
  publish "$(envelope --cmd-id "$id" --seq 4 --action quarantine --args "$args")"
  wait_ack "$id" deferred "vehicle_state: speed 50.0 kph, needs <= 0"
  status_json | grep -q '"deferred":\[{"cmd_id":"'"$id" || fail "not deferred: $(status_json)"
  status_json | grep -q '"segments":{}' || fail "applied while moving: $(status_json)"
  echo 0 >"$work/speed"
  wait_ack "$id" applied ""
  status_json | grep -q '"deferred":\[\]' || fail "still deferred: $(status_json)"
  status_json | grep -q '"last_seq":4,' || fail "seq not recorded: $(status_json)"
}

test_ttl() {
  local id t0 t1
  id=$(uuid)
  t0=$(date +%s%N)
  publish "$(envelope --cmd-id "$id" --seq 5 --action quarantine --args "$QUAR" --ttl 2)"
  wait_ack "$id" applied ""
  status_json | grep -q '"until":"' || fail "no end time: $(status_json)"
  wait_ack "$id" released ttl
  t1=$(date +%s%N)
  local ms=$(((t1 - t0) / 1000000))
  [ $ms -ge 1000 ] && [ $ms -le 6000 ] || fail "released after $ms ms, expected about 2 s"
  status_json | grep -q '"quarantines":\[\]' || fail "still quarantined: $(status_json)"
}

test_restart() {
  local id old
  id=$(uuid)
  old=$(envelope --cmd-id "$id" --seq 7 --action quarantine --args "$QUAR")
  publish "$old"
  wait_ack "$id" applied ""
  local first
  first=$(cat "$work/ack.json")
  stop_agent
  status_json | grep -q '"last_seq":7,' || fail "last_seq not persisted: $(status_json)"
  # Sent while the vehicle is offline: the broker keeps it for the agent's session.
  local late
  late=$(uuid)
  publish "$(envelope --cmd-id "$late" --seq 8 --action rotate_credentials)"
  start_agent
  wait_ack "$late" applied ""
  publish "$old" # a known cmd_id: answered again, not applied again
  wait_ack "$id" applied "" 2
  [ "$(cat "$work/ack.json")" = "$first" ] || fail "the ack after restart differs"
  local r
  r=$(uuid)
  publish "$(envelope --cmd-id "$r" --seq 6 --action quarantine --args "$QUAR")"
  wait_ack "$r" rejected replayed
  status_json | grep -q '"rotate_credentials":1' || fail "rotation not recorded: $(status_json)"
  grep -q '"quarantines":\[{"cmd_id":"'"$id"'"' <<<"$(status_json)" ||
    fail "the quarantine did not survive the restart: $(status_json)"
}

test_reconnect() {
  local id
  id=$(uuid)
  publish "$(envelope --cmd-id "$id" --seq 1 --action notify)"
  wait_ack "$id" applied ""
  stop "$sub_pid"
  stop "$broker_pid"
  broker_pid=
  sleep 1.5 # the agent notices and backs off
  mv "$work/broker.log" "$work/broker.log.1"
  start_broker "$port" # persistence is off: the agent must subscribe again by itself
  start_soc_sub
  for _ in $(seq 150); do
    grep -q "reconnected" "$work/agent.err" && break
    sleep 0.1
  done
  grep -q "reconnected" "$work/agent.err" || fail "the agent did not reconnect within 15 s"
  for _ in $(seq 50); do
    grep -q "Sending SUBACK to $VA" "$work/broker.log" && break
    sleep 0.1
  done
  id=$(uuid)
  publish "$(envelope --cmd-id "$id" --seq 2 --action quarantine --args "$QUAR")"
  wait_ack "$id" applied ""
}

case $t in
ack | acl | reject | dedupe | gate | ttl | restart | reconnect) ;;
all)
  for x in ack acl reject dedupe gate ttl restart reconnect; do bash "$0" "$x" || exit 1; done
  exit 0
  ;;
*) fail "unknown test '$t'" ;;
esac
start_broker
start_soc_sub
start_agent
"test_$t"
stop_agent
echo "ok: mqtt $t"
