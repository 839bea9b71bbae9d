#!/usr/bin/env bash
# kafka.sh TEST: one integration test of connectors/kafka (docs/kafka.md) against
# kafka-mock, a Kafka-protocol broker this script starts on loopback, with kcat as an
# independent client. Needs $VSOC_KAFKA_MOCK and $VSOC_KAFKA_ROUNDTRIP.
#   conf               bad pass-through settings fail with librdkafka's own message
#   commands           commands produced by the connector, keyed by VIN, read back with kcat
#   acks               acks produced by kcat, consumed in a group by the connector and committed
#   broker-down        with the broker gone, produce fails with a message within its timeout
#   group-eager        two members split a topic (range assignor): rebalance callbacks, revoke
#                      before the partitions move, commits, a third consumer resumes after them
#   group-cooperative  the same with the cooperative-sticky assignor, exactly once
#   commit-restart     commit_offsets, then a new consumer resumes exactly there
#   async              10,000 keyed messages through produce_async, synchronous ones between
#   faults             brokers down and up again (SIGUSR1, SIGUSR2) during async produce: no
#                      message lost or doubled; consumers resume, one after losing its partitions
#   lag                lag == produced - consumed, also after a restart from commits
# Exits 0 on success, 1 on failure (saying why). A broker that does not start is a failure.
# Every client runs under timeout(1), so a hang fails the test instead of stalling it.
set -euo pipefail
t=$1
mock=${VSOC_KAFKA_MOCK:?VSOC_KAFKA_MOCK is not set}
rt=${VSOC_KAFKA_ROUNDTRIP:?VSOC_KAFKA_ROUNDTRIP is not set}
work=$(mktemp -d)
mock_pid=
declare -A pid # background clients by name: the timeout(1) process each runs under
cleanup() {
  local p
  for p in "${pid[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
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
    echo "--- kafka-mock stderr:" >&2
    tail -n 20 "$work/mock.err" >&2
  fi
  local f
  for f in "$work"/*.err; do
    [ -s "$f" ] && [ "$f" != "$work/mock.err" ] || continue
    echo "--- $(basename "$f"):" >&2
    tail -n 10 "$f" >&2
  done
  exit 1
}

command -v kcat >/dev/null || fail "kcat is not installed (apt-get install kcat)"

# start_mock [NAME:PARTITIONS...]: starts the broker with these topics (default: the
# commands and acks topics); sets $brokers. Fails unless it is up within 10 s.
start_mock() {
  local topics=() t
  [ $# -gt 0 ] || set -- vsoc.commands:4 vsoc.acks:2
  for t in "$@"; do topics+=(--topic "$t"); done
  "$mock" --brokers 3 "${topics[@]}" --port-file "$work/port" \
    >"$work/mock.out" 2>"$work/mock.err" &
  mock_pid=$!
  for _ in $(seq 100); do
    [ -s "$work/port" ] && break
    kill -0 "$mock_pid" 2>/dev/null || fail "kafka-mock exited before it was ready"
    sleep 0.1
  done
  [ -s "$work/port" ] || fail "kafka-mock did not start within 10 s"
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
  [ $rc -eq 0 ] || fail "kafka-mock exited $rc on SIGTERM"
  [ ! -e "$work/port" ] || fail "kafka-mock left its port file behind"
}

# wait_until SECONDS WHAT CMD...: polls CMD every 0.1 s; fails saying WHAT when it never
# succeeds in time.
wait_until() {
  local s=$1 what=$2 i
  shift 2
  for ((i = 0; i < s * 10; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  fail "$what: not within $s s"
}

# start_member NAME GROUP TOPIC [OPTIONS...]: a group member (vsoc-kafka-roundtrip member)
# in the background, logging to $work/NAME.out.
start_member() {
  local name=$1 group=$2 topic=$3
  shift 3
  : >"$work/$name.out" # exists at once, for those who wait on it
  timeout 110 "$rt" "$@" member "$brokers" "$group" "$topic" 100000 \
    >"$work/$name.out" 2>"$work/$name.err" &
  pid[$name]=$!
}

# signal_member NAME SIGNAL: signals the member itself (timeout(1) does not pass SIGUSR1 on).
signal_member() {
  local child
  child=$(pgrep -P "${pid[$1]}") || fail "member $1 is not running"
  kill -"$2" "$child"
}

# stop_member NAME: SIGTERM, then its exit status must be 0 (it committed and left).
stop_member() {
  local rc=0
  signal_member "$1" TERM
  wait "${pid[$1]}" || rc=$?
  unset "pid[$1]"
  [ $rc -eq 0 ] || fail "member $1 exited $rc: $(tail -n 5 "$work/$1.err")"
}

# Message values a member was handed, one a line.
member_values() { awk '$1 == "msg" { print $4 }' "$@"; }
member_count() { member_values "$@" | wc -l; }
distinct_count() { member_values "$@" | sort -u | wc -l; }
# For wait_until, which needs a command that counts afresh each time: N FILE...
count_ge() { local n=$1; shift; [ "$(member_count "$@")" -ge "$n" ]; }
distinct_ge() { local n=$1; shift; [ "$(distinct_count "$@")" -ge "$n" ]; }

# The partitions a member holds now, from its assign and revoke lines, one a line.
member_parts() {
  awk '$1 == "assign" { for (i = 3; i <= NF; i++) { split($i, a, "@"); held[a[1]] = 1 } }
       $1 == "revoke" { for (i = 4; i <= NF; i++) delete held[$i] }
       END { for (p in held) print p }' "$work/$1.out" | sort
}

# produce_async FIRST N TOPIC [OPTIONS...]: N keyed messages mFIRST.. through produce_async;
# all must be reported delivered.
produce_async() {
  local first=$1 n=$2 topic=$3
  shift 3
  timeout 60 "$rt" --first "$first" "$@" produce-async "$brokers" "$topic" "$n" \
    >"$work/produce.out" 2>"$work/produce.err" ||
    fail "produce-async of $n messages: $(cat "$work/produce.err")"
}

# values FIRST N: the values mFIRST..m(FIRST+N-1), sorted.
values() { local i; for ((i = $1; i < $1 + $2; i++)); do printf 'm%06d\n' "$i"; done; }

# group_test STRATEGY: two members split vsoc.events (4 partitions), then a third consumer
# resumes after their commits.
group_test() {
  local strategy=$1
  start_mock vsoc.events:4
  local gc=("${group_conf[@]}" -X "partition.assignment.strategy=$strategy" --drain-ms 300)
  produce_async 0 200 vsoc.events
  start_member a soc vsoc.events "${gc[@]}"
  wait_until 30 "member a reading the first 200 messages" \
    count_ge 200 "$work/a.out"
  start_member b soc vsoc.events "${gc[@]}"
  wait_until 30 "member b getting partitions" grep -qE '^assign [0-9]+ ' "$work/b.out"
  wait_until 30 "member a giving partitions up" grep -q '^revoked ' "$work/a.out"
  produce_async 200 200 vsoc.events
  wait_until 30 "the members reading the second 200 messages" \
    distinct_ge 400 "$work/a.out" "$work/b.out"

  # Both got some of the second batch.
  local na nb
  na=$(awk '$1 == "msg" && $4 >= "m000200"' "$work/a.out" | wc -l)
  nb=$(awk '$1 == "msg" && $4 >= "m000200"' "$work/b.out" | wc -l)
  [ "$na" -gt 0 ] && [ "$nb" -gt 0 ] ||
    fail "the members did not share the partitions: a read $na, b read $nb of the second batch"
  [ -z "$(member_parts a | comm -12 - <(member_parts b))" ] ||
    fail "a and b hold the same partitions: $(member_parts a | tr '\n' ' ')"

  # The revoke ran, drained and returned before b was given the partitions.
  local t_rev t_end t_asg moved
  read -r _ t_rev _ <<<"$(grep -m1 '^revoke ' "$work/a.out")"
  read -r _ t_end _ <<<"$(grep -m1 '^revoked ' "$work/a.out")"
  read -r _ t_asg _ <<<"$(grep -m1 -E '^assign [0-9]+ ' "$work/b.out")"
  [ $((t_end - t_rev)) -ge 300 ] || fail "on_revoke took $((t_end - t_rev)) ms, it drains 300"
  [ "$t_end" -le "$t_asg" ] ||
    fail "b was given partitions at $t_asg, before a's on_revoke returned at $t_end"
  moved=$(grep -m1 -E '^assign [0-9]+ ' "$work/b.out" | tr ' ' '\n' | tail -n +3 | cut -d@ -f1)
  for p in $moved; do
    grep -m1 '^revoke ' "$work/a.out" | tr ' ' '\n' | grep -qx "$p" ||
      fail "b was given $p, which a's first on_revoke did not give up"
  done

  # Every message was read; exactly once when the commit in on_revoke took. librdkafka's
  # mock refuses commits while a group is rebalancing (a real broker takes them from a
  # member of the current generation), so with an eager assignor it fails there, and b
  # reads again what a had read of its partitions: at least once.
  [ "$(distinct_count "$work/a.out" "$work/b.out")" -eq 400 ] ||
    fail "the members read $(distinct_count "$work/a.out" "$work/b.out") distinct messages, not 400"
  cmp -s <(member_values "$work/a.out" "$work/b.out" | sort -u) <(values 0 400) ||
    fail "the members read other messages than m000000..m000399"
  if grep -q '^revoked .* failed: ' "$work/a.out"; then
    [ "$strategy" != cooperative-sticky ] ||
      fail "a's commit in on_revoke failed: $(grep '^revoked .* failed' "$work/a.out")"
    grep -q 'Group rebalance in progress' "$work/a.out" ||
      fail "a's commit in on_revoke failed: $(grep '^revoked .* failed' "$work/a.out")"
  else
    [ "$(member_count "$work/a.out" "$work/b.out")" -eq 400 ] ||
      fail "$(member_count "$work/a.out" "$work/b.out") messages read for 400," \
        "despite the commit in on_revoke"
    # b resumed each moved partition exactly where a's on_revoke committed it.
    for p in $moved; do
      local committed resumed
      committed=$(grep -m1 '^revoked ' "$work/a.out" | tr ' ' '\n' | grep "^$p@" | cut -d@ -f2)
      resumed=$(grep -m1 -E '^assign [0-9]+ ' "$work/b.out" | tr ' ' '\n' | grep "^$p@" |
        cut -d@ -f2)
      [ -n "$committed" ] && [ "$committed" = "$resumed" ] ||
        fail "b resumed $p at '$resumed', a committed '$committed' in on_revoke"
    done
  fi

  # a still holds offsets of the partitions it gave up; its last commit must skip them
  # rather than take b's commits back.
  signal_member b USR1
  wait_until 20 "b committing on SIGUSR1" grep -q '^commit ' "$work/b.out"
  ! grep -q '^commit [0-9]* failed' "$work/b.out" ||
    fail "b's commit: $(grep '^commit ' "$work/b.out")"
  local bparts
  bparts=$(member_parts b)
  stop_member a
  timeout 20 "$rt" committed "$brokers" soc vsoc.events 4 >"$work/committed" \
    2>"$work/committed.err" || fail "reading the committed offsets: $(cat "$work/committed.err")"
  for p in $bparts; do
    local want got
    want=$(grep -m1 '^commit ' "$work/b.out" | tr ' ' '\n' | grep "^$p@" | cut -d@ -f2)
    got=$(awk -v p="${p##*:}" '$1 == p { print $2 }' "$work/committed")
    [ -n "$want" ] && [ "$want" = "$got" ] ||
      fail "$p: committed offset $got after a left, b had committed $want" \
        "(a's stale commit was not skipped?)"
  done
  # b takes a's partitions over (the mock refuses commits until the group settles).
  wait_until 30 "b taking all partitions over" eval '[ "$(member_parts b | wc -l)" -eq 4 ]'
  stop_member b

  # A new consumer in the group resumes after the commits: it reads the next 100 only.
  produce_async 400 100 vsoc.events
  timeout 60 "$rt" "${group_conf[@]}" consume "$brokers" soc vsoc.events 100 50000 \
    >"$work/c.out" 2>"$work/c.err" || fail "the third consumer: $(cat "$work/c.err")"
  cmp -s <(sort "$work/c.out") <(values 400 100) ||
    fail "the third consumer read $(wc -l <"$work/c.out") messages, not m000400..m000499 only"
  stop_mock
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
  expect_fail "kafka setting 'enable.partition.eof': set by vsoc (enable.partition.eof=false)" \
    "$rt" -X enable.partition.eof=true consume 127.0.0.1:1 grp vsoc.acks 1 1000
  # fetch.wait.max.ms (10 by default) and the assignor may be changed: the consumer is made
  # and only times out on the dead broker.
  expect_fail "timed out after 1000 ms" \
    "$rt" -X fetch.wait.max.ms=100 -X partition.assignment.strategy=cooperative-sticky \
    consume 127.0.0.1:1 grp vsoc.acks 1 1000
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
group-eager)
  group_test range
  ;;
group-cooperative)
  group_test cooperative-sticky
  ;;
commit-restart)
  start_mock vsoc.events:2
  for p in 0 1; do
    for i in $(seq 0 49); do printf 'p%d-%02d\n' "$p" "$i"; done >"$work/in$p"
    timeout 20 kcat -b "$brokers" -P -t vsoc.events -p "$p" -l "$work/in$p" \
      2>"$work/kcat.err" || fail "kcat -P -p $p: $(cat "$work/kcat.err")"
  done
  # Partition 7 does not exist, so it is not assigned: skipped, not an error.
  timeout 60 "$rt" "${group_conf[@]}" commit "$brokers" soc vsoc.events 0:17 1:33 7:5 \
    >"$work/commit.out" 2>"$work/commit.err" || fail "commit_offsets: $(cat "$work/commit.err")"
  timeout 20 "$rt" committed "$brokers" soc vsoc.events 2 >"$work/committed" \
    2>"$work/committed.err" || fail "reading the committed offsets: $(cat "$work/committed.err")"
  [ "$(cat "$work/committed")" = $'0 17\n1 33' ] ||
    fail "committed offsets: $(tr '\n' ' ' <"$work/committed"), expected 0 17, 1 33"
  # A new member resumes exactly there: it is told so in on_assign and reads p0 from 17 and
  # p1 from 33, nothing before.
  start_member m soc vsoc.events "${group_conf[@]}"
  wait_until 30 "the member reading the 50 messages after the commits" \
    count_ge 50 "$work/m.out"
  sleep 0.5 # anything more would be a message before the committed offsets
  grep -qE '^assign [0-9]+ vsoc.events:[01]@(17|33) vsoc.events:[01]@(17|33)$' "$work/m.out" ||
    fail "on_assign did not report the committed offsets: $(grep '^assign' "$work/m.out")"
  [ "$(member_count "$work/m.out")" -eq 50 ] ||
    fail "read $(member_count "$work/m.out") messages after the commits, expected 50"
  [ "$(awk '$1 == "msg" && $2 == 0 { print $3; exit }' "$work/m.out")" = 17 ] ||
    fail "partition 0 did not resume at offset 17"
  [ "$(awk '$1 == "msg" && $2 == 1 { print $3; exit }' "$work/m.out")" = 33 ] ||
    fail "partition 1 did not resume at offset 33"
  cmp -s <(member_values "$work/m.out" | sort) \
    <({ seq -f 'p0-%02g' 17 49; seq -f 'p1-%02g' 33 49; } | sort) ||
    fail "the member read other messages than p0-17..49 and p1-33..49"
  stop_member m
  stop_mock
  ;;
async)
  start_mock vsoc.alerts:4
  # Synchronous messages through the same producer every 1,000: their reports must not
  # reach the async callback (the driver counts one report per async message, no more).
  produce_async 0 10000 vsoc.alerts --sync-every 1000
  [ "$(cat "$work/produce.out")" = "delivered 10000 failed 0 sync 10" ] ||
    fail "produce-async: $(cat "$work/produce.out")"
  timeout 30 kcat -b "$brokers" -C -t vsoc.alerts -o beginning -e -q -f '%k %p %s\n' \
    >"$work/got" 2>"$work/kcat.err" || fail "kcat -C: $(cat "$work/kcat.err")"
  [ "$(wc -l <"$work/got")" -eq 10010 ] ||
    fail "kcat read $(wc -l <"$work/got") messages, not 10010"
  cmp -s <(awk '$3 ~ /^m/ { print $3 }' "$work/got" | sort) <(values 0 10000) ||
    fail "the async messages read back are not m000000..m009999, each once"
  [ "$(awk '$1 == "CMD" && $3 ~ /^s/' "$work/got" | wc -l)" -eq 10 ] ||
    fail "expected the 10 synchronous messages keyed CMD"
  # Keyed: message i has key VIN(i % 100), and one key stays on one partition.
  awk '$3 ~ /^m/ { i = substr($3, 2) + 0; if ($1 != sprintf("VIN%05d", i % 100)) exit 1 }' \
    "$work/got" || fail "a message carries the wrong key"
  [ "$(awk '{ print $1, $2 }' "$work/got" | sort -u | wc -l)" -eq 101 ] ||
    fail "a key is spread over several partitions"
  stop_mock
  ;;
faults)
  start_mock vsoc.alerts:4
  # Two consumers in two groups: k's session outlives the outage, as a service's would a
  # short one; l's (3 s) does not, so l loses its partitions and joins again. Every client
  # retries a connection at least once a second (librdkafka backs off up to 10 s), so that
  # the test does not wait on back-off after the brokers are back.
  local_conf=(-X reconnect.backoff.max.ms=1000)
  start_member k soc vsoc.alerts "${local_conf[@]}" -X session.timeout.ms=30000 \
    -X heartbeat.interval.ms=500
  start_member l audit vsoc.alerts "${local_conf[@]}" "${group_conf[@]}"
  wait_until 30 "the consumers joining" eval 'grep -q "^assign " "$work/k.out" &&
    grep -q "^assign " "$work/l.out"'
  # 4,000 messages over 4 s; the brokers go away for 5 s in the middle.
  timeout 90 "$rt" "${local_conf[@]}" --rate 1000 --flush-ms 60000 produce-async "$brokers" \
    vsoc.alerts 4000 \
    >"$work/produce.out" 2>"$work/produce.err" &
  pid[p]=$!
  sleep 1
  kill -USR1 "$mock_pid"
  wait_until 10 "kafka-mock taking the brokers down" grep -q 'brokers down' "$work/mock.err"
  sleep 5
  kill -USR2 "$mock_pid"
  wait_until 10 "kafka-mock bringing the brokers up" grep -q 'brokers up' "$work/mock.err"
  rc=0
  wait "${pid[p]}" || rc=$?
  unset "pid[p]"
  [ $rc -eq 0 ] || fail "produce-async through the outage exited $rc: $(cat "$work/produce.err")"
  [ "$(cat "$work/produce.out")" = "delivered 4000 failed 0 sync 0" ] ||
    fail "produce-async: $(cat "$work/produce.out")"
  grep -q 'Connection refused' "$work/produce.err" ||
    fail "the producer never saw the brokers down: $(head -n 3 "$work/produce.err")"
  # Every message is on the topic. Once each as a rule; the mock cluster now and then keeps
  # a batch twice across a full outage (docs/kafka.md, testing), so duplicates are counted
  # and reported, and only a lost or foreign message fails.
  timeout 30 kcat -b "$brokers" -C -t vsoc.alerts -o beginning -e -q -f '%s\n' \
    >"$work/got" 2>"$work/kcat.err" || fail "kcat -C: $(cat "$work/kcat.err")"
  cmp -s <(sort -u "$work/got") <(values 0 4000) ||
    fail "kcat read $(wc -l <"$work/got") messages ($(sort -u "$work/got" | wc -l)" \
      "distinct), not m000000..m003999"
  dups=$(($(wc -l <"$work/got") - 4000))
  [ "$dups" -eq 0 ] || echo "note: $dups messages twice on the topic (the mock's outage)"
  # Both consumers came back by themselves and read everything (at least once).
  wait_until 30 "the consumers reading all 4000 after the outage" \
    eval 'distinct_ge 4000 "$work/k.out" && distinct_ge 4000 "$work/l.out"'
  for m in k l; do
    cmp -s <(member_values "$work/$m.out" | sort -u) <(values 0 4000) ||
      fail "consumer $m read other messages than m000000..m003999"
  done
  ! grep -q '^revoke ' "$work/k.out" ||
    fail "k lost its partitions: $(grep '^revoke' "$work/k.out")"
  # l was told the partitions were lost, and its commit for them was skipped, not refused.
  grep -q '^revoke [0-9]* lost=1 ' "$work/l.out" ||
    fail "l was not told it lost its partitions: $(grep -v '^msg' "$work/l.out")"
  # (Whether it still held partitions to name depends on how far it had read when the
  # brokers went: under load, none.)
  grep -A1 '^revoke [0-9]* lost=1' "$work/l.out" | grep -q '^revoked [0-9]*\( vsoc\|$\)' ||
    fail "l's commit after the loss: $(grep '^revoked' "$work/l.out")"
  [ "$(grep -c '^assign [0-9]* vsoc' "$work/l.out")" -ge 2 ] ||
    fail "l did not get partitions again"
  stop_member k
  stop_member l
  stop_mock
  ;;
lag)
  start_mock vsoc.events:4
  produce_async 0 1000 vsoc.events
  # Each run reads at least M more of the 1,000 messages, checks that the lag is what is
  # left and commits what it read. A partition a run read nothing from counts from the
  # group's committed offset, or from the oldest message when it has none: the first run
  # (one batch, M = 1) leaves partitions without commits for the second, and the last run's
  # unread partitions have commits.
  base=0
  for m in 1 300 1; do
    timeout 60 "$rt" "${group_conf[@]}" --base "$base" --commit lag "$brokers" soc vsoc.events \
      1000 "$m" 30000 >"$work/lag" 2>"$work/lag.err" ||
      fail "lag after reading $m more of 1000 ($base read before): $(cat "$work/lag.err")"
    read -r _ got _ lag <<<"$(cat "$work/lag")"
    [ "$got" -ge "$m" ] && [ "$lag" -eq $((1000 - base - got)) ] ||
      fail "lag with $base read before: $(cat "$work/lag")"
    base=$((base + got))
  done
  [ "$base" -lt 1000 ] || fail "the runs read all 1000 messages: the lag was never partial"
  stop_mock
  ;;
*)
  fail "unknown test $t"
  ;;
esac
echo "ok: kafka $t"
