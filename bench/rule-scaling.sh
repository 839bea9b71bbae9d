#!/usr/bin/env bash
# bench/rule-scaling.sh: how `vsoc replay` throughput changes with the number of rules.
#
#   bench/rule-scaling.sh [BUILD_DIR]        (default ./build)
#
# It generates rule packs of 10, 100 and 1,000 CAN rules (VSOC_BENCH_PACKS to change the
# sizes) into a temporary directory, one file per rule, a capture of VSOC_BENCH_FRAMES frames
# (default 5,000,000) with vsoc-gen, and replays the capture with each pack
# (`vsoc replay --rules PACK --out /dev/null FILE`, best of VSOC_BENCH_RUNS, default 5;
# the time to load the pack, measured on an empty capture, is reported apart and left out),
# pinned to core VSOC_BENCH_CPU (default 0; "none" for no pinning) when taskset exists.
# It prints frames/s per pack and its ratio to the smallest pack. docs/bench.md explains.
#
# The packs are the same on every run (a fixed pseudo-random sequence):
# - about 70 % select one CAN ID of the normal traffic and compare its steadiest data byte
#   with a threshold above (or below) every value that byte takes in the traffic, so they
#   are evaluated on every frame of their ID but (almost) never fire;
# - about 20 % select an ID that the traffic never carries (an indexed matcher never visits
#   them);
# - about 10 % are event_count correlations (group-by [vin, can.id], 1 s, gte 1000) on an ID
#   of the traffic whose selection matches every frame: they keep a window per group but
#   never reach the threshold (no normal message exceeds 100 frames/s).
# So the alert output stays near zero and the figures measure matching, not JSON writing.
set -euo pipefail

build=${1:-./build}
frames=${VSOC_BENCH_FRAMES:-5000000}
runs=${VSOC_BENCH_RUNS:-5}
cpu=${VSOC_BENCH_CPU:-0}
packs=${VSOC_BENCH_PACKS:-10 100 1000}
layouts=${VSOC_BENCH_LAYOUTS:-fleet dense}
seed=7

die() {
    echo "rule-scaling: $*" >&2
    exit 1
}

case $frames in '' | *[!0-9]*) die "VSOC_BENCH_FRAMES='$frames' is not a number" ;; esac
case $runs in '' | *[!0-9]* | 0) die "VSOC_BENCH_RUNS='$runs' is not a positive number" ;; esac
for n in $packs; do
    case $n in '' | *[!0-9]* | 0) die "VSOC_BENCH_PACKS: '$n' is not a positive number" ;; esac
    [ "$n" -le 9999 ] || die "VSOC_BENCH_PACKS: $n rules is more than the 9,999 ids allow"
done

bench_name=rule-scaling
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

# The capture, and the same traffic without attacks (same seed: the same normal frames), to
# learn which IDs exist and the range of each data byte over the whole capture.
capture=$tmp/capture.log
"$gen" --frames "$frames" --seed "$seed" --format log \
    --attack dos@100+5 --attack fuzz@400+5 --attack uds-bruteforce@700+30 \
    --attack request-overload@600+5 --attack address-claim@800+5 --attack tsc1@900+30 \
    --out "$capture"
lines=$(wc -l <"$capture")
[ "$lines" -eq "$frames" ] || die "vsoc-gen wrote $lines lines, expected $frames"
"$gen" --frames "$frames" --seed "$seed" --format log --out "$tmp/clean.log"

# One line per ID: ID, then min and max of data bytes 0..7 (-1 where the byte is absent).
# Every 7th line is enough to see each signal's range and keeps this to a second or two.
awk 'BEGIN { for (i = 0; i < 256; i++) h[sprintf("%02X", i)] = i }
NR % 7 == 0 {
    p = index($3, "#"); id = substr($3, 1, p - 1); d = substr($3, p + 1); n = length(d) / 2
    if (!(id in seen)) { seen[id] = 1; for (k = 0; k < 8; k++) { mn[id, k] = -1; mx[id, k] = -1 } }
    for (k = 0; k < n; k++) {
        v = h[substr(d, 2 * k + 1, 2)]
        if (mn[id, k] < 0 || v < mn[id, k]) mn[id, k] = v
        if (v > mx[id, k]) mx[id, k] = v
    }
} END {
    for (id in seen) {
        line = id
        for (k = 0; k < 8; k++) line = line " " mn[id, k] " " mx[id, k]
        print line
    }
}' "$tmp/clean.log" | sort >"$tmp/ids.txt"
rm -f "$tmp/clean.log"
[ -s "$tmp/ids.txt" ] || die "no CAN IDs found in the generated traffic"

# make_pack N DIR LAYOUT: writes N rules, bench.gen.0001.yml ... into DIR.
make_pack() {
    mkdir -p "$2"
    awk -v n="$1" -v dir="$2" -v layout="$3" '
    function rnd(m) { x = (x * 16807) % 2147483647; return int(x / 2147483647 * m) }
    function hexid(id) { return "0x" id }
    BEGIN { x = 20251125; nid = 0 }
    { id[nid] = $1; for (k = 0; k < 8; k++) { lo[nid, k] = $(2 + 2 * k); hi[nid, k] = $(3 + 2 * k) } nid++ }
    END {
        levels[0] = "low"; levels[1] = "medium"; levels[2] = "high"
        for (i = 1; i <= n; i++) {
            num = sprintf("%04d", i)
            file = dir "/bench.gen." num ".yml"
            # fleet: IDs drawn from a catalogue of 2,048 messages of which the traffic
            # carries only its own few dozen (a pack written for a whole fleet of models);
            # dense: 80 % of the rules on IDs the traffic carries (the worst case for an index).
            if (layout == "fleet") live = rnd(2048) < nid
            else live = rnd(100) >= 20
            corr = 0
            if (!live) {
                # An ID the traffic never carries: 29-bit proprietary or 11-bit 0x500-0x5FF.
                if (rnd(2)) { can = sprintf("0x18FF%02X%02X", 160 + rnd(32), 128 + rnd(32)) }
                else { can = sprintf("0x%03X", 1280 + rnd(256)) }
                cond = sprintf("can.data[0]|gte: %d", rnd(256))
                what = "an ID absent from the traffic"
            } else if (rnd(8) == 0) {
                j = rnd(nid); can = hexid(id[j]); corr = 1
                cond = "can.data[0]|gte: 0"
                what = "an event_count window that never fills"
            } else {
                # The steadiest byte that leaves room above (or below) its range (the range is
                # learnt from a sample of the lines, so a constant byte is the safest bet).
                j = rnd(nid); can = hexid(id[j]); cond = ""; best = 999
                start = rnd(8)
                for (t = 0; t < 8; t++) {
                    k = (start + t) % 8
                    if (hi[j, k] < 0 || hi[j, k] - lo[j, k] >= best) continue
                    if (hi[j, k] < 255) {
                        cond = sprintf("can.data[%d]|gte: %d", k, hi[j, k] + 1 + rnd(255 - hi[j, k]))
                        best = hi[j, k] - lo[j, k]
                    } else if (lo[j, k] > 0) {
                        cond = sprintf("can.data[%d]|lte: %d", k, rnd(lo[j, k]))
                        best = hi[j, k] - lo[j, k]
                    }
                }
                if (cond == "") cond = "can.data[0]|gte: 255"
                what = "a byte out of its normal range"
            }
            print "id: bench.gen." num > file
            print "title: Bench rule " num " on " can " (" what ")" > file
            print "status: experimental" > file
            print "level: " levels[i % 3] > file
            print "description: Generated by bench/rule-scaling.sh for the rule-scaling benchmark." > file
            print "author: vsoc bench" > file
            print "tags: [bench.rule-scaling]" > file
            print "logsource: {product: vehicle, category: can}" > file
            print "detection:" > file
            print "  sel:" > file
            print "    can.id: " can > file
            print "    " cond > file
            print "  condition: sel" > file
            if (corr) {
                print "correlation:" > file
                print "  type: event_count" > file
                print "  group-by: [vin, can.id]" > file
                print "  timespan: 1s" > file
                print "  condition: {gte: 1000}" > file
            }
            close(file)
        }
    }' "$tmp/ids.txt"
}

echo "vsoc rule-scaling benchmark"
echo "  vsoc        $vsoc"
echo "  cpu         $pin_note"
echo "  runs        best of $runs"
echo "  capture     $(grouped "$lines") frames (log format, seed $seed, with attacks), $(wc -l <"$tmp/ids.txt") distinct IDs in normal traffic"
echo
: >"$tmp/empty.log"
for layout in $layouts; do
case $layout in
fleet) echo "fleet layout: rule IDs drawn from a 2,048-message catalogue; the traffic carries $(wc -l <"$tmp/ids.txt") of them" ;;
dense) echo "dense layout: 80 % of the rules on the traffic's own IDs (every frame visits about n/70 rules)" ;;
esac
printf '%7s %8s %8s %10s %14s %10s %8s  %s\n' rules corr "load s" "best s" frames/s "vs first" alerts "per-frame cost"
base=
for n in $packs; do
    pack=$tmp/pack-$layout-$n
    make_pack "$n" "$pack" "$layout"
    ncorr=$(cat "$pack"/*.yml | grep -c '^correlation:' || true)
    # Loading and compiling the pack is timed apart (a replay of an empty capture) and
    # left out of frames/s, which measures matching: a service loads its rules once.
    best_of "$vsoc" replay --rules "$pack" --out /dev/null "$tmp/empty.log"
    load=$BEST
    best_of "$vsoc" replay --rules "$pack" --out /dev/null "$capture"
    BEST=$(awk -v b="$BEST" -v l="$load" 'BEGIN { d = b - l; printf "%.6f", (d > 0 ? d : b) }')
    alerts=$(sed -n 's/^alerts: \([0-9]*\).*/\1/p' "$tmp/stderr" | head -n 1)
    fps=$(awk -v n="$lines" -v t="$BEST" 'BEGIN { printf "%.0f", (t > 0 ? n / t : 0) }')
    [ -n "$base" ] || base=$fps
    ratio=$(awk -v a="$fps" -v b="$base" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    ns=$(awk -v n="$lines" -v t="$BEST" 'BEGIN { printf "%.0f ns", (n > 0 ? t / n * 1e9 : 0) }')
    printf '%7s %8s %8.3f %10.3f %14s %10s %8s  %s\n' "$(grouped "$n")" "$ncorr" "$load" "$BEST" \
        "$(grouped "$fps")" "$ratio" "${alerts:-?}" "$ns"
done
echo
done
echo "vs first: frames/s relative to the first pack (1.00 = no slower; 0.50 = half the speed)."
echo "vsoc replay summary of the last run (its stderr):"
sed 's/^/  /' "$tmp/stderr" | head -n 20
