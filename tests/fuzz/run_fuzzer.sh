#!/bin/sh
# run_fuzzer.sh FUZZER CORPUS SECONDS: fuzzes for SECONDS starting from a scratch copy of
# CORPUS (the committed corpus is not modified); fails on any crash, leak or sanitizer report.
set -eu
fuzzer=$1 corpus=$2 seconds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$corpus"/. "$work"/
cd "$work"
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 .
