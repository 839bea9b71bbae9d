#!/usr/bin/env bash
# cli.sh TEST: one end-to-end test of the vsoc command. Needs $VSOC, $VSOC_GEN, $VSOC_SRC.
# Exits 0 on success, 1 on failure (saying why), 77 when the shared captures are absent.
set -euo pipefail
t=$1
src=$VSOC_SRC
shared=${VSOC_SHARED_DATA:-$src/../shared/data/can}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
need_shared() {
  if [ ! -d "$shared" ]; then
    echo "SKIP: $shared not found (the real captures live beside the checkout in CI)"
    exit 77
  fi
}
# Number of alerts of a level or above in a JSONL file.
count_min_level() { jq -c "select(.severity_id >= $2)" "$1" | wc -l; }
rules_fired() { jq -r '.finding_info.analytic.uid' "$1" | sort -u; }

case $t in
help)
  "$VSOC" --help | grep -q "usage: vsoc" || fail "vsoc --help"
  for c in "replay" "rules lint" "rules test" "playbooks lint" "playbooks list" \
    "playbooks show" "incidents list" "incidents show" "commands list" "commands approve" \
    "commands reject" "commands export" "respond" "audit verify" "audit show" "keygen"; do
    $VSOC $c --help | grep -q "usage: vsoc" || fail "vsoc $c --help"
  done
  "$VSOC_GEN" --help | grep -qi "usage" || fail "vsoc-gen --help"
  set +e; "$VSOC" nosuch 2>/dev/null; rc=$?; set -e
  [ $rc -eq 2 ] || fail "unknown command should exit 2, got $rc"
  ;;
demo)
  "$VSOC" replay --no-progress --out "$work/a.jsonl" "$src/samples/demo.log" \
    "$src/samples/demo-ids.jsonl" 2>"$work/err"
  n=$(wc -l <"$work/a.jsonl")
  [ "$n" -ge 8 ] || fail "demo raised only $n alerts"
  # Every line is an OCSF Detection Finding with the fields the issue names.
  jq -e 'select(.class_uid != 2004 or (.time|type) != "number" or .severity_id < 1 or
         .severity_id > 5 or (.finding_info.uid|type) != "string" or
         (.finding_info.title|type) != "string" or (.finding_info.analytic.uid|type) != "string"
         or (.count|type) != "number" or (.vehicle.vin|type) != "string" or
         (.evidences[0].data.samples|length) < 1)' "$work/a.jsonl" >/dev/null &&
    fail "an alert lacks a required field"
  nrules=$(rules_fired "$work/a.jsonl" | wc -l)
  [ "$nrules" -ge 8 ] || fail "only $nrules distinct rules fired on the demo"
  grep -q "^alerts: $n$" "$work/err" || fail "summary does not count $n alerts"
  grep -q "events/s" "$work/err" || fail "summary lacks events/s"
  ;;
determinism)
  "$VSOC" replay --no-progress -q "$src/samples/demo.log" "$src/samples/demo-ids.jsonl" >"$work/1"
  "$VSOC" replay --no-progress -q "$src/samples/demo.log" "$src/samples/demo-ids.jsonl" >"$work/2"
  [ -s "$work/1" ] || fail "no alerts"
  cmp "$work/1" "$work/2" || fail "two replays differ"
  ;;
stdin)
  "$VSOC" replay -q --vin DEMO "$src/samples/demo.log" >"$work/file"
  "$VSOC" replay -q --vin DEMO - <"$src/samples/demo.log" >"$work/stdin"
  [ -s "$work/file" ] || fail "no alerts"
  # The source differs (file name vs stdin); ids and everything derived from events agree.
  diff <(jq -c 'del(.evidences[0].data.event.source)' "$work/file") \
       <(jq -c 'del(.evidences[0].data.event.source)' "$work/stdin") || fail "stdin differs"
  ;;
malformed)
  { head -n 100 "$src/samples/demo.log"; echo "this is not a frame"
    echo "(1764064800.5) can0 12G#00"; head -n 200 "$src/samples/demo.log" | tail -n 100
    echo "(1764064801.0) can0 123#0"; } >"$work/bad.log"
  "$VSOC" replay --no-progress --out /dev/null "$work/bad.log" 2>"$work/err"
  grep -q "bad.log:101: " "$work/err" || fail "line 101 not reported: $(cat "$work/err")"
  grep -q "bad.log:102: " "$work/err" || fail "line 102 not reported"
  grep -q "bad.log:203: " "$work/err" || fail "line 203 not reported"
  grep -q "200 events" "$work/err" || fail "good lines were lost: $(cat "$work/err")"
  grep -q "3 skipped as malformed" "$work/err" || fail "skip count missing"
  # --max-errors limits the full reports and counts the rest.
  "$VSOC" replay --no-progress --max-errors 1 --out /dev/null "$work/bad.log" 2>"$work/err2"
  grep -q "and 2 more malformed lines" "$work/err2" || fail "no remainder count"
  ;;
lint-planted)
  set +e
  "$VSOC" rules lint "$src/tests/data/planted-mistakes.yml" >"$work/out" 2>/dev/null
  rc=$?
  set -e
  [ $rc -eq 1 ] || fail "lint should exit 1, got $rc"
  sed "s|$src/||g" "$work/out" | diff -u "$src/tests/data/planted-mistakes.expected" - ||
    fail "lint output differs from the expected list of located mistakes"
  ;;
lint-pack)
  "$VSOC" rules lint --strict "$src/rules" >"$work/out" 2>"$work/err" ||
    fail "default pack does not lint clean: $(cat "$work/out")"
  [ ! -s "$work/out" ] || fail "lint printed diagnostics: $(cat "$work/out")"
  n=$(grep -oE '[0-9]+ rules compiled' "$work/err" | grep -oE '^[0-9]+')
  [ "$n" -ge 20 ] || fail "default pack has only $n rules"
  ;;
rules-test)
  "$VSOC" rules test "$src/rules" >"$work/out" || fail "rule tests failed: $(cat "$work/out")"
  grep -qE '^[0-9]+ passed, 0 failed$' "$work/out" || fail "unexpected: $(tail -1 "$work/out")"
  # Every rule has a firing and a non-firing test.
  for f in $(find "$src/rules" -name '*.yml'); do
    grep -qE 'expect: *0\b' "$f" || fail "$f has no non-firing test"
    grep -qE 'expect: *[1-9]' "$f" || fail "$f has no firing test"
  done
  # A failing test is reported and fails the command.
  sed 's/expect: 1$/expect: 7/' "$src/tests/fuzz/corpus/rules/uds-bruteforce.yml" >"$work/f.yml"
  set +e; "$VSOC" rules test "$work/f.yml" >"$work/out2"; rc=$?; set -e
  [ $rc -eq 1 ] || fail "a failing rule test should exit 1"
  grep -q "expected 7 alerts, got 1" "$work/out2" || fail "failure not explained"
  ;;
generated-attacks)
  # Each injected attack raises the rule meant for it; clean traffic raises nothing.
  for fmt in log jsonl; do
    "$VSOC_GEN" --seconds 60 --seed 7 --format $fmt >"$work/clean.$fmt"
    "$VSOC" replay -q "$work/clean.$fmt" >"$work/clean.out"
    [ ! -s "$work/clean.out" ] ||
      fail "clean generated $fmt traffic raised: $(rules_fired "$work/clean.out" | tr '\n' ' ')"
  done
  while read -r attack fmt expect; do
    "$VSOC_GEN" --seconds 40 --seed 11 --format "$fmt" --attack "$attack@4+30" >"$work/a.$fmt"
    "$VSOC" replay -q "$work/a.$fmt" >"$work/alerts.out"
    rules_fired "$work/alerts.out" | grep -qE "^$expect\$" ||
      fail "attack $attack did not raise $expect (raised: $(rules_fired "$work/alerts.out" | tr '\n' ' '))"
  done <"$src/tests/data/attack-rules.txt"
  ;;
multi-file)
  "$VSOC_GEN" --seconds 5 --seed 1 --format log --attack dos@1+2 >"$work/a.log"
  cp "$work/a.log" "$work/b.log"
  "$VSOC" replay -q "$work/a.log" >"$work/one"
  "$VSOC" replay -q "$work/a.log" "$work/b.log" >"$work/two"
  # Two files without --vin are two vehicles (named after the files): twice the alerts.
  [ "$(wc -l <"$work/two")" -eq $((2 * $(wc -l <"$work/one"))) ] || fail "per-file vehicles"
  jq -r '.vehicle.vin' "$work/two" | sort -u | tr '\n' ' ' | grep -q "^a b $" || fail "vins"
  ;;
baseline-learn)
  # Learning is deterministic and the file it writes loads back.
  "$VSOC" baseline learn -q -o "$work/a.yaml" "$src/samples/normal.log"
  "$VSOC" baseline learn -q -o "$work/b.yaml" "$src/samples/normal.log"
  cmp "$work/a.yaml" "$work/b.yaml" || fail "two learns of one capture differ"
  grep -q "^frames: $(wc -l <"$src/samples/normal.log")$" "$work/a.yaml" || fail "frame count"
  "$VSOC" baseline show "$work/a.yaml" >"$work/show" || fail "the learnt baseline does not load"
  grep -q "IDs" "$work/show" || fail "show printed no summary"
  sed 's/^format: 1$/format: 9/' "$work/a.yaml" >"$work/bad.yaml"
  set +e; "$VSOC" baseline show "$work/bad.yaml" 2>"$work/err"; rc=$?; set -e
  [ $rc -ne 0 ] && grep -q "bad.yaml:2:" "$work/err" || fail "bad format not located: $(cat "$work/err")"
  # Scoring: the TSV interface, nothing flagged on the learnt traffic, the DoS flagged.
  "$VSOC" baseline score --baseline "$work/a.yaml" "$src/samples/normal.log" >"$work/n.tsv"
  [ "$(head -1 "$work/n.tsv")" = "$(printf '# line\tts\tid\tscore\tflag\treasons')" ] ||
    fail "score header: $(head -1 "$work/n.tsv")"
  [ "$(awk -F'\t' 'NR > 1 && NF != 6' "$work/n.tsv" | wc -l)" -eq 0 ] || fail "score columns"
  [ "$(awk -F'\t' 'NR > 1 && $5 == 1' "$work/n.tsv" | wc -l)" -eq 0 ] ||
    fail "learnt traffic flagged: $(awk -F'\t' '$5 == 1' "$work/n.tsv" | head -3)"
  "$VSOC" baseline score --baseline "$work/a.yaml" "$src/samples/demo.log" >"$work/d.tsv"
  dos=$(awk -F'\t' '$3 == "00000000"' "$work/d.tsv" | wc -l)
  flagged=$(awk -F'\t' '$3 == "00000000" && $5 == 1 && $6 ~ /unknown_id/' "$work/d.tsv" | wc -l)
  [ "$dos" -gt 0 ] && [ "$flagged" -eq "$dos" ] || fail "DoS frames flagged: $flagged of $dos"
  # Replay with the baseline makes baseline fields visible to rules.
  printf '%s\n' 'id: t.unknown' 'title: unknown ID' 'level: low' 'tags: [a.b]' \
    'logsource: {product: vehicle, category: can}' \
    'detection: {s: {baseline.reasons: unknown_id}, condition: s}' \
    'suppress: {group-by: [vin], for: 1h}' >"$work/u.yml"
  "$VSOC" replay -q --baseline "$work/a.yaml" --rules "$work/u.yml" "$src/samples/demo.log" >"$work/u.out"
  [ "$(wc -l <"$work/u.out")" -eq 1 ] || fail "baseline rule raised $(wc -l <"$work/u.out") alerts"
  "$VSOC" replay -q --rules "$work/u.yml" "$src/samples/demo.log" >"$work/u0.out"
  [ ! -s "$work/u0.out" ] || fail "baseline rule fired without a baseline"
  # IDS events that go on after the CAN capture ends do not make CAN messages "missing".
  "$VSOC" replay -q --vin 1VSCDEM0000000001 --baseline "$work/a.yaml" \
    "$src/samples/demo.log" "$src/samples/demo-ids.jsonl" >"$work/all.out"
  n=$(jq -r '.finding_info.analytic.uid' "$work/all.out" | grep -c missing-message || true)
  [ "$n" -eq 0 ] || fail "$n missing-message alerts on a capture that just ended"
  ;;
agent-verify)
  # Each envelope of the corpus (signed with tests/data/keys/vsoc-test) gets its verdict.
  c=$src/tests/fuzz/corpus/envelope
  while read -r f want; do
    set +e
    got=$("$VSOC_AGENT" verify --pubkey "$src/tests/data/keys/vsoc-test.pub" \
      --vin WVWZZZ1JZXW000001 --now 2026-11-25T10:01:00Z --last-seq 41 "$c/$f.json" 2>/dev/null)
    rc=$?
    set -e
    [ "$got" = "$want" ] || fail "$f: '$got', expected '$want'"
    case $want in accepted) [ $rc -eq 0 ] ;; *) [ $rc -eq 1 ] ;; esac || fail "$f: exit $rc"
  done <<'EOT'
valid_quarantine accepted
forged_sig rejected: bad_signature
tampered_seq rejected: bad_signature
unknown_key rejected: unknown_key
wrong_vin rejected: wrong_vin
expired rejected: expired
replayed rejected: replayed
unknown_action rejected: unknown_action
EOT
  ;;
keygen)
  "$VSOC" keygen --out "$work/k" --key-id vsoc-e2e 2>/dev/null
  [ "$(stat -c %a "$work/k/vsoc-e2e.key")" = 600 ] || fail "private key is not 0600"
  grep -q "BEGIN PUBLIC KEY" "$work/k/vsoc-e2e.pub" || fail "no public key"
  set +e; "$VSOC" keygen --out "$work/k" --key-id vsoc-e2e 2>/dev/null; rc=$?; set -e
  [ $rc -ne 0 ] || fail "keygen overwrote an existing key"
  ;;
shared-dos)
  need_shared
  "$VSOC" replay --no-progress "$shared/j1939/dos_1ms.log" >"$work/a" 2>"$work/err"
  grep -q "0 skipped" "$work/err" || fail "lines skipped: $(cat "$work/err")"
  [ "$(count_min_level "$work/a" 4)" -ge 1 ] || fail "no high alert on dos_1ms.log"
  ;;
shared-fuzz)
  need_shared
  "$VSOC" replay -q "$shared/j1939/fuzz_id_and_data.log" >"$work/a"
  [ "$(wc -l <"$work/a")" -ge 1 ] || fail "no alert on fuzz_id_and_data.log"
  rules_fired "$work/a" | grep -q "fuzz" || fail "the fuzzing rule did not fire"
  ;;
shared-normal)
  need_shared
  for f in j1939/normal.log opel/benign.log; do
    "$VSOC" replay --no-progress "$shared/$f" >"$work/a" 2>"$work/err"
    grep -q "0 skipped" "$work/err" || fail "$f: lines skipped: $(cat "$work/err")"
    n=$(count_min_level "$work/a" 4)
    [ "$n" -eq 0 ] || fail "$f raised $n high/critical alerts: $(rules_fired "$work/a")"
  done
  ;;
shared-request-overload)
  need_shared
  "$VSOC" replay -q "$shared/j1939/request_overload.log" >"$work/a"
  rules_fired "$work/a" | grep -q "request-overload" || fail "request overload not detected"
  ;;
shared-labelled)
  need_shared
  "$VSOC" replay --no-progress "$shared/labelled-dos/test_data.log" >"$work/a" 2>"$work/err"
  grep -q "2000 events" "$work/err" || fail "labelled capture not fully read: $(cat "$work/err")"
  [ "$(wc -l <"$work/a")" -ge 1 ] || fail "no alert on the labelled DoS capture"
  ;;
shared-baseline)
  # The baseline's acceptance figures on the real captures (bench/eval): frame-level F1 of
  # at least 0.99 on DoS and fuzzing, at most one high alert per vehicle-hour on held-out
  # clean traffic, the doubled-rate injection flagged within a second.
  need_shared
  VSOC_SHARED_DATA=$shared "$src/bench/eval" "$(dirname "$VSOC")" >"$work/eval" 2>&1 ||
    fail "bench/eval failed: $(tail -5 "$work/eval")"
  for c in j1939/dos_1ms j1939/fuzz_id_and_data labelled-dos/test_data; do
    f1=$(awk -v c="$c" '$1 == c && $2 == "frames" { print $NF }' "$work/eval")
    awk -v f="$f1" 'BEGIN { exit !(f + 0 >= 0.99) }' || fail "$c frame F1 $f1 < 0.99"
  done
  awk '$1 ~ /^(j1939\/normal|opel\/benign)$/ { if ($NF + 0 > 1) bad = 1; n++ }
       END { exit bad || n != 2 }' "$work/eval" || fail "held-out high alerts: $(grep -A3 'Held-out' "$work/eval")"
  grep -q "(within 1 s)" "$work/eval" || fail "injection not flagged within 1 s"
  ;;
shared-garbage)
  need_shared
  awk 'NR==10{print "garbage line"} NR==5000{print " (000.100000)  can0  XYZ   [8]  00"} {print}' \
    "$shared/j1939/normal.log" >"$work/g.log"
  "$VSOC" replay --no-progress --out /dev/null "$work/g.log" 2>"$work/err"
  grep -q "g.log:10: " "$work/err" || fail "garbage line 10 not named"
  grep -q "g.log:5001: " "$work/err" || fail "garbage line 5001 not named"
  grep -q "19957 events" "$work/err" || fail "frames lost: $(cat "$work/err")"
  ;;
*)
  fail "unknown test $t"
  ;;
esac
echo "ok: $t"
