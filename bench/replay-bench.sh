#!/usr/bin/env bash
# bench/replay-bench.sh: replay throughput of `vsoc replay` on one core, next to `wc -l`
# on the same file as the floor (reading and splitting lines, nothing else).
#
#   bench/replay-bench.sh [BUILD_DIR]        (default ./build)
#
# It generates a synthetic capture of VSOC_BENCH_FRAMES frames (default 5,000,000) with
# vsoc-gen, in the compact log format and again in the spaced format, into a temporary
# directory, and times for each: vsoc-gen writing it, `wc -l`, and
# `vsoc replay --out /dev/null FILE` with the default rule pack; best of VSOC_BENCH_RUNS
# runs (default 3). Everything runs pinned to core VSOC_BENCH_CPU (default 0) with taskset
# when taskset exists (VSOC_BENCH_CPU=none: no pinning), because the targets are per core.
# docs/bench.md explains the figures.
set -euo pipefail

build=${1:-./build}
frames=${VSOC_BENCH_FRAMES:-5000000}
runs=${VSOC_BENCH_RUNS:-3}
cpu=${VSOC_BENCH_CPU:-0}
seed=7

die() {
    echo "replay-bench: $*" >&2
    exit 1
}

case $frames in '' | *[!0-9]*) die "VSOC_BENCH_FRAMES='$frames' is not a number" ;; esac
case $runs in '' | *[!0-9]* | 0) die "VSOC_BENCH_RUNS='$runs' is not a positive number" ;; esac

bench_name=replay-bench
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

rate() { grouped "$(awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", (t > 0 ? n / t : 0) }')"; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.1f", (t > 0 ? b / t / 1e6 : 0) }'; }

attacks_log=(--attack dos@100+5 --attack fuzz@400+5 --attack uds-bruteforce@700+30
    --attack request-overload@1000+5 --attack address-claim@1300+5 --attack tsc1@1600+30
    --attack bad-dlc@1900+5)
# The spaced format cannot show bad-dlc frames (vsoc-gen would skip them with a warning).
attacks_spaced=("${attacks_log[@]:0:12}")

echo "vsoc replay benchmark"
echo "  vsoc        $vsoc"
echo "  vsoc-gen    $gen"
echo "  cpu         $pin_note; $(nproc 2>/dev/null || echo '?') cores online"
echo "  runs        best of $runs"
echo "  capture     $(grouped "$frames") frames, seed $seed, normal J1939 traffic with attacks"
echo "              dos fuzz uds-bruteforce request-overload address-claim tsc1 (+ bad-dlc in log)"
echo

printf '%-7s %-16s %13s %10s %10s %14s %9s\n' format step frames MB "best s" frames/s MB/s
summary=()
for fmt in log spaced; do
    file=$tmp/capture.$fmt
    if [ "$fmt" = log ]; then
        attacks=("${attacks_log[@]}")
    else
        attacks=("${attacks_spaced[@]}")
    fi
    gen_cmd=("$gen" --frames "$frames" --seed "$seed" --format "$fmt" "${attacks[@]}" --out "$file")

    best_of "${gen_cmd[@]}"
    t_gen=$BEST
    bytes=$(wc -c <"$file")
    lines=$(wc -l <"$file")
    [ "$lines" -eq "$frames" ] || die "vsoc-gen wrote $lines lines, expected $frames"
    mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')
    printf '%-7s %-16s %13s %10s %10.3f %14s %9s\n' "$fmt" "vsoc-gen (write)" \
        "$(grouped "$lines")" "$mb" "$t_gen" "$(rate "$lines" "$t_gen")" "$(mbps "$bytes" "$t_gen")"

    best_of wc -l "$file"
    t_wc=$BEST
    printf '%-7s %-16s %13s %10s %10.3f %14s %9s\n' "$fmt" "wc -l" \
        "$(grouped "$lines")" "$mb" "$t_wc" "$(rate "$lines" "$t_wc")" "$(mbps "$bytes" "$t_wc")"

    best_of "$vsoc" replay --out /dev/null "$file"
    t_replay=$BEST
    cp "$tmp/stderr" "$tmp/replay-$fmt.stderr"
    printf '%-7s %-16s %13s %10s %10.3f %14s %9s\n' "$fmt" "vsoc replay" \
        "$(grouped "$lines")" "$mb" "$t_replay" "$(rate "$lines" "$t_replay")" \
        "$(mbps "$bytes" "$t_replay")"

    ratio=$(awk -v r="$t_replay" -v w="$t_wc" 'BEGIN { printf "%.1f", (w > 0 ? r / w : 0) }')
    printf '%-7s %-16s %s\n' "$fmt" "replay / wc -l" \
        "x $ratio (vsoc replay takes $ratio times as long as wc -l)"
    summary+=("$fmt: $(rate "$lines" "$t_replay") frames/s replayed, x $ratio wc -l")

    # The same replay with baseline scoring: a baseline learnt from the same normal traffic
    # without attacks (same seed), so scoring sees the attacks as anomalies.
    if [ ! -f "$tmp/baseline.yaml" ]; then
        "$gen" --frames 1000000 --seed "$seed" --format "$fmt" --out "$tmp/clean.$fmt"
        "$vsoc" baseline learn -q -o "$tmp/baseline.yaml" "$tmp/clean.$fmt"
        rm -f "$tmp/clean.$fmt"
    fi
    best_of "$vsoc" replay --baseline "$tmp/baseline.yaml" --out /dev/null "$file"
    t_base=$BEST
    printf '%-7s %-16s %13s %10s %10.3f %14s %9s\n' "$fmt" "+ --baseline" \
        "$(grouped "$lines")" "$mb" "$t_base" "$(rate "$lines" "$t_base")" \
        "$(mbps "$bytes" "$t_base")"
    over=$(awk -v b="$t_base" -v r="$t_replay" 'BEGIN { printf "%+.0f", (r > 0 ? (b / r - 1) * 100 : 0) }')
    printf '%-7s %-16s %s\n' "$fmt" "scoring cost" "$over % of the replay time"
    summary+=("$fmt: scoring $over %")
done

echo
for fmt in log spaced; do
    echo "vsoc replay summary (last $fmt run, its stderr):"
    sed 's/^/  /' "$tmp/replay-$fmt.stderr"
done
echo
echo "result: ${summary[*]}"
