#!/usr/bin/env bash
# serve.sh: vsoc serve against the Kafka-protocol test broker (kafka-mock), with kcat as an
# independent client. Usage: serve.sh CASE, with VSOC, VSOC_GEN, VSOC_KAFKA_MOCK set.
#   parity      the same captures produced to the events topic give the same alert ids on
#               the alerts topic as vsoc replay gives, over several vehicles and workers
#   restart     SIGTERM drains and exits 0; a restart reads nothing twice and adds nothing
#   kill        kill -9 in the middle of the stream, restart: no alert lost, none duplicated
#               after deduplication by id, and the store holds each alert once
#   reload      a bad rule on reload keeps the old set running (HTTP 500, metric, log); a
#               good one replaces it (HTTP 200, generation 2); SIGHUP reloads too
#   broker-down all brokers down for 20 s, then back: the service resumes and loses nothing
#   bad-input   malformed messages are counted and logged with topic/partition@offset and
#               the stream goes on
#   check       --check accepts the sample configuration and locates every error of a bad
#               one (exit 2), a bad rule included; --config-sample is the shipped sample
#   fleet       two instances in one consumer group split the partitions; fleet_count
#               counts the vehicles seen by both (a real redis-server started here) and
#               raises one alert between them; Redis killed: both keep running, say so in
#               /metrics, and judge fleet hits locally
#   fleet-kill  one instance without Redis killed -9 between two halves of a fleet attack:
#               the fleet counter restored from the checkpoint raises the fleet alert
#   handoff     a second instance joins while attack windows are open, then the first
#               leaves: the partitions move with their vehicles' engine state (through
#               a real redis-server), and the alert ids equal vsoc replay's
#   commands    with kafka.topics.commands the service delivers a playbook's command (signed,
#               keyed by the VIN), takes the vehicle's signed ack from the acks topic and
#               records it (audit chain intact); killed -9 while the command waits for its
#               ack, the restarted service resends the same cmd_id and seq, and the vehicle
#               applies it once; a step approved with vsoc commands approve is then sent
# Exits 0 on success, 1 on failure (saying why). A broker that does not start is a failure.
set -euo pipefail
t=$1
vsoc=${VSOC:?VSOC is not set}
gen=${VSOC_GEN:?VSOC_GEN is not set}
mock=${VSOC_KAFKA_MOCK:?VSOC_KAFKA_MOCK is not set}
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
mock_pid=
serve_pid=
serve2_pid=
redis_pid=
cleanup() {
  for p in $serve_pid $serve2_pid $redis_pid $mock_pid; do
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ -n "${KEEP:-}" ]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in mock.err serve.err serve2.err redis.log; do
    if [ -s "$work/$f" ]; then
      echo "--- $f (last 30 lines):" >&2
      tail -n 30 "$work/$f" >&2
    fi
  done
  exit 1
}

command -v kcat >/dev/null || fail "kcat is not installed (apt-get install kcat)"
command -v curl >/dev/null || fail "curl is not installed (apt-get install curl)"
command -v jq >/dev/null || fail "jq is not installed (apt-get install jq)"

# A redis-server of the test's own on a free loopback port; sets $redis_port.
start_redis() {
  command -v redis-server >/dev/null || fail "redis-server is not installed"
  for _ in 1 2 3 4 5; do
    redis_port=$((20000 + RANDOM % 30000))
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
      >"$work/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 50); do
      redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && return 0
      kill -0 "$redis_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=
  done
  fail "redis-server did not start"
}

start_mock() { # [TOPIC:PARTITIONS...] (default: the events and alerts topics, 3 brokers)
  local args=(--brokers 3 --topic vsoc.events:4 --topic vsoc.alerts:2)
  if [ $# -gt 0 ]; then
    args=(--brokers 1)
    for t in "$@"; do args+=(--topic "$t"); done
  fi
  "$mock" "${args[@]}" --port-file "$work/port" >"$work/mock.out" 2>"$work/mock.err" &
  mock_pid=$!
  for _ in $(seq 100); do
    [ -s "$work/port" ] && break
    kill -0 "$mock_pid" 2>/dev/null || fail "kafka-mock exited before it was ready"
    sleep 0.1
  done
  [ -s "$work/port" ] || fail "kafka-mock did not start within 10 s"
  brokers=$(cat "$work/port")
}

# The inputs: the README's sample truck and three generated vehicles, one key (VIN) each.
make_inputs() {
  cp "$src/samples/demo.log" "$work/1VSCDEM0000000001.log"
  cp "$src/samples/demo-ids.jsonl" "$work/ids.jsonl"
  "$gen" --seconds 8 --seed 2 --attack fuzz@2+2 --attack dos@5+1 >"$work/WVWZZZ1JZXW000002.log"
  "$gen" --seconds 8 --seed 3 --attack uds-bruteforce@1+3 >"$work/WVWZZZ1JZXW000003.log"
  "$gen" --seconds 8 --seed 4 >"$work/WVWZZZ1JZXW000004.log"
  : >"$work/events.tsv"
  for v in 1VSCDEM0000000001 WVWZZZ1JZXW000002 WVWZZZ1JZXW000003 WVWZZZ1JZXW000004; do
    sed "s/^/$v\t/" "$work/$v.log" >>"$work/events.tsv"
    [ "$v" = 1VSCDEM0000000001 ] && sed "s/^/$v\t/" "$work/ids.jsonl" >>"$work/events.tsv"
  done
  total=$(wc -l <"$work/events.tsv")
}

# What vsoc replay says, vehicle by vehicle (each vehicle's events in the order produced).
replay_ids() {
  : >"$work/replay.jsonl"
  for v in 1VSCDEM0000000001 WVWZZZ1JZXW000002 WVWZZZ1JZXW000003 WVWZZZ1JZXW000004; do
    local extra=
    [ "$v" = 1VSCDEM0000000001 ] && extra="$work/ids.jsonl"
    "$vsoc" replay -q --no-progress --no-playbooks --vin "$v" $rules_opt "$work/$v.log" \
      $extra >>"$work/replay.jsonl" || fail "vsoc replay failed"
  done
  jq -r .finding_info.uid "$work/replay.jsonl" | sort >"$work/replay.ids"
  [ -s "$work/replay.ids" ] || fail "vsoc replay raised no alert: the test would prove nothing"
}

# Splits events.tsv into part1.tsv and part2.tsv at 2.1 s of event time: inside vehicle 2's
# fuzzing window (2 s wide, from 2.0 s) and vehicle 3's brute force (from 1 s).
split_events() {
  awk -F'\t' -v cut=1764064802.1 '{
      t = 0
      if (match($2, /^\([0-9.]+\)/)) t = substr($2, 2, RLENGTH - 2)
      else if (match($2, /"ts":[0-9.]+/)) t = substr($2, 6, RLENGTH - 5)
      print > (t + 0 < cut ? "'"$work"'/part1.tsv" : "'"$work"'/part2.tsv")
    }' "$work/events.tsv"
}

# One SecOC failure on each of six vehicles, 10 s apart from T0 (the fleet rule
# vsoc.fleet.secoc-failures-fleet-wide wants five): FILE T0 FRESHNESS0.
secoc_failures() {
  : >"$1"
  for i in 1 2 3 4 5 6; do
    vin=WVWZZZ1JZXW10000$i
    printf '%s\t{"vin":"%s","ts":%d.0,"type":"secoc.verification_failed","ecu":"BCM","can_id":291,"freshness":%d}\n' \
      "$vin" "$vin" $(($2 + 10 * i)) $(($3 + i)) >>"$1"
  done
}

produce() { # FILE
  timeout 60 kcat -P -b "$brokers" -t vsoc.events -K $'\t' -z snappy <"$1" ||
    fail "kcat could not produce $1"
}

config() { # NAME EXTRA...
  local name=$1
  shift
  cat >"$work/$name.yaml" <<EOF
instance: $name
workers: 2
log:
  level: info
kafka:
  brokers: "$brokers"
  group: vsoc-test
  topics:
    events: [vsoc.events]
    alerts: vsoc.alerts
  properties:
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "500"
  commit_interval: 100ms
store:
  sqlite: $work/$name.db
http:
  listen: 127.0.0.1:0
response:
  enabled: false
$(printf '%s\n' "$@")
EOF
}

start_serve() { # CONFIG [ERRFILE]
  local err=${2:-$work/serve.err} before
  touch "$err"
  before=$(grep -c '"event":"start"' "$err" || true)
  "$vsoc" serve -c "$work/$1.yaml" 2>>"$err" &
  serve_pid=$!
  port=
  for _ in $(seq 150); do
    if [ "$(grep -c '"event":"start"' "$err" || true)" -gt "$before" ]; then
      port=$(grep -o '"event":"start".*http 127.0.0.1:[0-9]*' "$err" | tail -n 1 |
               grep -o '[0-9]*$' || true)
    fi
    [ -n "$port" ] && break
    kill -0 "$serve_pid" 2>/dev/null || fail "vsoc serve exited before it started"
    sleep 0.1
  done
  [ -n "$port" ] || fail "vsoc serve did not start within 15 s"
}

metric() { # NAME (sum over label sets); fails the test when /metrics does not answer
  local text
  text=$(curl -sf --max-time 10 "http://127.0.0.1:$port/metrics") ||
    fail "GET /metrics on port $port did not answer"
  awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d\n", s }' \
    <<<"$text"
}

# Waits until the service has processed want events (from its metrics) and every epoch
# is committed (lag 0), within timeout seconds.
wait_events() { # WANT TIMEOUT
  local want=$1 end=$((SECONDS + $2)) got=0 lag=1
  while [ $SECONDS -lt $end ]; do
    got=$(metric vsoc_events_total)
    lag=$(metric vsoc_consumer_lag)
    [ "$got" -ge "$want" ] && [ "$lag" -eq 0 ] && return 0
    kill -0 "$serve_pid" 2>/dev/null || fail "vsoc serve died"
    sleep 0.2
  done
  fail "vsoc serve processed $got of $want events (lag $lag) within $2 s"
}

alerts_topic() { # OUTFILE
  timeout 30 kcat -C -b "$brokers" -t vsoc.alerts -o beginning -e -q >"$1" ||
    fail "kcat could not read the alerts topic"
}

# Waits until the alerts topic holds every id vsoc replay gave (at least once), or timeout
# seconds pass; leaves the topic in OUTFILE and its distinct ids in OUTFILE.ids. Counters
# alone cannot say when a service that read messages again (after a crash or an outage) is
# done: it counts those events twice.
wait_alert_ids() { # OUTFILE TIMEOUT
  local end=$((SECONDS + $2))
  while :; do
    alerts_topic "$1"
    jq -r .finding_info.uid "$1" | sort -u >"$1.ids"
    comm -23 "$work/replay.ids" "$1.ids" | grep -q . || return 0
    [ $SECONDS -lt $end ] || return 0 # the caller's diff says what is missing
    kill -0 "$serve_pid" 2>/dev/null || return 0
    sleep 1
  done
}

# With instance a running (serve_pid, port): starts b in the same group and waits until the
# two split the four partitions; sets port_a, port_b, serve2_pid (b), serve_pid stays a's.
start_second() {
  port_a=$port
  pid_a=$serve_pid
  serve2_pid=$pid_a # until b is up, cleanup finds a here and b in serve_pid
  start_serve b "$work/serve2.err"
  port_b=$port
  serve2_pid=$serve_pid
  serve_pid=$pid_a
  for _ in $(seq 300); do
    pa=$(port=$port_a metric vsoc_partitions_assigned)
    pb=$(port=$port_b metric vsoc_partitions_assigned)
    [ "$pa" -gt 0 ] && [ "$pb" -gt 0 ] && [ $((pa + pb)) -eq 4 ] && break
    sleep 0.1
  done
  [ "$pa" -gt 0 ] && [ "$pb" -gt 0 ] && [ $((pa + pb)) -eq 4 ] ||
    fail "the instances did not split the 4 partitions (a: $pa, b: $pb)"
}

stop_serve() {
  kill -TERM "$serve_pid"
  local rc=0
  # Bounded: a service that does not stop fails the test here, not at CTest's timeout
  # (which would leave the servers running).
  for _ in $(seq 600); do
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$serve_pid" 2>/dev/null && fail "vsoc serve did not stop within 60 s of SIGTERM"
  wait "$serve_pid" || rc=$?
  serve_pid=
  [ $rc -eq 0 ] || fail "vsoc serve exited $rc on SIGTERM, expected 0"
}

rules_opt=
case $t in
parity | restart)
  start_mock
  make_inputs
  replay_ids
  produce "$work/events.tsv"
  config a
  start_serve a
  wait_events "$total" 120
  sleep 0.5
  alerts_topic "$work/topic.jsonl"
  jq -r .finding_info.uid "$work/topic.jsonl" | sort >"$work/topic.ids"
  diff -u "$work/replay.ids" "$work/topic.ids" >"$work/diff" ||
    fail "alert ids on the topic differ from vsoc replay's: $(head -20 "$work/diff")"
  # The documents too, but for where the evidence came from (a file and its line in
  # replay, kafka:<topic>/<partition> and the offset + 1 in the service).
  strip='del(.evidences[].data.event.source, .evidences[].data.event.line)'
  jq -c "$strip" "$work/replay.jsonl" | sort >"$work/a"
  jq -c "$strip" "$work/topic.jsonl" | sort >"$work/b"
  cmp -s "$work/a" "$work/b" ||
    fail "alert documents on the topic differ from vsoc replay's: $(diff "$work/a" "$work/b" | head -4 | cut -c1-400)"
  jq -r '.evidences[].data.event.source' "$work/topic.jsonl" | grep -qv '^kafka:vsoc.events/[0-3]$' &&
    fail "an alert's evidence does not name its partition"
  # Every alert is keyed by its vehicle.
  timeout 30 kcat -C -b "$brokers" -t vsoc.alerts -o beginning -e -q -f '%k\n' |
    sort -u >"$work/keys"
  [ "$(cat "$work/keys")" = "$(jq -r .vehicle.vin "$work/topic.jsonl" | sort -u)" ] ||
    fail "alert keys are not the alerts' vehicles"
  n=$(wc -l <"$work/topic.ids")
  [ "$(metric vsoc_alerts_published_total)" -eq "$n" ] || fail "published metric is not $n"
  stored=$(sqlite3 "$work/a.db" 'select count(*) from alerts')
  [ "$stored" -eq "$n" ] || fail "the store holds $stored alerts, expected $n"
  if [ "$t" = restart ]; then
    stop_serve
    grep -q '"event":"stopped"' "$work/serve.err" || fail "no 'stopped' log line"
    start_serve a
    sleep 8 # a rejoin; nothing must be read again
    [ "$(metric vsoc_events_total)" -eq 0 ] ||
      fail "after a clean stop, the restart read $(metric vsoc_events_total) events again"
    stop_serve
    alerts_topic "$work/topic2.jsonl"
    [ "$(wc -l <"$work/topic2.jsonl")" -eq "$n" ] || fail "the restart published alerts again"
  fi
  echo "ok: $total events, $n alerts, ids and documents equal to vsoc replay's"
  ;;
kill)
  start_mock
  make_inputs
  replay_ids
  # Part 1 ends at 2.1 s of event time, inside vehicle 2's fuzzing window (2 s wide, from
  # 2.0 s): the first run sees part of it, is killed after its checkpoint, and the restart
  # must finish the window from the restored state to give the same alert id.
  split_events
  n1=$(wc -l <"$work/part1.tsv")
  produce "$work/part1.tsv"
  config a
  start_serve a
  wait_events "$n1" 120
  for _ in $(seq 100); do
    [ "$(metric 'vsoc_offset_commits_total{result="ok"}')" -gt 0 ] && break
    sleep 0.05
  done
  sleep 0.5 # a checkpoint after the last event: the commit interval is 100 ms
  kill -KILL "$serve_pid"
  wait "$serve_pid" 2>/dev/null || true
  serve_pid=
  echo "kill -9 after part 1 ($n1 events), its checkpoint written" >&2
  produce "$work/part2.tsv"
  # Then killed twice more while it reads part 2: between checkpoints, alerts in flight.
  for k in 1 2; do
    start_serve a
    for _ in $(seq 400); do
      [ "$(metric vsoc_events_total)" -ge $((total / 5)) ] && break
      sleep 0.02
    done
    kill -KILL "$serve_pid"
    wait "$serve_pid" 2>/dev/null || true
    serve_pid=
    echo "kill -9 number $((k + 1)), in the middle of part 2" >&2
  done
  start_serve a
  # It reads again from the last checkpoint, up to the end.
  wait_events 1 120
  wait_alert_ids "$work/topic.jsonl" 120
  cp "$work/topic.jsonl.ids" "$work/topic.ids"
  diff -u "$work/replay.ids" "$work/topic.ids" >"$work/diff" ||
    fail "after kill -9 and restart the alert ids differ from vsoc replay's: $(head -20 "$work/diff")"
  stored=$(sqlite3 "$work/a.db" 'select count(*) from alerts')
  [ "$stored" -eq "$(wc -l <"$work/replay.ids")" ] ||
    fail "the store holds $stored alerts, expected $(wc -l <"$work/replay.ids")"
  grep -q 'engine state restored for [1-9][0-9]* vehicle' "$work/serve.err" ||
    fail "no restart restored engine state from the store's checkpoint"
  stop_serve
  echo "ok: three kill -9 and restarts: $(wc -l <"$work/topic.jsonl") alerts published," \
    "$(wc -l <"$work/topic.ids") distinct, equal to vsoc replay's"
  ;;
reload)
  start_mock
  mkdir -p "$work/rules"
  cp -r "$src/rules/can" "$work/rules/"
  config a "rules: [$work/rules]"
  start_serve a
  # A bad rule: the reload is refused and the running set stays.
  printf 'title: broken\nid: test.broken\nlevel: high\nlogsource: {product: vehicle, category: can}\ndetection:\n  sel:\n    can.id|contians: 1\n  condition: sel\n' \
    >"$work/rules/broken.yml"
  code=$(curl -s -o "$work/reload.out" -w '%{http_code}' -X POST "http://127.0.0.1:$port/-/reload")
  [ "$code" = 500 ] || fail "a bad reload answered $code, expected 500: $(cat "$work/reload.out")"
  grep -q "broken.yml:7:5: unknown modifier" "$work/reload.out" ||
    fail "the reload answer does not locate the error: $(cat "$work/reload.out")"
  grep -q '"event":"reload.failed"' "$work/serve.err" || fail "no reload.failed log line"
  [ "$(metric 'vsoc_reloads_total{result="error"}')" -eq 1 ] || fail "reload error not counted"
  [ "$(metric vsoc_ruleset_generation)" -eq 1 ] || fail "the generation changed"
  # The old rules still alert.
  "$gen" --seconds 4 --seed 5 --attack fuzz@1+2 | sed 's/^/WVWZZZ1JZXW000009\t/' >"$work/f.tsv"
  produce "$work/f.tsv"
  wait_events "$(wc -l <"$work/f.tsv")" 60
  [ "$(metric vsoc_alerts_total)" -gt 0 ] || fail "the running rules raised nothing"
  # A good reload replaces the set.
  rm "$work/rules/broken.yml"
  code=$(curl -s -o "$work/reload.out" -w '%{http_code}' -X POST "http://127.0.0.1:$port/-/reload")
  [ "$code" = 200 ] || fail "a good reload answered $code: $(cat "$work/reload.out")"
  [ "$(metric vsoc_ruleset_generation)" -eq 2 ] || fail "the generation is not 2"
  kill -HUP "$serve_pid"
  for _ in $(seq 50); do
    [ "$(metric vsoc_ruleset_generation)" -eq 3 ] && break
    sleep 0.1
  done
  [ "$(metric vsoc_ruleset_generation)" -eq 3 ] || fail "SIGHUP did not reload"
  stop_serve
  echo "ok: bad reload refused and located, good reload and SIGHUP applied"
  ;;
broker-down)
  start_mock
  make_inputs
  replay_ids
  head -n 20000 "$work/events.tsv" >"$work/first.tsv"
  tail -n +20001 "$work/events.tsv" >"$work/rest.tsv"
  produce "$work/first.tsv"
  config a
  start_serve a
  wait_events 20000 60
  kill -USR1 "$mock_pid" # every broker down
  sleep 20
  kill -0 "$serve_pid" 2>/dev/null || fail "vsoc serve died while the brokers were down"
  kill -USR2 "$mock_pid" # back
  produce "$work/rest.tsv"
  wait_events "$total" 90
  wait_alert_ids "$work/topic.jsonl" 90
  cp "$work/topic.jsonl.ids" "$work/topic.ids"
  diff -u "$work/replay.ids" "$work/topic.ids" >"$work/diff" ||
    fail "after the brokers' outage the alert ids differ: $(head -20 "$work/diff")"
  stop_serve
  echo "ok: 20 s without brokers, nothing lost"
  ;;
bad-input)
  start_mock
  {
    printf 'WVWZZZ1JZXW000007\t(1764064800.000754) can0 0CFF0103#090002CBFFFF340C\n'
    printf 'WVWZZZ1JZXW000007\tthis is not a frame\n'
    printf 'WVWZZZ1JZXW000008\t{"vin":"SOMEONEELSE","ts":1,"type":"x"}\n'
    printf 'WVWZZZ1JZXW000007\t(1764064800.001754) can0 0CFF0103#090002CBFFFF340C\n'
  } >"$work/bad.tsv"
  config a
  start_serve a
  produce "$work/bad.tsv"
  wait_events 2 60
  [ "$(metric vsoc_events_malformed_total)" -eq 2 ] || fail "malformed messages not counted"
  grep -q 'vsoc.events/[0-9]*@[0-9]*: ' "$work/serve.err" ||
    fail "a malformed message was not logged with topic/partition@offset"
  grep -q "is not the message key" "$work/serve.err" || fail "a vin/key mismatch was not said"
  stop_serve
  echo "ok: malformed messages counted and located"
  ;;
check)
  out=$("$vsoc" serve -c "$src/samples/vsoc.yaml" --check) || fail "--check refused the sample"
  [[ $out == *"configuration good"* ]] || fail "--check said: $out"
  "$vsoc" serve --config-sample | cmp -s - "$src/samples/vsoc.yaml" ||
    fail "--config-sample differs from samples/vsoc.yaml"
  mkdir -p "$work/rules"
  printf 'title: t\nid: test.t\nlevel: high\nlogsource: {product: vehicle, category: can}\ndetection:\n  sel:\n    can.id|contians: 1\n  condition: sel\n' \
    >"$work/rules/t.yml"
  printf 'kafka:\n  brokers: "127.0.0.1:1"\n  groop: x\nworkers: many\nrules: [rules]\n' >"$work/bad.yaml"
  rc=0
  "$vsoc" serve -c "$work/bad.yaml" --check >"$work/out" 2>"$work/err" || rc=$?
  [ $rc -eq 2 ] || fail "a bad configuration exited $rc, expected 2"
  grep -q "bad.yaml:3:3: error: unknown key 'kafka.groop'" "$work/err" ||
    fail "the unknown key was not located: $(cat "$work/err")"
  grep -q "bad.yaml:4:10: error" "$work/err" || fail "the bad integer was not located: $(cat "$work/err")"
  printf 'kafka:\n  brokers: "127.0.0.1:1"\nrules: [rules]\nstore:\n  sqlite: %s\n' "$work/x.db" \
    >"$work/badrule.yaml"
  rc=0
  "$vsoc" serve -c "$work/badrule.yaml" --check >"$work/out" 2>"$work/err" || rc=$?
  [ $rc -eq 2 ] || fail "a bad rule exited $rc under --check, expected 2"
  grep -q "t.yml:7:5: unknown modifier 'contians'" "$work/err" ||
    fail "the bad rule was not located: $(cat "$work/err")"
  echo "ok: --check and --config-sample"
  ;;
fleet)
  # Waits until the two instances together matched WANT events, and exactly that many.
  both_matched() {
    for _ in $(seq 300); do
      ea=$(port=$port_a metric vsoc_events_total)
      eb=$(port=$port_b metric vsoc_events_total)
      [ $((ea + eb)) -ge "$1" ] && break
      sleep 0.1
    done
    [ $((ea + eb)) -eq "$1" ] || fail "the instances matched $ea + $eb events, expected $1"
  }
  start_mock
  start_redis
  # One SecOC failure on each of six vehicles, 10 s apart: the fleet rule wants five.
  secoc_failures "$work/fleet.tsv" 1764064800 1000
  config a "redis:" "  url: redis://127.0.0.1:$redis_port" "  timeout: 200ms"
  config b "redis:" "  url: redis://127.0.0.1:$redis_port" "  timeout: 200ms"
  start_serve a
  start_second
  produce "$work/fleet.tsv"
  both_matched 6
  ha=$(port=$port_a metric vsoc_fleet_hits_total)
  hb=$(port=$port_b metric vsoc_fleet_hits_total)
  [ "$ha" -ge 1 ] && [ "$hb" -ge 1 ] && [ "$ha" -lt 5 ] && [ "$hb" -lt 5 ] ||
    fail "each instance must see some but fewer than 5 vehicles to prove sharing (a: $ha, b: $hb)"
  sleep 1
  alerts_topic "$work/topic.jsonl"
  n=$(jq -r 'select(.finding_info.analytic.uid == "vsoc.fleet.secoc-failures-fleet-wide") | .finding_info.uid' \
        "$work/topic.jsonl" | sort -u | wc -l)
  [ "$n" -eq 1 ] || fail "expected one fleet alert between the two instances, got $n"
  count=$(jq -r 'select(.finding_info.analytic.uid == "vsoc.fleet.secoc-failures-fleet-wide") | .count' \
            "$work/topic.jsonl" | head -n 1)
  [ "$count" -eq 5 ] || fail "the fleet alert counts $count vehicles, expected 5 (the fifth raised it)"
  fa=$(port=$port_a metric vsoc_fleet_alerts_total)
  fb=$(port=$port_b metric vsoc_fleet_alerts_total)
  [ $((fa + fb)) -eq 1 ] || fail "fleet alerts raised: a $fa, b $fb; expected one in all"
  # Redis goes away: both keep running on local state and say so.
  kill -KILL "$redis_pid"
  wait "$redis_pid" 2>/dev/null || true
  redis_pid=
  secoc_failures "$work/fleet2.tsv" 1764072000 2000
  produce "$work/fleet2.tsv"
  both_matched 12
  for p in $port_a $port_b; do
    [ "$(port=$p metric vsoc_redis_up)" -eq 0 ] || fail "vsoc_redis_up is not 0 on port $p"
  done
  [ $(($(port=$port_a metric vsoc_redis_fallbacks_total) + $(port=$port_b metric vsoc_redis_fallbacks_total))) -gt 0 ] ||
    fail "no fallback to local fleet state was counted"
  kill -0 "$pid_a" && kill -0 "$serve2_pid" || fail "an instance died when Redis went away"
  grep -q '"event":"redis.down"' "$work/serve.err" || fail "instance a did not log redis.down"
  stop_serve
  serve_pid=$serve2_pid
  serve2_pid=
  stop_serve
  echo "ok: two instances ($pa + $pb partitions, $ha + $hb vehicles) raised one fleet alert;" \
    "without Redis both ran on local state"
  ;;
fleet-kill)
  # One instance, no Redis: the fleet counter lives in the process. Three vehicles' failures
  # are read and checkpointed, the service is killed, the last three come after the
  # restart: the fifth vehicle must raise the fleet alert, which only a counter restored
  # from the checkpoint can see.
  start_mock
  secoc_failures "$work/all.tsv" 1764064800 1000
  head -n 3 "$work/all.tsv" >"$work/part1.tsv"
  tail -n 3 "$work/all.tsv" >"$work/part2.tsv"
  config a
  produce "$work/part1.tsv"
  start_serve a
  wait_events 3 120
  for _ in $(seq 100); do
    [ "$(metric 'vsoc_offset_commits_total{result="ok"}')" -gt 0 ] && break
    sleep 0.05
  done
  sleep 0.5 # a checkpoint after the last hit: the commit interval is 100 ms
  [ "$(sqlite3 "$work/a.db" "select count(*) from service_state where name = 'fleet'")" -eq 1 ] ||
    fail "no fleet counter in the store's checkpoint"
  kill -KILL "$serve_pid"
  wait "$serve_pid" 2>/dev/null || true
  serve_pid=
  produce "$work/part2.tsv"
  start_serve a
  wait_events 3 120
  sleep 1
  alerts_topic "$work/topic.jsonl"
  rule=vsoc.fleet.secoc-failures-fleet-wide
  n=$(jq -r "select(.finding_info.analytic.uid == \"$rule\") | .finding_info.uid" "$work/topic.jsonl" |
        sort -u | wc -l)
  [ "$n" -eq 1 ] || fail "expected one fleet alert across the restart, got $n"
  count=$(jq -r "select(.finding_info.analytic.uid == \"$rule\") | .count" "$work/topic.jsonl" | head -n 1)
  [ "$count" -eq 5 ] || fail "the fleet alert counts $count vehicles, expected 5"
  # Counted with vehicles from before the crash. (Which of the last vehicles raised it, and
  # so its id, depends on the order the partitions' hits meet in, as in the fleet case.)
  before=$(jq -r "select(.finding_info.analytic.uid == \"$rule\") | .vehicle.fleet.vins[]" \
             "$work/topic.jsonl" | grep -c 'WVWZZZ1JZXW10000[123]' || true)
  [ "$before" -ge 2 ] || fail "the fleet alert names $before vehicles from before the crash"
  grep -q '"event":"fleet.not_restored"' "$work/serve.err" && fail "the fleet counter was refused"
  stop_serve
  echo "ok: the fleet counter survived kill -9: one fleet alert of 5 vehicles"
  ;;
handoff)
  start_mock
  start_redis
  make_inputs
  replay_ids
  # Part 1 ends inside open windows (as in kill): vehicle 2's fuzzing, vehicle 3's brute
  # force. Instance a reads it alone; b joins and takes some partitions, then a leaves and
  # b takes the rest. Every vehicle thus changes owner with windows open, and only state
  # handed over with its partition gives the alerts (and ids) a replay gives.
  split_events
  n1=$(wc -l <"$work/part1.tsv")
  # Generous Redis timeouts: a loaded machine must not turn the handoff into a failure.
  config a "redis:" "  url: redis://127.0.0.1:$redis_port" "  timeout: 2s"
  config b "redis:" "  url: redis://127.0.0.1:$redis_port" "  timeout: 2s"
  produce "$work/part1.tsv"
  start_serve a
  wait_events "$n1" 120
  start_second
  grep -q '"event":"kafka.handoff_given"' "$work/serve.err" ||
    fail "a gave b partitions without handing over their state"
  stop_serve # a leaves: b takes every partition, with a's state
  serve_pid=$serve2_pid
  serve2_pid=
  port=$port_b
  for _ in $(seq 300); do
    [ "$(metric vsoc_partitions_assigned)" -eq 4 ] && break
    sleep 0.1
  done
  [ "$(metric vsoc_partitions_assigned)" -eq 4 ] || fail "b did not take every partition"
  # awk alone reads the logs: a grep that finds nothing would end the script (pipefail)
  # without saying why.
  given=$(awk '/"event":"kafka.handoff_given"/ && match($0, /state of [0-9]+ vehicle/) {
                 split(substr($0, RSTART, RLENGTH), w, " "); s += w[3] } END { print s + 0 }' \
            "$work/serve.err")
  taken=$(awk '/"event":"kafka.handoff_taken"/ && match($0, /state of [0-9]+ vehicle/) {
                 split(substr($0, RSTART, RLENGTH), w, " "); s += w[3] } END { print s + 0 }' \
            "$work/serve2.err")
  [ "$given" -ge 4 ] || fail "a handed over the state of $given vehicles, expected all 4"
  [ "$taken" -eq "$given" ] || fail "b took the state of $taken vehicles, a gave $given"
  produce "$work/part2.tsv"
  wait_alert_ids "$work/topic.jsonl" 120
  cp "$work/topic.jsonl.ids" "$work/topic.ids"
  diff -u "$work/replay.ids" "$work/topic.ids" >"$work/diff" ||
    fail "after two rebalances the alert ids differ from vsoc replay's: $(head -20 "$work/diff")"
  dups=$(jq -r .finding_info.uid "$work/topic.jsonl" | sort | uniq -d | wc -l)
  [ "$dups" -eq 0 ] || fail "$dups alerts were published twice"
  stop_serve
  echo "ok: two rebalances with open windows, the state of $given vehicles handed over;" \
    "$(wc -l <"$work/topic.ids") alerts, equal to vsoc replay's"
  ;;
commands)
  command -v sqlite3 >/dev/null || fail "sqlite3 is not installed"
  agent=${VSOC_AGENT:?VSOC_AGENT is not set}
  start_mock vsoc.events:2 vsoc.alerts:1 vsoc.commands:1 vsoc.acks:1
  VIN=1VSCDEM0000000001
  mkdir -p "$work/keys" "$work/vkeys" "$work/pb"
  "$vsoc" keygen --out "$work/keys" --key-id vsoc-soc >/dev/null || fail "keygen (SOC)"
  "$vsoc" keygen --out "$work/vkeys" --key-id "$VIN" >/dev/null || fail "keygen (vehicle)"
  # One step that needs nobody's approval, on a rule the sample truck fires once.
  printf '%s\n' 'id: logs-on-bad-dlc' 'title: Collect logs after a CAN frame with a bad DLC' \
    'trigger: {rules: ["vsoc.can.invalid-dlc"], min_level: low}' 'steps:' '  - id: logs' \
    '    action: collect_logs' '    args: {minutes: 10}' '    approval: auto' \
    '    ack_timeout: 5s' '    retries: 10' '    expires: 10m' '  - id: isolate' \
    '    action: quarantine' '    args: {segment: telematics, mode: block_external}' \
    '    ttl: 1h' '    approval: required' '    approval_timeout: 10m' \
    '    ack_timeout: 5s' '    expires: 10m' >"$work/pb/logs.yml"
  printf '%s\n' 'instance: c' 'workers: 2' 'kafka:' "  brokers: \"$brokers\"" \
    '  group: vsoc-test' '  topics:' '    events: [vsoc.events]' '    alerts: vsoc.alerts' \
    '    commands: vsoc.commands' '    acks: vsoc.acks' '  properties:' \
    '    session.timeout.ms: "6000"' '    heartbeat.interval.ms: "500"' \
    '  commit_interval: 100ms' "playbooks: [$work/pb]" 'store:' "  sqlite: $work/c.db" \
    'http:' '  listen: 127.0.0.1:0' 'response:' '  enabled: true' \
    "  key: $work/keys/vsoc-soc.key" "  vehicle_keys: $work/vkeys" >"$work/c.yaml"
  sed "s/^/$VIN\t/" "$src/samples/demo.log" >"$work/events.tsv"
  produce "$work/events.tsv"
  cmds() { "$vsoc" commands list --db "$work/c.db" --json; }
  cmd_state() { cmds | jq -r "select(.cmd_id == \"$cmd\") | .$1"; }
  envelopes() { # OUTFILE: every message on the commands topic, KEY<TAB>VALUE
    timeout 30 kcat -C -b "$brokers" -t vsoc.commands -o beginning -e -q -f '%k\t%s\n' >"$1" ||
      fail "kcat could not read the commands topic"
  }
  start_serve c
  cmd=
  for _ in $(seq 300); do
    cmd=$(cmds 2>/dev/null | jq -r 'select(.state == "sent") | .cmd_id' | head -n 1)
    [ -n "$cmd" ] && break
    kill -0 "$serve_pid" 2>/dev/null || fail "vsoc serve died"
    sleep 0.1
  done
  [ -n "$cmd" ] || fail "no command was sent within 30 s: $(cmds 2>&1 | head -3)"
  # The store says sent before the broker has it (persist, then send): wait for the topic.
  for _ in $(seq 40); do
    envelopes "$work/env1"
    [ -s "$work/env1" ] && break
    sleep 0.25
  done
  # Sent and stored, no ack yet: the service dies (before its ack timeout resends).
  kill -KILL "$serve_pid"
  wait "$serve_pid" 2>/dev/null || true
  serve_pid=
  seq1=$(cmd_state seq)
  envelopes "$work/env1"
  [ "$(wc -l <"$work/env1")" -eq 1 ] || fail "expected 1 command on the topic, got $(wc -l <"$work/env1")"
  [ "$(cut -f1 "$work/env1")" = "$VIN" ] || fail "the command is not keyed by the VIN"
  cut -f2- "$work/env1" >"$work/sent1.json"
  [ "$(jq -r .cmd_id "$work/sent1.json")" = "$cmd" ] || fail "the topic's command is not the stored one"
  # The restarted service resends the unanswered command after its ack timeout (5 s).
  start_serve c
  for _ in $(seq 60); do
    envelopes "$work/env2"
    [ "$(wc -l <"$work/env2")" -ge 2 ] && break
    sleep 0.5
  done
  [ "$(wc -l <"$work/env2")" -ge 2 ] || fail "the restarted service did not resend the command"
  tail -n 1 "$work/env2" | cut -f2- >"$work/sent2.json"
  [ "$(jq -r .cmd_id "$work/sent2.json")" = "$cmd" ] || fail "the resend is a new command"
  [ "$(jq -r .seq "$work/sent2.json")" = "$seq1" ] || fail "the resend has another seq"
  [ "$(cmds | wc -l)" -eq 1 ] || fail "$(cmds | wc -l) commands in the store, expected the one"
  # One responder per store: vsoc respond on the service's store refuses to start.
  rc=0
  "$vsoc" respond --db "$work/c.db" --key "$work/keys/vsoc-soc.key" --vehicle-keys "$work/vkeys" \
    --kafka "$brokers" --max-runtime 5s 2>"$work/respond.err" || rc=$?
  [ "$rc" -eq 1 ] || fail "vsoc respond on the service's store exited $rc, expected 1"
  grep -q "delivered by another process (vsoc serve, pid $serve_pid)" "$work/respond.err" ||
    fail "vsoc respond did not say who delivers the store's commands: $(cat "$work/respond.err")"
  # An ack not signed by the vehicle's key (here by the SOC's) is recorded and refused: the
  # command stays sent.
  "$agent" handle --vin "$VIN" --trust "$work/keys/vsoc-soc.pub" \
    --signing-key "$work/keys/vsoc-soc.key" --state-dir "$work/state-forged" --speed 0 \
    "$work/sent1.json" >"$work/forged.json" 2>>"$work/agent.err" || fail "vsoc-agent handle failed"
  timeout 20 kcat -b "$brokers" -P -t vsoc.acks -k "$VIN" "$work/forged.json" ||
    fail "kcat could not produce the forged ack"
  for _ in $(seq 150); do
    grep '"event":"ack"' "$work/serve.err" | grep -q "${cmd:0:8}" && break
    sleep 0.1
  done
  grep '"event":"ack"' "$work/serve.err" | grep "${cmd:0:8}" | grep -q 'bad_signature\|unknown_key' ||
    fail "the forged ack was not refused: $(grep '"event":"ack' "$work/serve.err" | tail -n 2)"
  [ "$(cmd_state state)" = sent ] || fail "a forged ack moved the command to $(cmd_state state)"
  # The platform delivers both copies; the vehicle applies the command once and acks each.
  for n in 1 2; do
    "$agent" handle --vin "$VIN" --trust "$work/keys/vsoc-soc.pub" \
      --signing-key "$work/vkeys/$VIN.key" --state-dir "$work/state" --speed 0 \
      "$work/sent$n.json" >"$work/ack$n.json" 2>>"$work/agent.err" || fail "vsoc-agent handle failed"
    timeout 20 kcat -b "$brokers" -P -t vsoc.acks -k "$VIN" "$work/ack$n.json" ||
      fail "kcat could not produce the ack"
  done
  grep -q '"status":"applied"' "$work/ack1.json" || fail "the vehicle did not apply it: $(cat "$work/ack1.json")"
  for _ in $(seq 150); do
    [ "$(cmd_state state)" = acked ] && break
    sleep 0.1
  done
  [ "$(cmd_state state)" = acked ] || fail "the command is $(cmd_state state), not acked"
  applied=$("$agent" status --state-dir "$work/state" | jq '.counters.applied')
  [ "$applied" = 1 ] || fail "the vehicle applied the command $applied times"
  n=$(grep '"event":"command.acked"' "$work/serve.err" | grep -c "${cmd:0:8}" || true)
  [ "$n" -eq 1 ] || fail "command.acked logged $n times, expected once"
  # The next step waits for a person; approved in the store, the running service sends it.
  cmd2=
  for _ in $(seq 100); do
    cmd2=$(cmds | jq -r 'select(.state == "pending_approval") | .cmd_id' | head -n 1)
    [ -n "$cmd2" ] && break
    sleep 0.1
  done
  [ -n "$cmd2" ] || fail "the second step is not waiting for approval"
  "$vsoc" commands approve "$cmd2" --by alice --db "$work/c.db" >/dev/null ||
    fail "vsoc commands approve failed while the service runs"
  for _ in $(seq 60); do
    envelopes "$work/env3"
    grep -q "$cmd2" "$work/env3" && break
    sleep 0.5
  done
  grep "$cmd2" "$work/env3" | tail -n 1 | cut -f2- >"$work/sent3.json"
  [ -s "$work/sent3.json" ] || fail "the approved command was not sent"
  # It reaches the vehicle after it expired (the vehicle's clock an hour ahead): the vehicle
  # refuses it with a signed ack that says why, and the command ends rejected.
  "$agent" handle --vin "$VIN" --trust "$work/keys/vsoc-soc.pub" \
    --signing-key "$work/vkeys/$VIN.key" --state-dir "$work/state" --speed 0 \
    --now "$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)" \
    "$work/sent3.json" >"$work/ack3.json" 2>>"$work/agent.err" || true
  grep -q '"status":"rejected".*expired\|expired.*"status":"rejected"' "$work/ack3.json" ||
    fail "the vehicle did not refuse the command: $(cat "$work/ack3.json")"
  timeout 20 kcat -b "$brokers" -P -t vsoc.acks -k "$VIN" "$work/ack3.json" ||
    fail "kcat could not produce the ack"
  cmd=$cmd2
  for _ in $(seq 150); do
    [ "$(cmd_state state)" = rejected ] && break
    sleep 0.1
  done
  [ "$(cmd_state state)" = rejected ] ||
    fail "the refused command is $(cmd_state state), not rejected"
  applied=$("$agent" status --state-dir "$work/state" | jq '.counters.applied')
  [ "$applied" = 1 ] || fail "the vehicle applied $applied commands, expected only the first"
  stop_serve
  # The lock file is never followed through a symlink (the holder line would overwrite
  # its target).
  echo precious >"$work/victim"
  rm -f "$work/c.db.responder"
  ln -s "$work/victim" "$work/c.db.responder"
  rc=0
  "$vsoc" respond --db "$work/c.db" --key "$work/keys/vsoc-soc.key" --vehicle-keys "$work/vkeys" \
    --kafka "$brokers" --max-runtime 2s 2>"$work/respond.err" || rc=$?
  [ "$rc" -eq 1 ] && grep -q 'symbolic link, refused' "$work/respond.err" ||
    fail "a symlinked responder lock was not refused (exit $rc): $(cat "$work/respond.err")"
  [ "$(cat "$work/victim")" = precious ] || fail "the lock's symlink target was written"
  "$vsoc" audit verify --db "$work/c.db" >/dev/null || fail "the audit chain does not verify"
  echo "ok: a command sent, resent unchanged after kill -9 (seq $seq1), a forged ack refused," \
    "applied once, acked; a second responder refused; an approved one refused (expired) by the vehicle"
  ;;
*)
  fail "unknown case $t"
  ;;
esac
