#!/usr/bin/env bash
# fleet.sh: end-to-end test of fleet_count in vsoc replay. Generates IDS events of several
# vehicles, replays them through the pack's fleet rule for SecOC failures (5 vehicles within
# 1 h) and checks that exactly one fleet alert is written, with the uid derived from the rule
# and the time of the fifth vehicle's hit, the vehicle count and the sample of vins; that the
# per-vehicle hits are never written; that the response side stores the alert under the
# fleet uid; and that 4 vehicles, or 5 spread over more than an hour, raise nothing.
# Needs $VSOC, $VSOC_SRC, jq, sha256sum, sqlite3. Exits 0 on success, 1 on failure.
set -euo pipefail
src=$VSOC_SRC
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
RULE=vsoc.fleet.secoc-failures-fleet-wide
RULES=$src/rules/fleet/secoc-failures-fleet-wide.yml
T0=1764064800

fail() {
  echo "FAIL: $*" >&2
  [ -s "$work/err" ] && { echo "--- replay stderr:" >&2; cat "$work/err" >&2; }
  exit 1
}

# events FILE N STEP: vehicles FLEETVIN00000000{1..N}, the i-th STEP seconds after the one
# before, each with a burst of three SecOC failures (one hit: the throttle) and unrelated
# events around it.
events() {
  local out=$1 n=$2 step=$3
  : >"$out"
  for i in $(seq 1 "$n"); do
    local vin t
    vin=$(printf 'FLEETVIN%09d' "$i")
    t=$((T0 + (i - 1) * step))
    printf '{"vin":"%s","ts":%d,"type":"firewall.drop","iface":"eth0","src_ip":"198.51.100.%d","dst_ip":"10.0.0.2","dst_port":443,"proto":"tcp"}\n' \
      "$vin" "$((t - 1))" "$i" >>"$out"
    for k in 0 1 2; do
      printf '{"vin":"%s","ts":%d.%d00,"type":"secoc.verification_failed","ecu":"BCM","can_id":291,"freshness":%d}\n' \
        "$vin" "$t" "$k" "$((1000 + k))" >>"$out"
    done
  done
}

# The uid vsoc derives for a fleet alert (docs/alerts.md): SHA-256 over "fleet", the rule
# id and the time in microseconds, each followed by a NUL byte, shaped as a UUIDv8.
fleet_uid() {
  local h b6 b8
  h=$(printf 'fleet\0%s\0%s\0' "$1" "$2" | sha256sum | cut -c1-32)
  b6=$(printf '%02x' $(((16#${h:12:2} & 0x0F) | 0x80)))
  b8=$(printf '%02x' $(((16#${h:16:2} & 0x3F) | 0x80)))
  h=${h:0:12}$b6${h:14:2}$b8${h:18}
  echo "${h:0:8}-${h:8:4}-${h:12:4}-${h:16:4}-${h:20:12}"
}

replay() { # replay INPUT OUT [OPTIONS...]
  local in=$1 out=$2
  shift 2
  "$VSOC" replay --no-progress --rules "$RULES" "$@" "$in" >"$out" 2>"$work/err" ||
    fail "vsoc replay exited $?"
}

# Six vehicles a minute apart: the fifth (at T0 + 240 s) raises the one fleet alert.
events "$work/six.jsonl" 6 60
replay "$work/six.jsonl" "$work/six.out" --no-playbooks
n=$(wc -l <"$work/six.out")
[ "$n" -eq 1 ] || fail "6 vehicles wrote $n alerts, expected exactly 1 (hits must not be written)"
want=$(fleet_uid "$RULE" "$(((T0 + 240) * 1000000))")
jq -e --arg uid "$want" --arg rule "$RULE" '
  .class_uid == 2004 and .finding_info.uid == $uid and .finding_info.analytic.uid == $rule
  and .finding_info.types == ["fleet_count"] and .count == 5 and .severity_id == 4
  and .time == ('"$(((T0 + 240) * 1000))"') and .start_time == ('"$((T0 * 1000))"')
  and .end_time == .time and .evidences[0].data.count == 5
  and .vehicle.vin == "FLEETVIN000000005" and .vehicle.fleet.vehicles == 5
  and .vehicle.fleet.vins == ["FLEETVIN000000005", "FLEETVIN000000004", "FLEETVIN000000003",
                              "FLEETVIN000000002", "FLEETVIN000000001"]
  and (.evidences[0].data.samples | length) == 1
  and (.evidences[0].data.samples[0] | test("FLEETVIN000000005"))' "$work/six.out" >/dev/null ||
  fail "the fleet alert is not as expected (uid $want): $(cat "$work/six.out")"
grep -q '^alerts: 1$' "$work/err" || fail "the summary does not count 1 alert"
grep -qE "^  $RULE +high +1\$" "$work/err" || fail "the summary has no line for $RULE with 1"

# The same input gives byte-identical output.
replay "$work/six.jsonl" "$work/six2.out" --no-playbooks
cmp -s "$work/six.out" "$work/six2.out" || fail "two replays differ"

# The response side gets the fleet alert under the fleet uid (and the vehicle that raised it).
replay "$work/six.jsonl" "$work/db.out" --db "$work/f.db"
cmp -s "$work/six.out" "$work/db.out" || fail "the alerts differ with --db"
got=$(sqlite3 "$work/f.db" "SELECT uid || ' ' || rule_id || ' ' || vin FROM alerts")
[ "$got" = "$want $RULE FLEETVIN000000005" ] || fail "the store holds '$got'"
replay "$work/six.jsonl" "$work/db2.out" --db "$work/f.db"
[ "$(sqlite3 "$work/f.db" "SELECT count(*) FROM alerts")" = 1 ] ||
  fail "a second replay into the store duplicated the fleet alert"

# Four vehicles are below the threshold.
events "$work/four.jsonl" 4 60
replay "$work/four.jsonl" "$work/four.out" --no-playbooks
[ ! -s "$work/four.out" ] || fail "4 vehicles raised: $(cat "$work/four.out")"
grep -q '^alerts: 0$' "$work/err" || fail "the summary does not count 0 alerts"

# Five vehicles 20 minutes apart span 80 minutes: never five within the hour.
events "$work/slow.jsonl" 5 1200
replay "$work/slow.jsonl" "$work/slow.out" --no-playbooks
[ ! -s "$work/slow.out" ] || fail "5 vehicles over 80 minutes raised: $(cat "$work/slow.out")"
echo "ok"
