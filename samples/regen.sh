#!/usr/bin/env bash
# samples/regen.sh: regenerate the shipped samples with vsoc-gen, or check that they are
# exactly what the generator produces now.
#
#   samples/regen.sh [--check] [--gen PATH]
#
# Without --check it rewrites samples/demo.log, samples/demo-ids.jsonl and samples/normal.log.
# With --check it generates them into a temporary directory, compares them byte for byte with
# the committed files and exits 1 if any differs (0 if all match, 2 on a usage error).
#
# The generator is, in order: --gen PATH, $VSOC_GEN, build/vsoc-gen or build/bench/vsoc-gen
# under the repository, or else bench/gen.c compiled with ${CC:-cc} into a temporary directory
# (vsoc-gen needs nothing but libc, so that always works).
#
# Keep the commands below identical to the ones listed in samples/README.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
check=0
gen=${VSOC_GEN:-}

while [ $# -gt 0 ]; do
    case $1 in
    --check) check=1 ;;
    --gen)
        [ $# -ge 2 ] || { echo "regen.sh: --gen needs a path" >&2; exit 2; }
        gen=$2
        shift
        ;;
    -h | --help)
        sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "regen.sh: unknown argument '$1' (usage: regen.sh [--check] [--gen PATH])" >&2
        exit 2
        ;;
    esac
    shift
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vsoc-samples.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [ -z "$gen" ]; then
    for p in "$root/build/vsoc-gen" "$root/build/bench/vsoc-gen"; do
        if [ -x "$p" ]; then
            gen=$p
            break
        fi
    done
fi
if [ -z "$gen" ]; then
    cc=${CC:-cc}
    echo "regen.sh: no built vsoc-gen found; compiling bench/gen.c with $cc" >&2
    "$cc" -std=c11 -D_GNU_SOURCE -O2 -o "$tmp/vsoc-gen" "$root/bench/gen.c"
    gen=$tmp/vsoc-gen
fi
[ -x "$gen" ] || { echo "regen.sh: '$gen' is not an executable vsoc-gen" >&2; exit 2; }

# The samples. Each line is one vsoc-gen command; $1 is the output directory.
generate() {
    "$gen" --seconds 20 --seed 1 --format log \
        --attack dos@3+1 --attack fuzz@5+1 --attack uds-bruteforce@7+3 \
        --attack request-overload@10.5+1 --attack address-claim@12+1 --attack tsc1@14+2 \
        --attack bad-dlc@17+1 --out "$1/demo.log"
    "$gen" --seconds 60 --seed 1 --format jsonl --vin 1VSCDEM0000000001 \
        --attack open-port@5 --attack login@10+10 --attack firewall@25+5 \
        --attack secoc-fail@40+5 --out "$1/demo-ids.jsonl"
    "$gen" --seconds 30 --seed 1 --format spaced --out "$1/normal.log"
}

files="demo.log demo-ids.jsonl normal.log"

if [ $check -eq 0 ]; then
    generate "$tmp"
    for f in $files; do
        mv "$tmp/$f" "$here/$f"
        echo "wrote samples/$f ($(wc -l <"$here/$f") lines, $(wc -c <"$here/$f") bytes)"
    done
    exit 0
fi

generate "$tmp"
bad=0
for f in $files; do
    if [ ! -f "$here/$f" ]; then
        echo "MISSING samples/$f" >&2
        bad=1
    elif cmp -s "$tmp/$f" "$here/$f"; then
        echo "ok      samples/$f"
    else
        echo "DIFFERS samples/$f: the generator now writes something else" >&2
        cmp "$tmp/$f" "$here/$f" >&2 || true
        bad=1
    fi
done
if [ $bad -ne 0 ]; then
    echo "regen.sh: samples are stale; run samples/regen.sh and commit the result" >&2
    exit 1
fi
