#!/usr/bin/env bash
# bench/cycle.sh: the leader's group-commit cycle under redis-benchmark
# writes. Starts a static 3-node async cluster (bench/static.sh) from the
# binary TANDEM (default: built from this tree) and, per test and pipeline
# depth, prints ops/s and p50 (redis-benchmark), the server CPU per op of
# the leader and the two followers (µs, from /proc/PID/stat), the machine's
# idle CPU during the run (% of all cores, /proc/stat) and, where the
# binary exports them (tandem_leader_cycle_*), the cycle's phases per
# group: entries, fsync, apply (Pebble), answer (replies), the waits of an
# Append and an Apply to be taken, and an entry's wait to be appended.
#
# Usage: bench/cycle.sh   Knobs: TANDEM [built here], P (RESP port of
# node 1) [32100], TESTS ["set incr lpush lpop"], PIPELINES ["1 16"],
# N [100000], CLIENTS [50]. For an A/B run it alternately with two builds.
set -euo pipefail
NAME=cycle
P=${P:-32100}
TESTS=${TESTS:-"set incr lpush lpop"}
PIPELINES=${PIPELINES:-"1 16"}
N=${N:-100000}
CLIENTS=${CLIENTS:-50}
# shellcheck source=bench/static.sh
. "$(dirname "${BASH_SOURCE[0]}")/static.sh"
HTTP=$((P + 200))
metrics() { curl -s --max-time 2 "http://127.0.0.1:$HTTP/metrics" | grep '^tandem_leader_cycle' || true; }
idle() { awk '/^cpu /{print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
val() { awk -v k="$2" '$1 == k {print $2}' <<<"$1"; }
printf '%-6s %3s %8s %6s %18s %5s | %5s %6s %6s %6s %6s %6s %6s %6s %6s\n' test P ops/s p50 "cpu µs/op L/F/F" idle% ent/g fsync gap appdly apply answer rest apldly queued
for t in $TESTS; do
  for pl in $PIPELINES; do
    m0=$(metrics) c0=$(cpu "$L") c1=$(cpu "$F1") c2=$(cpu "$F2")
    read -r i0 a0 < <(idle)
    out=$(redis-benchmark -p "$P" -t "$t" -c "$CLIENTS" -n "$N" -P "$pl" -r 100000 -d 100 --csv 2>/dev/null | tail -1)
    read -r i1 a1 < <(idle)
    m1=$(metrics) d0=$(($(cpu "$L") - c0)) d1=$(($(cpu "$F1") - c1)) d2=$(($(cpu "$F2") - c2))
    rps=$(cut -d, -f2 <<<"$out" | tr -d '"') p50=$(cut -d, -f5 <<<"$out" | tr -d '"')
    tick=$(getconf CLK_TCK)
    us() { awk -v d="$1" -v n="$N" -v t="$tick" 'BEGIN{printf "%.1f", d * 1e6 / t / n}'; }
    idl=$(awk -v a="$((i1 - i0))" -v b="$((a1 - a0))" 'BEGIN{printf "%.0f", b ? 100 * a / b : 0}')
    cyc=""
    if [ -n "$m1" ]; then
      d() { awk -v a="$(val "$m1" "$1")" -v b="$(val "$m0" "$1")" 'BEGIN{print a - b}'; }
      g=$(d 'tandem_leader_cycle_total{kind="appends"}') e=$(d 'tandem_leader_cycle_total{kind="entries"}')
      ap=$(d 'tandem_leader_cycle_total{kind="applies"}')
      per() { awk -v s="$(d "tandem_leader_cycle_seconds_total{phase=\"$1\"}")" -v n="$2" 'BEGIN{printf "%.0f", n ? s * 1e6 / n : 0}'; }
      cyc=$(printf '%5.1f %6s %6s %6s %6s %6s %6s %6s %6s' "$(awk -v e="$e" -v g="$g" 'BEGIN{print g ? e / g : 0}')" \
        "$(per fsync "$g")" "$(per append_gap "$g")" "$(per append_delay "$g")" "$(per apply "$ap")" \
        "$(per answer "$ap")" "$(per apply_rest "$ap")" "$(per apply_delay "$ap")" "$(per queued "$e")")
    fi
    printf '%-6s %3s %8s %6s %18s %5s | %s\n' "$t" "$pl" "$rps" "$p50" "$(us $d0)/$(us $d1)/$(us $d2)" "$idl" "$cyc"
  done
done
printf 'load %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
