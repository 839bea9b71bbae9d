#!/usr/bin/env bash
# playbooks.sh TEST: end-to-end tests of vsoc playbooks. Needs $VSOC and $VSOC_SRC.
# Exits 0 on success, 1 on failure (saying why).
set -euo pipefail
t=$1
src=$VSOC_SRC
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

case $t in
lint-pack)
  # The default playbooks lint clean, warnings included, against the default rule pack.
  "$VSOC" playbooks lint --strict "$src/playbooks" >"$work/out" 2>"$work/err" ||
    fail "default playbooks do not lint clean: $(cat "$work/out" "$work/err")"
  [ ! -s "$work/out" ] || fail "lint printed diagnostics: $(cat "$work/out")"
  n=$(sed -nE 's/^([0-9]+) playbooks in ([0-9]+) files: 0 errors, 0 warnings$/\1/p' "$work/err")
  [ -n "$n" ] && [ "$n" -ge 4 ] || fail "unexpected summary: $(cat "$work/err")"
  # Without PATH, lint reads the default playbooks (the source tree's here).
  VSOC_PLAYBOOKS="$src/playbooks" "$VSOC" playbooks lint --strict 2>"$work/err2" ||
    fail "lint without PATH: $(cat "$work/err2")"
  cmp <(cat "$work/err") "$work/err2" || fail "lint without PATH differs"
  # list: a header and one line per playbook with four tab-separated fields.
  "$VSOC" playbooks list "$src/playbooks" >"$work/list"
  [ "$(head -1 "$work/list")" = "$(printf '# id\trules\tmin_level\tsteps')" ] ||
    fail "list header: $(head -1 "$work/list")"
  [ "$(tail -n +2 "$work/list" | wc -l)" -eq "$n" ] || fail "list has not $n playbooks"
  [ "$(awk -F'\t' 'NR > 1 && NF != 4' "$work/list" | wc -l)" -eq 0 ] || fail "list columns"
  grep -qP '^contain-can-injection\t.*vsoc\.can\.dos-high-priority-flood.*\thigh\tcollect_logs,quarantine,notify$' \
    "$work/list" || fail "contain-can-injection not listed as expected: $(cat "$work/list")"
  # Every trigger glob of the default playbooks matches a rule of the default pack.
  "$VSOC" playbooks lint --strict --no-rules "$src/playbooks" 2>/dev/null || fail "--no-rules"
  ;;
lint-planted)
  set +e
  "$VSOC" playbooks lint "$src/tests/e2e/playbooks-planted" >"$work/out" 2>"$work/err"
  rc=$?
  set -e
  [ $rc -eq 1 ] || fail "lint should exit 1, got $rc"
  sed "s|$src/||g" "$work/out" | diff -u "$src/tests/e2e/playbooks-planted.expected" - ||
    fail "lint output differs from the expected list of located mistakes"
  errors=$(grep -c ': error: ' "$src/tests/e2e/playbooks-planted.expected")
  warnings=$(grep -c ': warning: ' "$src/tests/e2e/playbooks-planted.expected")
  grep -qx "4 playbooks in 5 files: $errors errors, $warnings warnings" "$work/err" ||
    fail "summary: $(cat "$work/err")"
  # --quiet drops the warnings, not the errors; --strict fails on a warning alone.
  set +e
  "$VSOC" playbooks lint -q "$src/tests/e2e/playbooks-planted" >"$work/q" 2>/dev/null
  set -e
  grep -q ': warning: ' "$work/q" && fail "--quiet printed warnings"
  [ "$(wc -l <"$work/q")" -eq "$errors" ] || fail "--quiet lost errors"
  # The one file with warnings only: exit 0, and 1 with --strict.
  awk '/^---$/ {doc++; next} doc == 1' "$src/tests/e2e/playbooks-planted/2-unsafe-quarantine.yml" \
    >"$work/warn.yml"
  "$VSOC" playbooks lint "$work/warn.yml" >"$work/w" 2>/dev/null || fail "warnings alone failed lint"
  [ "$(grep -c ': warning: ' "$work/w")" -eq 2 ] || fail "expected 2 warnings: $(cat "$work/w")"
  set +e
  "$VSOC" playbooks lint --strict "$work/warn.yml" >/dev/null 2>&1; rc=$?
  "$VSOC" playbooks lint --bogus "$work/warn.yml" >/dev/null 2>&1; rc2=$?
  "$VSOC" playbooks >/dev/null 2>&1; rc3=$?
  "$VSOC" playbooks list "$src/tests/e2e/playbooks-planted" >/dev/null 2>"$work/le"; rc4=$?
  set -e
  [ $rc -eq 1 ] || fail "--strict with warnings should exit 1, got $rc"
  [ $rc2 -eq 2 ] || fail "an unknown option should exit 2, got $rc2"
  [ $rc3 -eq 2 ] || fail "no subcommand should exit 2, got $rc3"
  [ $rc4 -eq 1 ] || fail "list of playbooks with errors should exit 1, got $rc4"
  grep -q "errors in playbooks (see vsoc playbooks lint)" "$work/le" || fail "list: $(cat "$work/le")"
  ;;
show)
  # show fills in every default, and what it prints compiles back to the same playbook.
  "$VSOC" playbooks show contain-can-injection "$src/playbooks" >"$work/show"
  for want in "approval: required" "approval_timeout: 15m" "ack_timeout: 1m" "retries: 3" \
              "ttl: 2h" 'vehicle_state: {"speed_kph":{"lte":0}}' "expires: 2m" \
              'args: {"mode":"block_external","segment":"telematics"}' \
              "max_vehicles_per_hour: 50" "on_failure: abort"; do
    grep -qF "    $want" "$work/show" || grep -qF "  $want" "$work/show" ||
      fail "show lacks '$want': $(cat "$work/show")"
  done
  for id in $("$VSOC" playbooks list "$src/playbooks" | tail -n +2 | cut -f1); do
    "$VSOC" playbooks show "$id" "$src/playbooks" >"$work/$id.yml"
    "$VSOC" playbooks lint --strict "$work/$id.yml" >"$work/lint" 2>&1 ||
      fail "show $id does not lint clean: $(cat "$work/lint")"
    "$VSOC" playbooks show "$id" "$work/$id.yml" >"$work/again"
    diff <(tail -n +2 "$work/$id.yml") <(tail -n +2 "$work/again") ||
      fail "show $id is not a fixed point"
  done
  set +e
  "$VSOC" playbooks show contain-can-injecton "$src/playbooks" >/dev/null 2>"$work/err"; rc=$?
  "$VSOC" playbooks show >/dev/null 2>&1; rc2=$?
  set -e
  [ $rc -eq 1 ] || fail "an unknown id should exit 1, got $rc"
  grep -q "did you mean 'contain-can-injection'" "$work/err" || fail "no suggestion: $(cat "$work/err")"
  [ $rc2 -eq 2 ] || fail "show without ID should exit 2, got $rc2"
  for c in "playbooks lint" "playbooks list" "playbooks show"; do
    $VSOC $c --help | grep -q "usage: vsoc playbooks" || fail "vsoc $c --help"
  done
  ;;
*)
  fail "unknown test $t"
  ;;
esac
