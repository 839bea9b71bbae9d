#!/usr/bin/env bash
# bench/serve-bench.sh: `vsoc serve` end to end through a Kafka-protocol broker: how fast it
# reads a backlog next to kcat reading the same topic, and how long an event takes to become
# an alert at a steady produced rate.
#
#   bench/serve-bench.sh [BUILD_DIR]        (default ./build)
#
# It starts the test broker (kafka-mock, built with the tests: BUILD_DIR/tests/kafka-mock)
# on loopback and, in a temporary directory:
#
# 1. Throughput. vsoc-gen writes VSOC_BENCH_FRAMES CAN frames (default 2,000,000) of
#    VSOC_BENCH_VEHICLES vehicles (default 64; the first 8 with one attack each, so that
#    the default pack's rules fire); kcat produces them, keyed by VIN, to the
#    VSOC_BENCH_PARTITIONS partitions (default 8) of vsoc.events, the vehicles of a
#    partition interleaved in time order, compressed with zstd (the mock broker keeps at
#    most 5 MiB per partition; see docs/bench.md). Then, for each consumer setting
#    (librdkafka's defaults, and queued.min.messages raised), best of VSOC_BENCH_RUNS runs
#    (default 3):
#    - kcat -C from the beginning to the end of the topic into /dev/null, timed, less the
#      time kcat takes on an empty topic of as many partitions (start, metadata, exit);
#    - vsoc serve (2 workers, the default pack, alerts to vsoc.alerts, store in the
#      temporary directory, a new consumer group each run) from the beginning of the topic,
#      timed from its own counters: vsoc_events_total sampled every 20 ms on /metrics by
#      one curl process, the rate taken between the first sample that shows work done and
#      the last one before all of it was done, so that joining the group, starting and
#      stopping are not counted.
# 2. Latency. The default pack plus one rule that alerts on every frame of CAN ID 5AB with no
#    suppression; two vsoc-kafka-rate producers send, at a fixed rate, VSOC_BENCH_RATE
#    background frames/s (default 2,000, 8 vehicles, no attacks; batched over up to 10 ms)
#    and VSOC_BENCH_PROBE_RATE probe frames/s (default 100, ID 5AB, one vehicle, a sequence
#    number in the data; each sent alone, stamped with its send time) for 2 s of warm-up,
#    then VSOC_BENCH_SECONDS (default 20). Twice, each time with a new service on new
#    topics: with the service's Kafka settings as they are, then with linger.ms=0 and
#    fetch.wait.max.ms=1 in kafka.properties. p50/p99 over the measured part are read two
#    ways: from the service's histogram vsoc_event_to_alert_seconds (message timestamp to
#    the alert acknowledged by the broker; the difference of the buckets after and before,
#    interpolated inside the bucket), and per probe, from the alerts topic: the alert
#    message's timestamp (when vsoc handed it to its producer) less the probe message's
#    timestamp, matched by the sequence number in the alert's sample line.
#
# VSOC_BENCH_PARTS ("throughput latency") runs only the parts named; VSOC_BENCH_KEEP=1 keeps
# the temporary directory (configurations, logs, the samples, per-probe latencies).
#
# Nothing is pinned: the broker, the consumers and the producer share the machine's cores,
# as they would on one host. Needs kcat, curl and jq. docs/bench.md explains the figures.
set -euo pipefail
export LC_ALL=C # sort, join and awk agree on the order and on the decimal point

build=${1:-./build}
frames=${VSOC_BENCH_FRAMES:-2000000}
vehicles=${VSOC_BENCH_VEHICLES:-64}
partitions=${VSOC_BENCH_PARTITIONS:-8}
runs=${VSOC_BENCH_RUNS:-3}
bg_rate=${VSOC_BENCH_RATE:-2000}
probe_rate=${VSOC_BENCH_PROBE_RATE:-100}
lat_seconds=${VSOC_BENCH_SECONDS:-20}
parts=${VSOC_BENCH_PARTS:-throughput latency}
cpu=none # lib.sh: nothing is pinned here
interval_ms=20
probe_id=5AB
probe_vin=VSOCPROBE00000001
warm_s=2 # seconds of latency traffic before the measured part (left out of the figures)

die() {
    echo "serve-bench: $*" >&2
    exit 1
}

for v in frames vehicles partitions runs bg_rate probe_rate lat_seconds; do
    case ${!v} in '' | *[!0-9]* | 0) die "$v='${!v}' is not a positive number (VSOC_BENCH_*)" ;; esac
done
[ "$vehicles" -le 9999 ] || die "VSOC_BENCH_VEHICLES=$vehicles: at most 9999"
[ "$partitions" -le 64 ] || die "VSOC_BENCH_PARTITIONS=$partitions: at most 64"
[ $((frames / vehicles)) -ge 20000 ] ||
    die "VSOC_BENCH_FRAMES / VSOC_BENCH_VEHICLES is below 20,000 frames (10 s) a vehicle:" \
        "the attacks would not fit"
[ "$probe_rate" -le "$bg_rate" ] || die "VSOC_BENCH_PROBE_RATE must not exceed VSOC_BENCH_RATE"
for p in $parts; do
    case $p in throughput | latency) ;; *) die "VSOC_BENCH_PARTS: '$p' is not throughput or latency" ;; esac
done
part() { case " $parts " in *" $1 "*) return 0 ;; esac; return 1; }

bench_name=serve-bench
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
src=$(cd "$(dirname "$0")/.." && pwd)

mock=$build/tests/kafka-mock
[ -x "$mock" ] ||
    die "no kafka-mock in '$build/tests': build it with: cmake --build $build --target kafka-mock"
rate_prog=$(find_bin vsoc-kafka-rate) ||
    die "no vsoc-kafka-rate in '$build/bench': build it with: cmake --build $build --target vsoc-kafka-rate"
for t in kcat curl jq; do
    command -v "$t" >/dev/null 2>&1 || die "$t is not installed (apt-get install $t)"
done

mock_pid=
serve_pid=
sampler_pid=
bg_pid=
cleanup() {
    for p in $bg_pid $sampler_pid $serve_pid $mock_pid; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ -n "${VSOC_BENCH_KEEP:-}" ]; then
        echo "serve-bench: work directory kept: $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

# The broker: the throughput topic, an empty one of as many partitions (kcat's fixed cost),
# and topics of each latency run's own, so that no run reads another's messages.
"$mock" --brokers 3 --topic "vsoc.events:$partitions" --topic "vsoc.empty:$partitions" \
    --topic vsoc.alerts:2 --topic lat1.events:4 --topic lat1.alerts:2 \
    --topic lat2.events:4 --topic lat2.alerts:2 \
    --port-file "$tmp/port" >"$tmp/mock.out" 2>"$tmp/mock.err" &
mock_pid=$!
for _ in $(seq 100); do
    [ -s "$tmp/port" ] && break
    kill -0 "$mock_pid" 2>/dev/null || die "kafka-mock exited: $(cat "$tmp/mock.err")"
    sleep 0.1
done
[ -s "$tmp/port" ] || die "kafka-mock did not start within 10 s"
brokers=$(cat "$tmp/port")

# vsoc's consumer waits at most fetch.wait.max.ms=10 on the broker (connectors/kafka); kcat
# gets the same, or librdkafka's 500 ms would be in its exit time.
kcat_c=(kcat -C -b "$brokers" -o beginning -e -q -X fetch.wait.max.ms=10)
vin_of() { printf 'VSOCBENCH%08d' "$1"; }

# ---- the services ------------------------------------------------------------------------

# config NAME GROUP EVENTS ALERTS [YAML LINES UNDER kafka.properties] -- [TOP-LEVEL LINES]
config() {
    local name=$1 group=$2 events=$3 alerts=$4 props=() top=()
    shift 4
    while [ $# -gt 0 ] && [ "$1" != -- ]; do props+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    top=("$@")
    {
        echo "instance: bench"
        echo "workers: 2"
        echo "kafka:"
        echo "  brokers: \"$brokers\""
        echo "  group: $group"
        echo "  topics:"
        echo "    events: [$events]"
        echo "    alerts: $alerts"
        echo "  properties:"
        echo "    session.timeout.ms: \"6000\""
        echo "    heartbeat.interval.ms: \"500\""
        for p in "${props[@]}"; do echo "    $p"; done
        echo "store:"
        echo "  sqlite: $tmp/$name.db"
        echo "http:"
        echo "  listen: 127.0.0.1:0"
        echo "response:"
        echo "  enabled: false"
        for l in "${top[@]}"; do echo "$l"; done
    } >"$tmp/$name.yaml"
}

# Starts vsoc serve with a config; sets serve_pid and port (from its "start" log line).
start_serve() { # NAME
    : >"$tmp/$1.err"
    "$vsoc" serve -c "$tmp/$1.yaml" 2>"$tmp/$1.err" &
    serve_pid=$!
    port=
    for _ in $(seq 150); do
        port=$(grep -o '"event":"start".*http 127.0.0.1:[0-9]*' "$tmp/$1.err" |
            grep -o '[0-9]*$' || true)
        [ -n "$port" ] && break
        kill -0 "$serve_pid" 2>/dev/null || die "vsoc serve exited: $(tail -n 5 "$tmp/$1.err")"
        sleep 0.1
    done
    [ -n "$port" ] || die "vsoc serve did not start within 15 s: $(tail -n 5 "$tmp/$1.err")"
}

stop_serve() { # NAME
    kill -TERM "$serve_pid"
    local rc=0
    wait "$serve_pid" || rc=$?
    serve_pid=
    [ $rc -eq 0 ] || die "vsoc serve exited $rc on SIGTERM: $(tail -n 5 "$tmp/$1.err")"
}

metrics() { curl -sf --max-time 10 "http://127.0.0.1:$port/metrics"; }
# metric NAME: the sum over its label sets, from a page on stdin.
metric() { awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.0f\n", s }'; }

# The sampler: one curl process asks for /metrics every interval_ms on one kept-alive
# connection; --trace-time stamps each request it sends (time of day, microseconds) on
# stderr, and the bodies, cut down to the counters, go to stdout. One process, so that
# measuring costs next to nothing beside the service.
start_sampler() { # DIR
    : >"$1/samples"
    curl -sNv --trace-time --rate "$((1000 / interval_ms))/s" \
        -w 'SAMPLE %{url_effective}\n' "http://127.0.0.1:$port/metrics?s=[1-1000000]" \
        2>"$1/trace" > >(grep --line-buffered -E '^(vsoc_events_total|vsoc_events_malformed_total|SAMPLE)' \
            >"$1/samples") &
    sampler_pid=$!
}
stop_sampler() {
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=
}
# Messages handled (events + malformed) at the last complete sample.
sampled() { # DIR
    awk '/^vsoc_events/ { e += $2 } /^SAMPLE/ { last = e; e = 0 } END { printf "%.0f\n", last }' \
        "$1/samples"
}
# One line per sample: "N SECONDS HANDLED" (SECONDS: time of day the request was sent).
sample_table() { # DIR
    awk '/> GET \/metrics\?s=/ {
             split($1, t, ":"); s = t[1] * 3600 + t[2] * 60 + t[3]
             if (prev != "" && s < prev) s += 86400   # past midnight
             prev = s; n = $4; sub(/.*s=/, "", n); sent[n] = s }
         END { for (n in sent) printf "%s %.6f\n", n, sent[n] }' "$1/trace" | sort -n >"$1/sent"
    awk '/^vsoc_events/ { e += $2 } /^SAMPLE/ { n = $2; sub(/.*s=/, "", n); print n, e; e = 0 }' \
        "$1/samples" >"$1/counts"
    awk 'FILENAME == ARGV[1] { t[$1] = $2; next } ($1 in t) { print $1, t[$1], $2 }' "$1/sent" "$1/counts"
}

# CPU time a process has used so far, in seconds (user + system, from /proc).
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# Where a vsoc serve process's CPU time went, by thread: "main M, workers W1 + W2,
# librdkafka L, http H" in seconds (workers: the other threads named like the program).
threads_cpu() { # PID
    local t hz
    hz=$(getconf CLK_TCK)
    for t in /proc/"$1"/task/*; do
        printf '%s %s %s\n' "${t##*/}" "$(cat "$t/comm")" "$(awk '{ print $14 + $15 }' "$t/stat")"
    done | awk -v pid="$1" -v hz="$hz" '
        $1 == pid { main = $3; next }
        $2 ~ /^rdk:/ { rdk += $3; next }
        $2 ~ /^MHD/ { http += $3; next }
        { w = w sep sprintf("%.2f", $3 / hz); sep = " + " }
        END { printf "main thread %.2f, workers %s, librdkafka %.2f, http %.2f",
                  main / hz, w, rdk / hz, http / hz }'
}

# ---- 1. throughput -------------------------------------------------------------------------

throughput() {
    # One attack of each kind on the first 8 vehicles, from 2 s into their capture.
    local attacks=(dos@2+2 fuzz@2+2 uds-bruteforce@2+8 request-overload@2+2 address-claim@2+2
        tsc1@2+5 bad-dlc@2+2 uds-session@2+2)
    local per=$((frames / vehicles)) v p
    local total=$((per * vehicles))
    for ((v = 1; v <= vehicles; v++)); do
        local atk=()
        [ "$v" -le ${#attacks[@]} ] && atk=(--attack "${attacks[$((v - 1))]}")
        "$gen" --frames "$per" --seed $((100 + v)) "${atk[@]}" |
            sed "s/^/$(vin_of "$v")\t/" >"$tmp/v$v.tsv"
    done
    # Vehicle v goes to partition (v - 1) mod partitions, the vehicles of a partition
    # interleaved in time order as a gateway would send them.
    local bytes=0 files
    for ((p = 0; p < partitions; p++)); do
        files=()
        for ((v = p + 1; v <= vehicles; v += partitions)); do files+=("$tmp/v$v.tsv"); done
        sort -m -s -t '(' -k2,2n "${files[@]}" >"$tmp/p$p.tsv"
        bytes=$((bytes + $(wc -c <"$tmp/p$p.tsv")))
        kcat -P -b "$brokers" -t vsoc.events -p "$p" -K $'\t' -z zstd -X compression.level=9 \
            <"$tmp/p$p.tsv" || die "kcat could not produce partition $p"
        rm -f "$tmp/p$p.tsv"
    done
    rm -f "$tmp"/v*.tsv
    local got
    got=$("${kcat_c[@]}" -t vsoc.events | wc -l)
    [ "$got" -eq "$total" ] ||
        die "the broker holds $got of the $total frames produced: kafka-mock keeps at most" \
            "5 MiB per partition (of zstd batches here); raise VSOC_BENCH_PARTITIONS or lower" \
            "VSOC_BENCH_FRAMES"

    local mb
    mb=$(awk -v b="$bytes" 'BEGIN { printf "%.0f", b / 1e6 }')
    echo "throughput: $(grouped "$total") CAN frames ($mb MB as VIN TAB line) of $vehicles vehicles," \
        "8 of them attacked,"
    echo "  in $partitions partitions of vsoc.events (zstd)," \
        "$(((vehicles + partitions - 1) / partitions)) vehicles a partition; read from the beginning;"
    echo "  vsoc serve: 2 workers, the default pack, alerts to vsoc.alerts, timed on its own counters"
    printf '%-26s %-11s %12s %9s %14s %8s\n' "consumer setting" reader events "s" events/s "vs kcat"

    local settings=("librdkafka defaults" "queued.min.messages=1e7")
    local setting kx props t_kcat t_empty t_k r_kcat best_r all_r run name d end page
    local n_s secs events r busy='' alerts='' t_v ratio group_n=0 mock0 cpu_v cpu_t cpu_m cpu_k cpu_note=
    for setting in "${settings[@]}"; do
        kx=()
        props=()
        if [ "$setting" != "librdkafka defaults" ]; then
            kx=(-X queued.min.messages=10000000)
            props=('queued.min.messages: "10000000"')
        fi
        best_of "${kcat_c[@]}" "${kx[@]}" -t vsoc.events
        t_kcat=$BEST
        best_of "${kcat_c[@]}" "${kx[@]}" -t vsoc.empty
        t_empty=$BEST
        # Once more for the CPU time it takes (user + system, bash's time keyword).
        cpu_k=$( { TIMEFORMAT='%U %S'; time "${kcat_c[@]}" "${kx[@]}" -t vsoc.events >/dev/null; } \
            2>&1 | tail -n 1 | awk '{ printf "%.2f", $1 + $2 }')
        t_k=$(awk -v a="$t_kcat" -v b="$t_empty" 'BEGIN { printf "%.6f", a - b }')
        r_kcat=$(awk -v n="$total" -v t="$t_k" 'BEGIN { printf "%.0f", n / t }')
        printf '%-26s %-11s %12s %9.3f %14s %8s\n' "$setting" kcat "$(grouped "$total")" "$t_k" \
            "$(grouped "$r_kcat")" 1.00

        best_r=0
        all_r=()
        for ((run = 1; run <= runs; run++)); do
            group_n=$((group_n + 1))
            name=t$group_n
            d=$tmp/$name
            mkdir -p "$d"
            config "$name" "bench-$group_n-$$" vsoc.events vsoc.alerts "${props[@]}"
            mock0=$(cpu_s "$mock_pid")
            start_serve "$name"
            start_sampler "$d"
            end=$((SECONDS + 60 + total / 20000))
            while [ "$(sampled "$d")" -lt "$total" ]; do
                [ $SECONDS -lt $end ] || die "vsoc serve handled $(sampled "$d") of $total events in time"
                kill -0 "$serve_pid" 2>/dev/null || die "vsoc serve died: $(tail -n 5 "$tmp/$name.err")"
                sleep 0.1
            done
            stop_sampler
            page=$(metrics) || die "GET /metrics did not answer"
            cpu_v=$(cpu_s "$serve_pid")
            cpu_t=$(threads_cpu "$serve_pid")
            cpu_m=$(awk -v a="$mock0" -v b="$(cpu_s "$mock_pid")" 'BEGIN { printf "%.2f", b - a }')
            stop_serve "$name"
            # A = the first sample with work done, B = the last one before all of it: both lie
            # inside the processing, so the rate between them has no idle time in it.
            read -r n_s secs events <<<"$(sample_table "$d" | awk -v all="$total" '
                $3 > 0 && a == "" { a = $2; ea = $3 }
                $3 > 0 && $3 < all { b = $2; eb = $3; k++ }
                END { if (k < 2) print 0, 0, 0; else printf "%d %.6f %d\n", k, b - a, eb - ea }')"
            [ "$n_s" -ge 2 ] ||
                die "vsoc serve handled the topic within one ${interval_ms} ms sample: raise VSOC_BENCH_FRAMES"
            r=$(awk -v n="$events" -v t="$secs" 'BEGIN { printf "%.0f", n / t }')
            all_r+=("$(grouped "$r")")
            if [ "$r" -gt "$best_r" ]; then
                best_r=$r
                busy=$(grep '^vsoc_worker_busy_seconds_total' <<<"$page" |
                    awk '{ printf "%s%.2f", sep, $2; sep = " + " }')
                alerts=$(metric vsoc_alerts_published_total <<<"$page")
                cpu_note="CPU-s in all: vsoc serve $cpu_v ($cpu_t; time on events,"
                cpu_note+=" vsoc_worker_busy_seconds_total: $busy), the broker $cpu_m"
            fi
        done
        t_v=$(awk -v n="$total" -v r="$best_r" 'BEGIN { printf "%.3f", n / r }')
        ratio=$(awk -v a="$best_r" -v b="$r_kcat" 'BEGIN { printf "%.2f", a / b }')
        printf '%-26s %-11s %12s %9.3f %14s %8s\n' "" "vsoc serve" "$(grouped "$total")" "$t_v" \
            "$(grouped "$best_r")" "$ratio"
        echo "    kcat: best $(printf '%.3f' "$t_kcat") s, less $(printf '%.3f' "$t_empty") s on an" \
            "empty topic; $cpu_k CPU-s in all (one more run)"
        echo "    vsoc serve runs: ${all_r[*]} events/s; the best: $alerts alerts published,"
        echo "    $cpu_note"
        summary+=("$setting: vsoc serve $(grouped "$best_r") events/s, $ratio x kcat;")
    done
    echo
}

# ---- 2. latency ----------------------------------------------------------------------------

# hist_q Q: the Q-quantile of the histogram vsoc_event_to_alert_seconds between two /metrics
# pages (the file $tmp/page0, then the page on stdin): the difference of their cumulative
# buckets, interpolated linearly inside the bucket that holds the rank, as Prometheus'
# histogram_quantile does; with the bucket's bounds in ms, since the truth is anywhere in it.
hist_q() {
    awk -v q="$1" '
        /^vsoc_event_to_alert_seconds_bucket/ {
            le = $1; sub(/.*le="/, "", le); sub(/".*/, "", le)
            if (FILENAME == ARGV[1]) { base[le] = $2; next }
            n++; b[n] = le; c[n] = $2 - base[le] }
        END {
            if (!n || c[n] == 0) { print "-"; exit }
            r = q * c[n]; lo = 0; below = 0
            for (i = 1; i <= n; i++) {
                if (c[i] >= r) {
                    if (b[i] == "+Inf") { printf "> %g ms\n", lo * 1000; exit }
                    v = lo + (b[i] - lo) * (c[i] > below ? (r - below) / (c[i] - below) : 1)
                    printf "%.1f ms (%g-%g)\n", v * 1000, lo * 1000, b[i] * 1000; exit }
                lo = b[i]; below = c[i] } }' "$tmp/page0" -
}
# pct Q FILE: the Q-quantile (nearest rank) of the sorted numbers in FILE.
pct() {
    awk -v q="$1" '{ v[NR] = $1 } END { if (!NR) { print "-"; exit }
        k = int(q * NR); if (k < q * NR) k++; if (k < 1) k = 1; print v[k] " ms" }' "$2"
}

# Waits up to 30 s until the service has published WANT alerts and handled EVENTS events;
# leaves the last /metrics page in $page.
wait_published() { # WANT EVENTS
    local end=$((SECONDS + 30))
    while :; do
        page=$(metrics) || die "GET /metrics did not answer"
        [ "$(metric vsoc_alerts_published_total <<<"$page")" -ge "$1" ] &&
            [ "$(metric vsoc_events_total <<<"$page")" -ge "$2" ] && return 0
        [ $SECONDS -lt $end ] || return 0 # what is missing shows in the counts
        sleep 0.2
    done
}

# Runs the producers of the latency test over PART (warm or meas) of the traffic: the
# background at its rate, batched by librdkafka over up to 10 ms (kafka-mock's cost grows
# with the batches it holds, see docs/bench.md), and the probes at theirs, each sent alone
# (linger.ms=0) and stamped with its send time. Sets rate_note to the producers' summaries.
produce_lat() { # TOPIC PART
    local rc=0
    "$rate_prog" --rate "$bg_rate" -X linger.ms=10 "$brokers" "$1" "$tmp/bg.$2" \
        2>"$tmp/rate-bg.err" &
    bg_pid=$!
    "$rate_prog" --rate "$probe_rate" "$brokers" "$1" "$tmp/probe.$2" 2>"$tmp/rate-probe.err" ||
        rc=1
    wait "$bg_pid" || rc=1
    bg_pid=
    [ $rc -eq 0 ] || die "vsoc-kafka-rate failed: $(cat "$tmp/rate-bg.err" "$tmp/rate-probe.err")"
    rate_note="background: $(sed 's/^vsoc-kafka-rate: //' "$tmp/rate-bg.err")"
    rate_note+=$'\n'"              probes: $(sed 's/^vsoc-kafka-rate: //' "$tmp/rate-probe.err")"
}

# The traffic of the latency test, written once: background frames of 8 vehicles in time
# order, and probe frames, each split into the warm-up and the measured part.
latency_traffic() {
    local v
    local bg_lines=$((bg_rate * (warm_s + lat_seconds)))
    local per_bg=$(((bg_lines + 7) / 8))
    for v in 1 2 3 4 5 6 7 8; do
        "$gen" --frames "$per_bg" --seed $((200 + v)) |
            sed "s/^/$(vin_of $((100 + v)))\t/" >"$tmp/b$v.tsv"
    done
    sort -m -s -t '(' -k2,2n "$tmp"/b?.tsv | head -n "$bg_lines" >"$tmp/bg.all"
    rm -f "$tmp"/b?.tsv
    head -n $((bg_rate * warm_s)) "$tmp/bg.all" >"$tmp/bg.warm"
    tail -n +$((bg_rate * warm_s + 1)) "$tmp/bg.all" >"$tmp/bg.meas"
    # A probe is an untimed labelled line, "0 5AB#<sequence number>" (16 hex digits, so that
    # text order is number order): the service takes its Kafka timestamp as its event time.
    awk -v n=$((probe_rate * (warm_s + lat_seconds))) -v vin="$probe_vin" -v id="$probe_id" \
        'BEGIN { for (i = 1; i <= n; i++) printf "%s\t0 %s#%016X\n", vin, id, i }' >"$tmp/probe.all"
    head -n $((probe_rate * warm_s)) "$tmp/probe.all" >"$tmp/probe.warm"
    tail -n +$((probe_rate * warm_s + 1)) "$tmp/probe.all" >"$tmp/probe.meas"
    mkdir -p "$tmp/probe-rules"
    cat >"$tmp/probe-rules/probe.yml" <<EOF
id: bench.probe
title: Benchmark probe frame
level: informational
description: Alerts on every frame of the probe CAN ID, with no suppression.
tags: [bench.probe]
logsource: {product: vehicle, category: can}
detection:
  probe:
    can.id: 0x$probe_id
  condition: probe
EOF
}

# One latency run: a new service reading TOPIC.events with the given kafka.properties lines,
# alerts to TOPIC.alerts; prints one table row per method.
latency_run() { # LABEL TOPIC [PROPERTY LINES]
    local label=$1 topic=$2
    shift 2
    local warm_probes=$((probe_rate * warm_s)) probes=$((probe_rate * lat_seconds))
    local msgs=$(((bg_rate + probe_rate) * (warm_s + lat_seconds)))
    local first
    first=$(printf '%016X' $((warm_probes + 1)))
    config "$topic" "$topic-$$" "$topic.events" "$topic.alerts" "$@" -- \
        "rules: [$src/rules, $tmp/probe-rules]"
    start_serve "$topic"
    for _ in $(seq 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ] && break
        kill -0 "$serve_pid" 2>/dev/null || die "vsoc serve died: $(tail -n 5 "$tmp/$topic.err")"
        sleep 0.1
    done
    # The warm-up: the first alerts pay for the producer's first metadata and connections
    # to the alerts topic's leaders, once per process. The histogram is read after it, and
    # the figures are the difference: the measured part only.
    produce_lat "$topic.events" warm
    wait_published "$warm_probes" $(((bg_rate + probe_rate) * warm_s))
    sleep 1
    metrics >"$tmp/page0" || die "GET /metrics did not answer"
    produce_lat "$topic.events" meas
    wait_published $((warm_probes + probes)) "$msgs"
    stop_serve "$topic"
    local h_count
    h_count=$(($(metric vsoc_event_to_alert_seconds_count <<<"$page") -
        $(metric vsoc_event_to_alert_seconds_count <"$tmp/page0")))

    # Per probe, from the topics: the probe's timestamp is its send time (vsoc-kafka-rate's
    # CreateTime); the alert's is the time vsoc handed it to its producer (librdkafka's
    # CreateTime). The sequence number in the alert's sample line names the probe.
    "${kcat_c[@]}" -t "$topic.events" -f '%T\t%k\t%s\n' |
        awk -F '\t' -v vin="$probe_vin" -v first="$first" '
            $2 == vin { split($3, f, "#"); if ((f[2] "") >= (first "")) print f[2], $1 }' |
        sort >"$tmp/probe.ts"
    "${kcat_c[@]}" -t "$topic.alerts" -f '%T\t%s\n' >"$tmp/alerts.tsv"
    cut -f 2- "$tmp/alerts.tsv" | jq -r 'if .finding_info.analytic.uid == "bench.probe"
        then (.evidences[0].data.samples[-1] | split("#")[1]) else "-" end' >"$tmp/alert.seq"
    cut -f 1 "$tmp/alerts.tsv" | paste -d ' ' "$tmp/alert.seq" - |
        awk -v first="$first" '$1 != "-" && ($1 "") >= (first "")' | sort >"$tmp/alert.ts"
    local n_alerts n_match n_other
    n_alerts=$(wc -l <"$tmp/alert.ts")
    n_other=$(grep -c '^-$' "$tmp/alert.seq" || true)
    join "$tmp/probe.ts" "$tmp/alert.ts" | awk '{ print $3 - $2 }' | sort -n >"$tmp/lat.ms"
    n_match=$(wc -l <"$tmp/lat.ms")

    printf '%-34s %-22s %6s %21s %21s %8s\n' "$label" "histogram (acked)" "$h_count" \
        "$(hist_q 0.5 <<<"$page")" "$(hist_q 0.99 <<<"$page")" "-"
    printf '%-34s %-22s %6s %21s %21s %8s\n' "" "alerts topic (sent)" "$n_match" \
        "$(pct 0.5 "$tmp/lat.ms")" "$(pct 0.99 "$tmp/lat.ms")" "$(tail -n 1 "$tmp/lat.ms") ms"
    echo "    $(grouped "$probes") probes sent, $(grouped "$n_alerts") of their alerts on" \
        "$topic.alerts, $(grouped "$n_match") matched to their probe; $n_other alerts of other rules"
    echo "    producers   $rate_note"
    summary+=("$label: event->alert p50 $(pct 0.5 "$tmp/lat.ms"), p99 $(pct 0.99 "$tmp/lat.ms") (alert sent),")
    summary+=("p99 $(hist_q 0.99 <<<"$page" | cut -d ' ' -f 1-2) (histogram, alert acked);")
}

latency() {
    latency_traffic
    echo "latency: $(grouped "$bg_rate") background frames/s (8 vehicles, no attacks) + $probe_rate probe frames/s (ID $probe_id, vehicle"
    echo "  $probe_vin) for $lat_seconds s after $warm_s s of warm-up, each probe sent alone at its time (vsoc-kafka-rate);"
    echo "  vsoc serve: 2 workers, the default pack + bench.probe (an alert for every probe), a new service per row;"
    echo "  histogram = vsoc_event_to_alert_seconds, event's timestamp -> alert acked by the broker (in its bucket, ms);"
    echo "  alerts topic = per probe, probe's timestamp -> alert's timestamp, the alert handed to vsoc's producer (1 ms steps)"
    printf '%-34s %-22s %6s %21s %21s %8s\n' "kafka.properties" method n p50 p99 max
    latency_run "service defaults" lat1
    latency_run "linger.ms=0, fetch.wait.max.ms=1" lat2 'linger.ms: "0"' 'fetch.wait.max.ms: "1"'
    echo
}

# ---- main ----------------------------------------------------------------------------------

echo "vsoc serve benchmark"
echo "  vsoc        $vsoc"
echo "  broker      kafka-mock (librdkafka $(pkg-config --modversion rdkafka 2>/dev/null || echo '?') mock cluster), 3 brokers on loopback"
echo "  machine     $(nproc 2>/dev/null || echo '?') cores online, shared by the broker, the clients and the service (nothing pinned);"
echo "              load average at start $(cut -d ' ' -f 1-3 /proc/loadavg 2>/dev/null || echo '?')"
echo "  runs        best of $runs (throughput)"
echo

summary=()
if part throughput; then throughput; fi
if part latency; then latency; fi
echo "result: ${summary[*]}"
