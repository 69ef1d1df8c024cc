#!/usr/bin/env bash
# bench/idle.sh: the CPU an idle cluster burns. Starts `tandem up` (3 nodes,
# its orchestrators, proxy and embedded etcd) and a Redis primary + 2
# replicas (appendonly yes, appendfsync always), sends nothing, waits
# SETTLE seconds, then samples every process's CPU time (user + system,
# /proc/PID/stat) over SECS seconds and prints each one's percent of a core
# and each side's total, with the tandem/Redis ratio, and each process's
# wake-ups per second (context switches of its threads: exact, where CPU
# time on a busy machine is noisy). See bench/README.md.
#
# Usage (from anywhere):  bench/idle.sh
# Environment knobs (defaults in brackets):
#   SETTLE   seconds after the cluster is ready before sampling   [15]
#   SECS     sampling window in seconds                            [5]
#   MODE     tandem up --mode                                      [tandem up's default]
#   NODES    tandem up --nodes (Redis gets NODES-1 replicas)       [3]
#   TANDEM   a tandem binary to use instead of building ./cmd/tandem
#   KEEP     1 = keep the temp dir (data, logs)                    [0]
# Exit status: 0 when both targets hold (leader < 1% of a core, the whole
# tandem cluster < 3%), 2 when a target is missed, 1 on error.
set -euo pipefail

SETTLE=${SETTLE:-15}
SECS=${SECS:-5}
MODE=${MODE:-}
NODES=${NODES:-3}
KEEP=${KEEP:-0}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$PATH:/usr/local/go/bin

say() { printf '%s\n' "$*"; }
die() { printf 'idle: %s\n' "$*" >&2; exit 1; }
for c in redis-server redis-cli curl jq setsid; do command -v "$c" >/dev/null || die "needs $c (bench/run.sh installs them)"; done

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_ports() { # the proxy on T-1, nodes T.., peer T+100.., HTTP T+200.., Redis T+50..
  local try t p ok
  for try in $(seq 1 200); do
    t=$((20000 + (RANDOM % 120) * 100 + RANDOM % 40))
    ok=1
    for p in $((t - 1)) $((t + 199)) $(seq "$t" $((t + NODES - 1))) $(seq $((t + 100)) $((t + 99 + NODES))) \
      $(seq $((t + 200)) $((t + 199 + NODES))) $(seq $((t + 50)) $((t + 49 + NODES))); do
      port_free "$p" || { ok=0; break; }
    done
    if [ $ok = 1 ]; then T_PORT=$t; T_HTTP=$((t + 200)); R_PORT=$((t + 50)); return; fi
  done
  die "no free port range found"
}

ticks() { awk '{printf "%d", $14 + $15}' "/proc/$1/stat" 2>/dev/null || printf 0; }
# switches pid -> context switches of all its threads so far: each is a
# thread going to sleep or being preempted, so their rate counts the
# process's wake-ups, exactly, where CPU time on a busy machine is noisy
# and counted in 10 ms ticks.
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/_ctxt_switches/ {s += $2} END {printf "%d", s}'; }
# children pid -> the pids whose parent is pid
children() { local s; for s in /proc/[0-9]*/stat; do awk -v p="$1" '$4 == p {print $1}' "$s" 2>/dev/null; done; }
label() { # pid -> what the process is, from its command line
  local args
  args=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true)
  case "$args" in
  *" up "*) echo "tandem up (embedded etcd)" ;;
  *" server "*) sed -n 's/.*--id \([^ ]*\).*/node \1/p' <<<"$args" ;;
  *" orchestrator "*) sed -n 's/.*--id \([^ ]*\).*/orchestrator \1/p' <<<"$args" ;;
  *" proxy "*) echo "proxy" ;;
  *redis-server*) sed -n 's/.*:\([0-9]*\).*/redis :\1/p' <<<"$args" ;;
  *) echo "pid $1" ;;
  esac
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-idle.XXXXXX")
UP_PID=""
REDIS_PIDS=()
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local p
  trap - EXIT INT TERM
  [ -z "$UP_PID" ] || stop_pid "$UP_PID"
  for p in "${REDIS_PIDS[@]}"; do stop_pid "$p"; done
  if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

if [ -z "${TANDEM:-}" ]; then
  TANDEM=$WORK/bin/tandem # not $WORK/tandem: that is the cluster's dir
  (cd "$REPO" && go build -o "$TANDEM" ./cmd/tandem) || die "go build failed"
fi
pick_ports

args=(up --dir "$WORK/tandem" --nodes "$NODES" --port $((T_PORT - 1)) --sentinel-port 0)
[ -z "$MODE" ] || args+=(--mode "$MODE")
setsid "$TANDEM" "${args[@]}" >"$WORK/up.log" 2>&1 &
UP_PID=$!
common=(--bind 127.0.0.1 --protected-mode no --appendonly yes --appendfsync always --save "" --daemonize no)
for ((i = 0; i < NODES; i++)); do
  mkdir -p "$WORK/redis$i"
  if [ $i = 0 ]; then
    redis-server --port "$R_PORT" --dir "$WORK/redis$i" --logfile "$WORK/redis$i/redis.log" "${common[@]}" &
  else
    redis-server --port $((R_PORT + i)) --dir "$WORK/redis$i" --logfile "$WORK/redis$i/redis.log" "${common[@]}" --replicaof 127.0.0.1 "$R_PORT" &
  fi
  REDIS_PIDS+=($!)
done

# Ready: tandem up printed its cluster (the leader leads, the followers
# follow) and the Redis primary has its replicas.
for ((i = 0; i < 600; i++)); do
  kill -0 "$UP_PID" 2>/dev/null || { cat "$WORK/up.log" >&2; die "tandem up exited"; }
  if grep -q '^status:' "$WORK/up.log" &&
    redis-cli -p "$R_PORT" info replication 2>/dev/null | grep -q "^connected_slaves:$((NODES - 1))"; then
    break
  fi
  sleep 0.1
done
((i < 600)) || { cat "$WORK/up.log" >&2; die "clusters not ready after 60 s"; }
LEADER=$(awk '$2 == "leader" {print $1}' "$WORK/up.log")
sleep "$SETTLE"

PIDS=("$UP_PID" $(children "$UP_PID") "${REDIS_PIDS[@]}")
declare -A B
declare -A W
for p in "${PIDS[@]}"; do B[$p]=$(ticks "$p"); W[$p]=$(switches "$p"); done
sleep "$SECS"
HZ=$(getconf CLK_TCK)
{
  for p in "${PIDS[@]}"; do
    side=tandem
    case " ${REDIS_PIDS[*]} " in *" $p "*) side=redis ;; esac
    l=$(label "$p")
    [ "$l" != "node $LEADER" ] || l="$l (leader)"
    printf '%s\t%s\t%s\t%s\t%s\n' "$side" "$l" "$p" $(($(ticks "$p") - B[$p])) $(($(switches "$p") - W[$p]))
  done
} | awk -F'\t' -v hz="$HZ" -v secs="$SECS" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" '
  { pct = $4 / hz / secs * 100; tot[$1] += pct; wk = $5 / secs; wtot[$1] += wk
    printf "  %-6s %-28s pid %-7s %6.2f%%  %6.0f wake-ups/s\n", $1, $2, $3, pct, wk
    if ($2 ~ /\(leader\)/) leader = pct }
  END {
    printf "  total  tandem %.2f%% of a core, redis %.2f%% (tandem/redis %s)  load average %s\n",
      tot["tandem"], tot["redis"], (tot["redis"] > 0 ? sprintf("%.0fx", tot["tandem"] / tot["redis"]) : "n/a (redis under one tick)"), load
    printf "  wake-ups tandem %.0f/s, redis %.0f/s\n", wtot["tandem"], wtot["redis"]
    ok = leader < 1 && tot["tandem"] < 3
    printf "  targets: leader %.2f%% < 1%%: %s; cluster %.2f%% < 3%%: %s\n", leader, (leader < 1 ? "yes" : "NO"), tot["tandem"], (tot["tandem"] < 3 ? "yes" : "NO")
    exit ok ? 0 : 2 }'
