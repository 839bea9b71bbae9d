#!/usr/bin/env bash
# kafka.sh TEST: one integration test of connectors/kafka (docs/kafka.md) against
# vsoc-kafka-mock, a Kafka-protocol broker this script starts on loopback, with kcat as an
# independent client. Needs $VSOC_KAFKA_MOCK and $VSOC_KAFKA_ROUNDTRIP.
#   conf         bad pass-through settings fail with librdkafka's own message
#   commands     commands produced by the connector, keyed by VIN, read back with kcat
#   acks         acks produced by kcat, consumed in a group by the connector and committed
#   broker-down  with the broker gone, produce fails with a message within its timeout
# Exits 0 on success, 1 on failure (saying why). A broker that does not start is a failure.
# Every client runs under timeout(1), so a hang fails the test instead of stalling it.
set -euo pipefail
t=$1
mock=${VSOC_KAFKA_MOCK:?VSOC_KAFKA_MOCK is not set}
rt=${VSOC_KAFKA_ROUNDTRIP:?VSOC_KAFKA_ROUNDTRIP is not set}
work=$(mktemp -d)
mock_pid=
cleanup() {
  if [ -n "$mock_pid" ]; then
    kill "$mock_pid" 2>/dev/null || true
    wait "$mock_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  if [ -s "$work/mock.err" ]; then
    echo "--- vsoc-kafka-mock stderr:" >&2
    tail -n 20 "$work/mock.err" >&2
  fi
  exit 1
}

command -v kcat >/dev/null || fail "kcat is not installed (apt-get install kcat)"

# Starts the broker with the two topics; sets $brokers. Fails unless it is up within 10 s.
start_mock() {
  "$mock" --brokers 3 --topic vsoc.commands:4 --topic vsoc.acks:2 --port-file "$work/port" \
    >"$work/mock.out" 2>"$work/mock.err" &
  mock_pid=$!
  for _ in $(seq 100); do
    [ -s "$work/port" ] && break
    kill -0 "$mock_pid" 2>/dev/null || fail "vsoc-kafka-mock exited before it was ready"
    sleep 0.1
  done
  [ -s "$work/port" ] || fail "vsoc-kafka-mock did not start within 10 s"
  brokers=$(cat "$work/port")
  [[ $brokers =~ ^127\.0\.0\.1:[0-9]+(,127\.0\.0\.1:[0-9]+)*$ ]] ||
    fail "unexpected bootstrap list '$brokers'"
  [ "$(head -n 1 "$work/mock.out")" = "$brokers" ] || fail "stdout and port file differ"
}

stop_mock() {
  kill -TERM "$mock_pid"
  local rc=0
  wait "$mock_pid" || rc=$?
  mock_pid=
  [ $rc -eq 0 ] || fail "vsoc-kafka-mock exited $rc on SIGTERM"
  [ ! -e "$work/port" ] || fail "vsoc-kafka-mock left its port file behind"
}

# A command envelope as the responder sends it (docs/envelope.md): one line, no newline.
envelope() { # VIN SEQ
  printf '{"v":1,"cmd_id":"0b9a3c2e-6f1d-4e8a-9c47-2d5e8f1a7b%02d","vin":"%s","seq":%d,"action":"quarantine","args":{"mode":"block_external","segment":"telematics"},"ttl_s":7200,"issued_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-25T10:05:00Z","incident_id":"INC-2026-0042","key_id":"vsoc-test","sig":"Y+3vRJd5wW/Y8mFW4UuDiQ8tixBViCnYpc5SuJwWYtPywrtuaxlcbx+Cpk5//mslngazrEYXpjbwSlWg6/iyBw=="}' \
    "$2" "$1" "$2"
}
ack() { # VIN SEQ
  printf '{"v":1,"cmd_id":"0b9a3c2e-6f1d-4e8a-9c47-2d5e8f1a7b%02d","vin":"%s","seq":%d,"status":"applied","reason":"","at":1795600801,"key_id":"%s","sig":"c2lnbmF0dXJl"}' \
    "$2" "$1" "$2" "$1"
}

# expect_fail NEEDLE CMD...: CMD must exit 1 and say NEEDLE on stderr.
expect_fail() {
  local needle=$1 rc=0
  shift
  timeout 20 "$@" >"$work/out" 2>"$work/err" || rc=$?
  [ $rc -eq 1 ] || fail "'$*' exited $rc, expected 1: $(cat "$work/err")"
  grep -qF -- "$needle" "$work/err" || fail "'$*' did not say '$needle': $(cat "$work/err")"
}

# librdkafka's mock group coordinator answers a join to a group whose last member just left
# only after that member's session.timeout.ms less 1 s (a real broker answers at once), so
# the consumers here use a short session to keep each new run of a group quick.
group_conf=(-X session.timeout.ms=3000 -X heartbeat.interval.ms=500)

case $t in
conf)
  # No broker is needed: settings are checked when the handle is made.
  printf 'x' >"$work/v"
  expect_fail 'No such configuration property: "no.such.setting"' \
    "$rt" -X no.such.setting=1 produce 127.0.0.1:1 vsoc.commands VIN "$work/v"
  expect_fail 'No such configuration property: "no.such.setting"' \
    "$rt" -X no.such.setting=1 consume 127.0.0.1:1 grp vsoc.acks 1 1000
  expect_fail "kafka setting 'security.protocol': Invalid value \"bogus\"" \
    "$rt" -X security.protocol=bogus produce 127.0.0.1:1 vsoc.commands VIN "$work/v"
  expect_fail "kafka setting 'missing-equals': expected key=value" \
    "$rt" -X missing-equals produce 127.0.0.1:1 vsoc.commands VIN "$work/v"
  # The settings delivery rests on cannot be weakened.
  expect_fail "kafka setting 'acks': set by vsoc (acks=all)" \
    "$rt" -X acks=1 produce 127.0.0.1:1 vsoc.commands VIN "$work/v"
  expect_fail "kafka setting 'enable.idempotence': set by vsoc" \
    "$rt" -X enable.idempotence=false produce 127.0.0.1:1 vsoc.commands VIN "$work/v"
  expect_fail "kafka setting 'enable.auto.commit': set by vsoc" \
    "$rt" -X enable.auto.commit=true consume 127.0.0.1:1 grp vsoc.acks 1 1000
  # A librdkafka setting that is valid is accepted (the failure is then the dead broker).
  expect_fail "not delivered within 500 ms" \
    "$rt" --timeout-ms 500 -X socket.timeout.ms=1000 produce 127.0.0.1:1 vsoc.commands VIN \
    "$work/v"
  ;;
commands)
  start_mock
  vins=(WVWZZZ1JZXW000001 WVWZZZ1JZXW000002 YV1ZZZ8B9W1000003)
  : >"$work/expected"
  seq=1
  for vin in "${vins[@]}"; do
    envelope "$vin" $seq >"$work/cmd$seq"
    timeout 20 "$rt" --timeout-ms 10000 produce "$brokers" vsoc.commands "$vin" \
      "$work/cmd$seq" || fail "producing command $seq for $vin"
    { printf '%s ' "$vin"; cat "$work/cmd$seq"; echo; } >>"$work/expected"
    seq=$((seq + 1))
  done
  # A second command for the first vehicle must follow the first on the same partition.
  envelope "${vins[0]}" 4 >"$work/cmd4"
  timeout 20 "$rt" produce "$brokers" vsoc.commands "${vins[0]}" "$work/cmd4" ||
    fail "producing command 4"
  { printf '%s ' "${vins[0]}"; cat "$work/cmd4"; echo; } >>"$work/expected"

  timeout 20 kcat -b "$brokers" -C -t vsoc.commands -o beginning -e -q -f '%k %s\n' \
    >"$work/got" 2>"$work/kcat.err" || fail "kcat -C: $(cat "$work/kcat.err")"
  n=$(wc -l <"$work/got")
  [ "$n" -eq 4 ] || fail "kcat read $n commands, expected 4: $(cat "$work/got")"
  # Partitions interleave in any order: compare as sorted lines, byte for byte.
  cmp <(LC_ALL=C sort "$work/expected") <(LC_ALL=C sort "$work/got") ||
    fail "commands read back differ from those produced"
  timeout 20 kcat -b "$brokers" -C -t vsoc.commands -o beginning -e -q -f '%k %p %o\n' \
    >"$work/parts" 2>"$work/kcat.err" || fail "kcat -C: $(cat "$work/kcat.err")"
  mapfile -t first < <(awk -v k="${vins[0]}" '$1 == k { print $2 " " $3 }' "$work/parts")
  [ "${#first[@]}" -eq 2 ] || fail "expected 2 commands for ${vins[0]}: $(cat "$work/parts")"
  read -r p1 o1 <<<"${first[0]}"
  read -r p2 o2 <<<"${first[1]}"
  [ "$p1" = "$p2" ] || fail "one vehicle's commands went to partitions $p1 and $p2"
  [ "$o1" -lt "$o2" ] || fail "one vehicle's commands out of order (offsets $o1, $o2)"
  timeout 20 kcat -b "$brokers" -C -t vsoc.commands -p "$p1" -o "$o1" -c 1 -q -f '%s' \
    >"$work/at" 2>"$work/kcat.err" || fail "kcat -C -p $p1: $(cat "$work/kcat.err")"
  cmp "$work/cmd1" "$work/at" || fail "the first command is not first on partition $p1"
  stop_mock
  ;;
acks)
  start_mock
  vins=(WVWZZZ1JZXW000001 WVWZZZ1JZXW000002 YV1ZZZ8B9W1000003)
  { ack "${vins[0]}" 1; echo; ack "${vins[1]}" 2; echo; } >"$work/acks12"
  { printf '%s|' "${vins[0]}"; ack "${vins[0]}" 1; echo
    printf '%s|' "${vins[1]}"; ack "${vins[1]}" 2; echo; } >"$work/kcat.in"
  timeout 20 kcat -b "$brokers" -P -t vsoc.acks -K '|' <"$work/kcat.in" \
    2>"$work/kcat.err" || fail "kcat -P: $(cat "$work/kcat.err")"

  # The group is new: it starts from the oldest message.
  timeout 40 "$rt" "${group_conf[@]}" consume "$brokers" soc vsoc.acks 2 30000 \
    >"$work/got" 2>"$work/rt.err" ||
    fail "consuming 2 acks: $(cat "$work/rt.err")"
  cmp <(LC_ALL=C sort "$work/acks12") <(LC_ALL=C sort "$work/got") ||
    fail "acks consumed differ from those produced: $(cat "$work/got")"

  # Committed: the same group sees nothing new...
  rc=0
  timeout 30 "$rt" "${group_conf[@]}" consume "$brokers" soc vsoc.acks 1 5000 \
    >"$work/got" 2>"$work/rt.err" || rc=$?
  [ $rc -eq 1 ] || fail "second consumer exited $rc, expected 1 (timeout): $(cat "$work/rt.err")"
  [ ! -s "$work/got" ] || fail "acks delivered again after the commit: $(cat "$work/got")"
  grep -q "timed out" "$work/rt.err" || fail "second consumer: $(cat "$work/rt.err")"

  # ...but does see the next ack, and only that one (so the empty run above was the
  # committed offsets, not a consumer that never joined).
  { ack "${vins[2]}" 3; echo; } >"$work/ack3"
  { printf '%s|' "${vins[2]}"; cat "$work/ack3"; } >"$work/kcat.in"
  timeout 20 kcat -b "$brokers" -P -t vsoc.acks -K '|' <"$work/kcat.in" \
    2>"$work/kcat.err" || fail "kcat -P: $(cat "$work/kcat.err")"
  timeout 40 "$rt" "${group_conf[@]}" consume "$brokers" soc vsoc.acks 1 30000 \
    >"$work/got" 2>"$work/rt.err" ||
    fail "consuming the third ack: $(cat "$work/rt.err")"
  cmp "$work/ack3" "$work/got" || fail "expected only the third ack, got: $(cat "$work/got")"

  # Another group has its own offsets and reads all three.
  timeout 40 "$rt" "${group_conf[@]}" consume "$brokers" audit vsoc.acks 3 30000 \
    >"$work/got" 2>"$work/rt.err" ||
    fail "a second group: $(cat "$work/rt.err")"
  [ "$(wc -l <"$work/got")" -eq 3 ] || fail "a second group read: $(cat "$work/got")"
  stop_mock
  ;;
broker-down)
  start_mock
  envelope WVWZZZ1JZXW000001 1 >"$work/cmd"
  timeout 20 "$rt" produce "$brokers" vsoc.commands WVWZZZ1JZXW000001 "$work/cmd" ||
    fail "producing while the broker is up"
  kill -KILL "$mock_pid"
  wait "$mock_pid" 2>/dev/null || true
  mock_pid=
  start=$(date +%s%N)
  expect_fail "kafka produce to vsoc.commands: not delivered within 3000 ms" \
    "$rt" --timeout-ms 3000 produce "$brokers" vsoc.commands WVWZZZ1JZXW000001 "$work/cmd"
  ms=$((($(date +%s%N) - start) / 1000000))
  [ $ms -ge 2900 ] || fail "produce gave up after $ms ms, before its 3000 ms timeout"
  [ $ms -lt 8000 ] || fail "produce took $ms ms with a 3000 ms timeout"
  # The reason is the client's own: the connection was refused.
  grep -qiE "refused|down|connect" "$work/err" || fail "no reason given: $(cat "$work/err")"
  # A consumer does not hang either: it times out and closes.
  start=$(date +%s%N)
  expect_fail "timed out after 2000 ms" \
    "$rt" "${group_conf[@]}" consume "$brokers" soc vsoc.acks 1 2000
  grep -q "kafka consume: .*refused" "$work/err" ||
    fail "the consumer did not report the refused connection: $(cat "$work/err")"
  ms=$((($(date +%s%N) - start) / 1000000))
  [ $ms -lt 10000 ] || fail "consumer took $ms ms to give up with a 2000 ms timeout"
  ;;
*)
  fail "unknown test $t"
  ;;
esac
echo "ok: kafka $t"
