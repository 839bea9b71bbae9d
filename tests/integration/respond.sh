#!/usr/bin/env bash
# respond.sh TEST: vsoc respond against a real mosquitto (TLS client certificates, the
# per-vehicle ACL) and a real vsoc-agent, all started here on loopback.
#   crash   a replay leaves a quarantine waiting for approval; a person approves it; vsoc
#           respond sends it and is killed (SIGKILL) while it waits for the ack; the vehicle
#           applies it meanwhile; the restarted vsoc respond resumes the run, gets the ack
#           and the command is acked, applied once by the vehicle, with one cmd_id and seq
#   kafka   the same command handed to a connectivity platform over Kafka (a broker made
#           from librdkafka's mock cluster): kcat reads the envelope, keyed by VIN, exactly
#           as stored; the platform's side (vsoc-agent handle) answers; kcat puts the ack on
#           the acks topic; vsoc respond records the command as acked
#   resend  the vehicle is offline when the command goes out and its ack is lost; vsoc
#           respond resends the same envelope after the ack timeout, the agent answers it
#           without applying it twice, and a forged ack (wrong key) does not count
# Needs $VSOC, $VSOC_AGENT, $VSOC_SRC. Exits 0 on success, 1 on failure (saying why).
set -euo pipefail
t=${1:?usage: respond.sh TEST}
src=${VSOC_SRC:?}
work=$(mktemp -d)
# shellcheck source=tests/integration/broker.sh
. "$src/tests/integration/broker.sh"
respond_pid= agent_pid= mock_pid=
cleanup() {
  broker_stop_pid "$respond_pid"
  broker_stop_pid "$agent_pid"
  broker_stop_pid "$mock_pid"
  broker_stop
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL ($t): $*" >&2
  for f in respond.err agent.err broker.log; do
    [ -s "$work/$f" ] && { echo "--- $f (last lines):" >&2; tail -n 20 "$work/$f" >&2; }
  done
  exit 1
}

VIN=WVWZZZ1JZXW000001
broker_pki "$VIN"
mkdir -p "$work/keys" "$work/vkeys" "$work/pb"
"$VSOC" keygen --out "$work/keys" --key-id vsoc-soc >/dev/null
"$VSOC" keygen --out "$work/vkeys" --key-id "$VIN" >/dev/null # the vehicle's ack key
cat >"$work/pb/contain.yml" <<'EOF'
id: contain-test
title: Quarantine the telematics unit after an unexpected listening port
trigger: {rules: ["vsoc.ids.unexpected-listen-port"], min_level: low}
steps:
  - id: isolate
    action: quarantine
    args: {segment: telematics, mode: block_external}
    ttl: 1h
    approval: required
    approval_timeout: 10m
    vehicle_state: {speed_kph: {lte: 0}}
    ack_timeout: 3s
    retries: 5
    expires: 5m
EOF
# An IDS event stamped now, so that the command's expiry lies in the future.
now=$(date +%s)
printf '{"vin":"%s","ts":%s.000,"type":"net.listen","ecu":"TCU","port":23,"proto":"tcp","process":"telnetd"}\n' \
  "$VIN" "$now" >"$work/ids.jsonl"
echo 0 >"$work/speed"

"$VSOC" replay --no-progress -q --db "$work/d.db" --transport none --playbooks "$work/pb" \
  "$work/ids.jsonl" >/dev/null || fail "vsoc replay failed"
cmd=$("$VSOC" commands list --db "$work/d.db" --json | jq -r 'select(.state == "pending_approval") | .cmd_id')
[ -n "$cmd" ] || fail "the replay left no command waiting for approval"
approve() { "$VSOC" commands approve "$cmd" --by alice --db "$work/d.db" >/dev/null || fail "approve failed"; }
# kafka approves while vsoc respond runs: it must pick the decision up from the store.
[ "$t" = kafka ] || approve

[ "$t" = kafka ] || broker_start

state() { "$VSOC" commands list --db "$work/d.db" --json | jq -r "select(.cmd_id == \"$cmd\") | .$1"; }
wait_state() { # wait_state STATE SECONDS
  for _ in $(seq $(($2 * 10))); do
    [ "$(state state)" = "$1" ] && return 0
    sleep 0.1
  done
  fail "command $cmd is $(state state), not $1, after $2 s"
}
start_respond() {
  "$VSOC" respond --db "$work/d.db" --key "$work/keys/vsoc-soc.key" \
    --vehicle-keys "${1:-$work/vkeys}" --playbooks "$work/pb" --poll 200ms \
    --mqtt "127.0.0.1:$port" --cafile "$pki/ca.crt" --cert "$pki/soc.crt" \
    --cert-key "$pki/soc.key" 2>>"$work/respond.err" &
  respond_pid=$!
}
start_agent() {
  "$VSOC_AGENT" run --vin "$VIN" --broker "127.0.0.1:$port" --cafile "$pki/ca.crt" \
    --cert "$pki/$VIN.crt" --key "$pki/$VIN.key" --trust "$work/keys/vsoc-soc.pub" \
    --signing-key "$work/vkeys/$VIN.key" --state-dir "$work/state" \
    --speed-file "$work/speed" 2>>"$work/agent.err" &
  agent_pid=$!
  for _ in $(seq 100); do
    grep -q "waiting for commands" "$work/agent.err" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "the agent did not subscribe"
}
applied_count() { "$VSOC_AGENT" status --state-dir "$work/state" | jq '.counters.applied'; }

case $t in
crash)
  start_agent
  kill -STOP "$agent_pid" # the vehicle is busy: the ack will come late
  start_respond
  wait_state sent 10
  kill -KILL "$respond_pid"
  wait "$respond_pid" 2>/dev/null || true
  respond_pid=
  seq1=$(state seq)
  kill -CONT "$agent_pid" # it applies the command and acks while vsoc respond is down
  for _ in $(seq 100); do
    grep -q "cmd $cmd seq $seq1 quarantine: applied" "$work/agent.err" && break
    sleep 0.1
  done
  grep -q "cmd $cmd seq $seq1 quarantine: applied" "$work/agent.err" ||
    fail "the agent did not apply the command"
  start_respond # the ack waits in the broker's session for it
  wait_state acked 15
  # Vehicles connect out and never listen; neither does vsoc respond. (Only this test's
  # processes: other tests may run a vsoc serve, which does listen for /metrics.)
  if ss -ltnupH 2>/dev/null | grep -E "pid=($agent_pid|$respond_pid)," >&2; then
    fail "a vsoc process has a listening socket"
  fi
  [ "$(state seq)" = "$seq1" ] || fail "the seq changed across the restart"
  [ "$(applied_count)" = 1 ] || fail "the vehicle applied $(applied_count) times"
  n=$("$VSOC" commands list --db "$work/d.db" --json | wc -l)
  [ "$n" = 1 ] || fail "$n commands in the store, expected the one"
  grep -q "respond.started .* 1 in flight" "$work/respond.err" ||
    fail "the restarted vsoc respond did not resume the command"
  "$VSOC" incidents list --db "$work/d.db" --json | jq -s -e 'any(.[]; .state == "contained")' \
    >/dev/null || true # incidents are contained by replay's loopback; respond only records
  "$VSOC" audit verify --db "$work/d.db" >/dev/null || fail "audit verify"
  ;;
resend)
  # A key directory where the vehicle's key is someone else's: acks do not count.
  mkdir -p "$work/rogue"
  "$VSOC" keygen --out "$work/rogue" --key-id "$VIN" >/dev/null
  start_respond "$work/rogue"
  wait_state sent 10
  start_agent # offline at the first send: it gets a resend (its session is new)
  for _ in $(seq 150); do
    grep -q "(bad_signature)" "$work/respond.err" && break
    sleep 0.1
  done
  grep -q "bad_signature" "$work/respond.err" || fail "an ack signed by the wrong key was not refused"
  [ "$(state state)" = sent ] || fail "an unverified ack moved the command to $(state state)"
  broker_stop_pid "$respond_pid"
  respond_pid=
  start_respond # now with the vehicle's real key: the next resend's ack counts
  wait_state acked 15
  attempts=$(state attempts)
  [ "$attempts" -ge 2 ] || fail "expected a resend, attempts = $attempts"
  [ "$(applied_count)" = 1 ] || fail "the vehicle applied $(applied_count) times"
  ;;
kafka)
  command -v kcat >/dev/null || fail "kcat is not installed"
  "${VSOC_KAFKA_MOCK:?}" --brokers 1 --topic vsoc.commands:2 --topic vsoc.acks:1 \
    --port-file "$work/kport" >/dev/null 2>"$work/mock.err" &
  mock_pid=$!
  for _ in $(seq 100); do
    [ -s "$work/kport" ] && break
    kill -0 "$mock_pid" 2>/dev/null || fail "kafka-mock exited: $(cat "$work/mock.err")"
    sleep 0.1
  done
  [ -s "$work/kport" ] || fail "kafka-mock did not start within 10 s"
  brokers=$(cat "$work/kport")
  "$VSOC" respond --db "$work/d.db" --key "$work/keys/vsoc-soc.key" \
    --vehicle-keys "$work/vkeys" --playbooks "$work/pb" --poll 200ms --kafka "$brokers" \
    2>>"$work/respond.err" &
  respond_pid=$!
  for _ in $(seq 100); do
    grep -q "respond.started" "$work/respond.err" && break
    sleep 0.1
  done
  [ "$(state state)" = pending_approval ] || fail "sent before anyone approved it"
  approve
  wait_state sent 15
  "$VSOC" commands export "$cmd" --db "$work/d.db" >"$work/sent.json"
  timeout 20 kcat -b "$brokers" -C -t vsoc.commands -o beginning -c 1 -f '%k\n%s\n' \
    >"$work/got" 2>"$work/kcat.err" || fail "kcat could not read the command: $(cat "$work/kcat.err")"
  [ "$(head -n 1 "$work/got")" = "$VIN" ] || fail "the command is not keyed by the VIN"
  tail -n +2 "$work/got" | cmp -s - "$work/sent.json" ||
    fail "the envelope on the topic differs from the one stored"
  # The platform delivers it to the vehicle and brings the signed ack back.
  "$VSOC_AGENT" handle --vin "$VIN" --trust "$work/keys/vsoc-soc.pub" \
    --signing-key "$work/vkeys/$VIN.key" --state-dir "$work/state" --speed 0 \
    "$work/sent.json" >"$work/ack.json" || fail "vsoc-agent handle failed"
  grep -q '"status":"applied"' "$work/ack.json" || fail "the vehicle did not apply it: $(cat "$work/ack.json")"
  timeout 20 kcat -b "$brokers" -P -t vsoc.acks -k "$VIN" "$work/ack.json" ||
    fail "kcat could not produce the ack"
  wait_state acked 20
  [ "$(applied_count)" = 1 ] || fail "the vehicle applied $(applied_count) times"
  ;;
*)
  fail "unknown test"
  ;;
esac
