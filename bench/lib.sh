# bench/lib.sh: what the benchmark scripts share, sourced after they set $build, $runs,
# $cpu and a die() function: finding the binaries ($vsoc, $gen), a nanosecond clock, pinning
# to one core ($pin, $pin_note), a scratch directory ($tmp, removed on exit), best_of and
# grouped.
# shellcheck shell=bash

# The binaries: vsoc at the top of the build dir, vsoc-gen there or under bench/.
find_bin() {
    local p
    for p in "$build/$1" "$build/bench/$1"; do
        if [ -x "$p" ] && [ -f "$p" ]; then
            echo "$p"
            return 0
        fi
    done
    return 1
}
[ -d "$build" ] || die "build directory '$build' does not exist (usage: $0 [BUILD_DIR]; build with: cmake -S . -B build && cmake --build build)"
gen=$(find_bin vsoc-gen) || die "no vsoc-gen in '$build' or '$build/bench': build it with: cmake --build $build --target vsoc-gen"
vsoc=$(find_bin vsoc) || die "no vsoc in '$build': build it with: cmake --build $build --target vsoc"

now() { date +%s.%N; }
case $(now) in *[!0-9.]* | *.) die "this 'date' has no %N (nanoseconds); GNU coreutils date is needed" ;; esac

pin=()
pin_note="not pinned (VSOC_BENCH_CPU=none)"
if [ "$cpu" != none ]; then
    if command -v taskset >/dev/null 2>&1; then
        taskset -c "$cpu" true 2>/dev/null || die "taskset cannot pin to core '$cpu' (set VSOC_BENCH_CPU)"
        pin=(taskset -c "$cpu")
        pin_note="pinned to core $cpu with taskset"
    else
        pin_note="not pinned (no taskset on this machine)"
    fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vsoc-${bench_name:-bench}.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# best_of CMD...: runs CMD $runs times with stdout to /dev/null and stderr to $tmp/stderr,
# and sets BEST to the shortest wall time in seconds. A failing run stops the benchmark.
best_of() {
    local i t0 t1
    BEST=
    for ((i = 1; i <= runs; i++)); do
        t0=$(now)
        if ! "${pin[@]}" "$@" >/dev/null 2>"$tmp/stderr"; then
            cat "$tmp/stderr" >&2
            die "failed: $*"
        fi
        t1=$(now)
        BEST=$(awk -v a="$t0" -v b="$t1" -v best="$BEST" \
            'BEGIN { d = b - a; if (best != "" && best + 0 < d) d = best; printf "%.6f", d }')
    done
}

# Number formatting: 5000000 -> 5,000,000.
grouped() {
    awk -v n="$1" 'BEGIN {
        s = sprintf("%.0f", n); out = ""
        while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
        print s out }'
}
