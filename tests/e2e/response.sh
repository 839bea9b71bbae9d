#!/usr/bin/env bash
# response.sh TEST: end-to-end tests of the response side of vsoc replay (incidents, playbook
# runs, signed commands to the in-process loopback agent, acks), the store and the commands
# that read it. Needs $VSOC, $VSOC_AGENT, $VSOC_SRC; sqlite3 for the tampering test.
# Exits 0 on success, 1 on failure (saying why).
set -euo pipefail
t=$1
src=$VSOC_SRC
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
VIN=1VSCDEM0000000001

fail() {
  echo "FAIL ($t): $*" >&2
  [ -s "$work/err" ] && { echo "--- replay stderr (last lines):" >&2; tail -n 20 "$work/err" >&2; }
  exit 1
}

# replay DB [OPTIONS...]: the demo sample into DB, signed with the test key; stderr in err.
replay() {
  local db=$1
  shift
  "$VSOC" replay --no-progress --vin "$VIN" --key "$work/keys/vsoc-e2e.key" --db "$db" "$@" \
    "$src/samples/demo.log" "$src/samples/demo-ids.jsonl" >"$work/alerts.jsonl" 2>"$work/err" ||
    fail "vsoc replay exited $?"
}
cmds_json() { "$VSOC" commands list --db "$1" --json; }
mkdir -p "$work/keys"
"$VSOC" keygen --out "$work/keys" --key-id vsoc-e2e >/dev/null

case $t in
loop)
  # The default: auto steps go out and come back acked; steps that need people wait.
  replay "$work/d.db"
  for ev in incident.opened run.started command.sent ack command.acked \
    command.pending_approval notify run.done; do
    grep -q " $ev " "$work/err" || fail "the response log has no $ev line"
  done
  grep -q '^ *{"v":1,"cmd_id":' "$work/err" || fail "the log does not show a signed envelope"
  grep -q "applied from $VIN (signature verified)" "$work/err" || fail "no verified applied ack"
  n=$("$VSOC" incidents list --db "$work/d.db" --json | wc -l)
  [ "$n" -ge 1 ] || fail "no incident in the store"
  cmds_json "$work/d.db" >"$work/cmds"
  acked=$(jq -r 'select(.state == "acked") | .cmd_id' "$work/cmds" | head -1)
  [ -n "$acked" ] || fail "no acked command in the store"
  jq -s -e 'any(.[]; .action == "quarantine" and .state == "pending_approval")' "$work/cmds" \
    >/dev/null || fail "no quarantine waits for approval"
  # The envelope exactly as sent verifies offline with the public key, at its issue time.
  "$VSOC" commands export "$acked" --db "$work/d.db" >"$work/env.json"
  issued=$(jq -r .issued_at "$work/env.json")
  out=$("$VSOC_AGENT" verify --pubkey "$work/keys/vsoc-e2e.pub" --vin "$VIN" --now "$issued" \
    "$work/env.json") || fail "the exported envelope does not verify: $out"
  [ "$out" = accepted ] || fail "verify said '$out'"
  # One byte changed in the args: the signature no longer holds.
  sed 's/"minutes":1/"minutes":2/' "$work/env.json" >"$work/forged.json"
  set +e
  out=$("$VSOC_AGENT" verify --pubkey "$work/keys/vsoc-e2e.pub" --now "$issued" \
    "$work/forged.json")
  set -e
  [ "$out" = "rejected: bad_signature" ] || fail "a forged envelope gave '$out'"
  "$VSOC" audit verify --db "$work/d.db" >/dev/null || fail "audit verify fails on a fresh store"
  ;;
approve)
  replay "$work/d.db"
  cmds_json "$work/d.db" >"$work/cmds"
  one=$(jq -r 'select(.state == "pending_approval" and .approval == "required") | .cmd_id' \
    "$work/cmds" | head -1)
  two=$(jq -r 'select(.state == "pending_approval" and .approval == "two_person") | .cmd_id' \
    "$work/cmds" | head -1)
  [ -n "$one" ] && [ -n "$two" ] || fail "the demo should leave a required and a two_person command"
  "$VSOC" commands approve "${one:0:8}" --by alice --db "$work/d.db" >"$work/out" ||
    fail "approve by alice failed"
  grep -q queued "$work/out" || fail "one approval should queue a required command: $(cat "$work/out")"
  "$VSOC" commands approve "$two" --by alice --db "$work/d.db" >"$work/out" || fail "approve"
  grep -q "second person" "$work/out" || fail "two_person after one: $(cat "$work/out")"
  set +e
  "$VSOC" commands approve "$two" --by alice --db "$work/d.db" >"$work/out" 2>&1
  rc=$?
  set -e
  [ $rc -eq 1 ] || fail "the same person approving twice should exit 1, got $rc"
  "$VSOC" commands approve "$two" --by bob --db "$work/d.db" >"$work/out" || fail "approve by bob"
  grep -q queued "$work/out" || fail "two people should queue it: $(cat "$work/out")"
  st=$(cmds_json "$work/d.db" | jq -r "select(.cmd_id == \"$two\") | .state")
  [ "$st" = queued ] || fail "after two approvals the command is $st"
  # Not signed yet: nothing to export.
  set +e
  "$VSOC" commands export "$two" --db "$work/d.db" >/dev/null 2>&1
  rc=$?
  set -e
  [ $rc -eq 1 ] || fail "export of an unsigned command should exit 1, got $rc"
  "$VSOC" audit show --db "$work/d.db" | grep -q "bob" || fail "the approval is not in the audit log"
  "$VSOC" audit verify --db "$work/d.db" >/dev/null || fail "audit verify after approvals"
  ;;
idempotent)
  replay "$work/d.db"
  a1=$("$VSOC" audit show --db "$work/d.db" --json | wc -l)
  cmds_json "$work/d.db" >"$work/c1"
  replay "$work/d.db"
  a2=$("$VSOC" audit show --db "$work/d.db" --json | wc -l)
  cmds_json "$work/d.db" >"$work/c2"
  [ "$a1" = "$a2" ] || fail "a second replay added audit rows ($a1 -> $a2)"
  cmp -s "$work/c1" "$work/c2" || fail "a second replay changed the commands"
  grep -q "^incidents: 0 new" "$work/err" || fail "the second replay opened incidents"
  ;;
determinism)
  # Two stores, same key: the same commands, byte for byte, and the same response log.
  replay "$work/a.db"
  grep -v "^elapsed" "$work/err" >"$work/log.a"
  replay "$work/b.db"
  grep -v "^elapsed" "$work/err" | sed "s#$work/b.db#$work/a.db#g" >"$work/log.b"
  cmp -s "$work/log.a" "$work/log.b" || fail "two replays logged different responses"
  cmp -s <(cmds_json "$work/a.db") <(cmds_json "$work/b.db") ||
    fail "two replays stored different commands"
  ;;
approve-all)
  replay "$work/d.db" --approve-all
  grep -q "^vsoc replay: --approve-all: EVERY COMMAND" "$work/err" || fail "no loud banner"
  grep -q "^WARNING: --approve-all" "$work/err" || fail "no warning in the summary"
  grep -q "approved by --approve-all, not by a person" "$work/err" || fail "approvals not marked"
  if cmds_json "$work/d.db" | jq -s -e 'any(.[]; .state == "pending_approval")' >/dev/null; then
    fail "a command still waits for approval"
  fi
  # The diagnostics quarantine is applied and contains the incident; the CAN one is
  # deferred by the vehicle's state gate: the truck drives at about 55 km/h.
  grep -q "deferred from $VIN: vehicle_state: speed" "$work/err" || fail "no deferral by the gate"
  "$VSOC" incidents list --db "$work/d.db" --json | jq -s -e 'any(.[]; .state == "contained")' \
    >/dev/null || fail "no contained incident"
  ;;
dry-run)
  replay "$work/d.db" --dry-run --approve-all
  grep -q " command.dry_run " "$work/err" || fail "no command shown"
  grep -q "would send quarantine" "$work/err" || fail "the quarantine is not shown"
  [ ! -e "$work/d.db" ] || fail "a dry run created the store"
  # Into an existing store: it resumes from it but adds nothing.
  replay "$work/e.db" --no-playbooks
  a1=$("$VSOC" audit show --db "$work/e.db" --json | wc -l)
  replay "$work/e.db" --dry-run --approve-all
  a2=$("$VSOC" audit show --db "$work/e.db" --json | wc -l)
  [ "$a1" = "$a2" ] || fail "a dry run wrote to the store ($a1 -> $a2 audit rows)"
  if grep -q " ack " "$work/err"; then fail "a dry run sent something"; fi
  ;;
no-key)
  "$VSOC" replay --no-progress --vin "$VIN" "$src/samples/demo.log" >/dev/null 2>"$work/err" ||
    fail "replay without a key failed"
  grep -q "throwaway key" "$work/err" || fail "the throwaway key is not mentioned"
  ;;
bad-playbook)
  mkdir "$work/pb"
  printf 'id: broken\ntitle: Broken\ntrigger: {rules: ["vsoc.*"]}\nsteps:\n  - id: a\n    action: explode\n' \
    >"$work/pb/broken.yml"
  set +e
  "$VSOC" replay --no-progress --playbooks "$work/pb" "$src/samples/demo.log" >/dev/null \
    2>"$work/err"
  rc=$?
  set -e
  [ $rc -eq 2 ] || fail "a broken playbook should exit 2, got $rc"
  grep -q "$work/pb/broken.yml:6:[0-9]*: error:" "$work/err" || fail "no located error"
  ;;
tamper)
  command -v sqlite3 >/dev/null || fail "sqlite3 is not installed"
  replay "$work/d.db"
  "$VSOC" audit verify --db "$work/d.db" >/dev/null || fail "fresh store does not verify"
  cp "$work/d.db" "$work/e.db"
  triggers=$(sqlite3 "$work/d.db" "SELECT name FROM sqlite_master WHERE type = 'trigger'")
  [ -n "$triggers" ] || fail "the audit table has no guarding triggers"
  # Through the guard, a change is refused.
  sqlite3 "$work/d.db" "UPDATE audit SET detail = 'x' WHERE seq = 3" 2>/dev/null &&
    fail "the audit table accepted an UPDATE"
  drop=""
  for tr in $triggers; do drop="$drop DROP TRIGGER $tr;"; done
  sqlite3 "$work/d.db" "$drop UPDATE audit SET detail = 'nothing happened' WHERE seq = 3"
  set +e
  out=$("$VSOC" audit verify --db "$work/d.db")
  rc=$?
  set -e
  [ $rc -eq 1 ] || fail "a changed row: audit verify exited $rc"
  echo "$out" | grep -q "row 3" || fail "verify does not name row 3: $out"
  sqlite3 "$work/e.db" "$drop DELETE FROM audit WHERE seq = 5"
  set +e
  out=$("$VSOC" audit verify --db "$work/e.db")
  rc=$?
  set -e
  [ $rc -eq 1 ] || fail "a deleted row: audit verify exited $rc"
  echo "$out" | grep -q "row 5" || fail "verify does not name the deleted row 5: $out"
  ;;
shared)
  # A real capture (a DoS on a J1939 truck) through the default playbooks: an incident, the
  # CAN containment playbook with its evidence request acked and its quarantine waiting
  # for a person; a benign capture gives no incident.
  shared=${VSOC_SHARED_DATA:-$src/../shared/data/can}
  if [ ! -d "$shared" ]; then
    echo "SKIP: $shared not found (the real captures live beside the checkout in CI)"
    exit 77
  fi
  "$VSOC" replay --no-progress --key "$work/keys/vsoc-e2e.key" --db "$work/d.db" \
    "$shared/j1939/dos_1ms.log" >/dev/null 2>"$work/err" || fail "replay failed"
  "$VSOC" incidents list --db "$work/d.db" --json | jq -s -e 'any(.[]; .level == "high" or
    .level == "critical")' >/dev/null || fail "no high incident for dos_1ms"
  grep -q "run.started .* playbook contain-can-injection" "$work/err" ||
    fail "the CAN containment playbook did not start"
  cmds_json "$work/d.db" | jq -s -e 'any(.[]; .action == "collect_logs" and .state == "acked")
    and any(.[]; .action == "quarantine" and .state == "pending_approval")' >/dev/null ||
    fail "expected an acked evidence request and a quarantine waiting for approval"
  "$VSOC" audit verify --db "$work/d.db" >/dev/null || fail "audit verify"
  "$VSOC" replay --no-progress --db "$work/b.db" "$shared/opel/benign.log" >/dev/null \
    2>"$work/err" || fail "replay of benign.log failed"
  grep -q "^incidents: 0 new" "$work/err" || fail "benign.log opened an incident"
  ;;
*)
  fail "unknown test"
  ;;
esac
