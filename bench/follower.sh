#!/usr/bin/env bash
# bench/follower.sh: what a follower costs per replicated write. Runs a
# tandem cluster (leader + 2 followers, async, `tandem up`) and Redis
# (primary + 2 replicas, appendfsync always), sends the same
# redis-benchmark SET load to each leader/primary, and prints the server
# CPU per SET of every process (user + system, from /proc), the ratio of a
# tandem follower's to a Redis replica's, and, with STRACE=1, the system
# calls per SET of one follower (strace -c -f, in a second run: strace
# slows what it traces) and its log appends (fsyncs) per SET from /metrics.
#
# Usage (as root, from anywhere):  bench/follower.sh
# Knobs: N [100000], CLIENTS [50], DATA_SIZE [100], KEYSPACE [100000],
#        PIPELINES ["1 16"], STRACE [1], PROFILE [0] (1: a 10 s CPU profile
#        of a follower under SET -P each pipeline, top 30 printed),
#        REDIS [1] (0: tandem alone), KEEP [0], TANDEM_BIN [built from
#        this checkout] (another build, for an A/B on one machine state).
set -euo pipefail

N=${N:-100000}
CLIENTS=${CLIENTS:-50}
DATA_SIZE=${DATA_SIZE:-100}
KEYSPACE=${KEYSPACE:-100000}
PIPELINES=${PIPELINES:-"1 16"}
STRACE=${STRACE:-1}
PROFILE=${PROFILE:-0}
REDIS=${REDIS:-1}
KEEP=${KEEP:-0}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$PATH:/usr/local/go/bin
say() { printf '%s\n' "$*"; }
die() { printf 'follower bench: %s\n' "$*" >&2; exit 1; }

command -v redis-benchmark >/dev/null || die "needs redis-benchmark (apt-get install redis-tools)"
command -v jq >/dev/null || die "needs jq"
[ "$STRACE" = 0 ] || command -v strace >/dev/null || die "needs strace (or STRACE=0)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-follower-bench.XXXXXX")
if [ -n "${TANDEM_BIN:-}" ]; then
  TANDEM=$TANDEM_BIN
else
  TANDEM=$WORK/bin/tandem
  say "building tandem..."
  (cd "$REPO" && go build -o "$TANDEM" ./cmd/tandem) || die "build failed"
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
T_PORT=""
for try in $(seq 1 200); do
  t=$((20000 + (RANDOM % 120) * 100 + RANDOM % 40)) ok=1
  for p in $((t - 1)) $((t + 199)) $t $((t + 1)) $((t + 2)) $((t + 100)) $((t + 101)) $((t + 102)) $((t + 200)) $((t + 201)) $((t + 202)) $((t + 50)) $((t + 51)) $((t + 52)); do
    port_free "$p" || { ok=0; break; }
  done
  if [ $ok = 1 ]; then T_PORT=$t; break; fi
done
[ -n "$T_PORT" ] || die "no free port range"
T_HTTP=$((T_PORT + 200)) R_PORT=$((T_PORT + 50))

PIDS=() UP_PID="" NODE_PIDS=()
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  [ -z "$UP_PID" ] || stop_pid "$UP_PID"
  for p in "${NODE_PIDS[@]}" "${PIDS[@]}"; do stop_pid "$p"; done
  if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT INT TERM

ticks() { local p; for p in "$@"; do awk '{printf "%d ", $14 + $15}' "/proc/$p/stat" 2>/dev/null || printf '0 '; done; }
per_op() { # "before" "after" ops -> one µs/op figure per pid
  awk -v b="$1" -v a="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN{
    k = split(b, B, " "); split(a, A, " ")
    for (i = 1; i <= k; i++) printf "%s%.1f", (i > 1 ? " " : ""), (A[i] - B[i]) / hz * 1e6 / n }'
}
set_load() { # port pipe n
  redis-benchmark -h 127.0.0.1 -p "$1" -t set -c "$CLIENTS" -n "$3" -d "$DATA_SIZE" -r "$KEYSPACE" -P "$2" --csv 2>/dev/null |
    awk -F, '/^"SET"/{gsub(/"/,"",$2); print $2}'
}
metric() { # http-port name -> value
  curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1==n{print $2; exit}'
}

say "starting tandem (3 nodes, async) on $T_PORT..."
setsid "$TANDEM" up --dir "$WORK/tandem" --nodes 3 --port "$((T_PORT - 1))" --mode async --sentinel-port 0 >"$WORK/up.log" 2>&1 &
UP_PID=$!
for ((i = 0; i < 600; i++)); do
  kill -0 "$UP_PID" 2>/dev/null || { cat "$WORK/up.log" >&2; die "tandem up exited"; }
  if [ "$(redis-cli -p "$T_PORT" ping 2>/dev/null)" = PONG ] &&
    [ "$(curl -s --max-time 1 "http://127.0.0.1:$T_HTTP/status" | jq '[.followers[]? | select(.connected)] | length' 2>/dev/null)" = 2 ]; then
    for n in 0 1 2; do NODE_PIDS+=("$(curl -s --max-time 1 "http://127.0.0.1:$((T_HTTP + n))/status" | jq -r .pid)"); done
    break
  fi
  sleep 0.1
done
[ ${#NODE_PIDS[@]} = 3 ] || die "tandem not ready after 60 s"

R_PIDS=()
if [ "$REDIS" = 1 ]; then
  common=(--bind 127.0.0.1 --protected-mode no --appendonly yes --appendfsync always --save "" --daemonize no)
  mkdir -p "$WORK/r0" "$WORK/r1" "$WORK/r2"
  redis-server --port "$R_PORT" --dir "$WORK/r0" --logfile "$WORK/r0/log" "${common[@]}" & PIDS+=($!) R_PIDS+=($!)
  for r in 1 2; do
    redis-server --port "$((R_PORT + r))" --dir "$WORK/r$r" --logfile "$WORK/r$r/log" "${common[@]}" --replicaof 127.0.0.1 "$R_PORT" &
    PIDS+=($!) R_PIDS+=($!)
  done
  for ((i = 0; i < 600; i++)); do
    redis-cli -p "$R_PORT" info replication 2>/dev/null | grep -q '^connected_slaves:2' && break
    sleep 0.1
  done
fi

say "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
say "SET -c $CLIENTS -d $DATA_SIZE -n $N; server CPU µs per SET (user+system, /proc):"
printf '  %-4s %10s %10s %22s %10s %22s %10s\n' P "tandem/s" "leader" "followers" "redis/s" "replicas" "follower/replica"
for pipe in $PIPELINES; do
  set_load "$T_PORT" "$pipe" 20000 >/dev/null # warm up
  b=$(ticks "${NODE_PIDS[@]}") a1=$(metric $((T_HTTP + 1)) tandem_log_appends_total)
  trps=$(set_load "$T_PORT" "$pipe" "$N")
  a=$(ticks "${NODE_PIDS[@]}") a2=$(metric $((T_HTTP + 1)) tandem_log_appends_total)
  read -r tl tf1 tf2 <<<"$(per_op "$b" "$a" "$N")"
  rrps="-" rp="-" rr1="-" rr2="-" ratio="-"
  if [ "$REDIS" = 1 ]; then
    set_load "$R_PORT" "$pipe" 20000 >/dev/null
    b=$(ticks "${R_PIDS[@]}")
    rrps=$(set_load "$R_PORT" "$pipe" "$N")
    a=$(ticks "${R_PIDS[@]}")
    read -r rp rr1 rr2 <<<"$(per_op "$b" "$a" "$N")"
    ratio=$(awk -v a="$tf1" -v b="$tf2" -v c="$rr1" -v d="$rr2" 'BEGIN{if (c+d > 0) printf "%.2fx", (a+b)/(c+d); else print "-"}')
  fi
  printf '  %-4s %10s %10s %22s %10s %22s %10s\n' "$pipe" "$trps" "$tl" "$tf1 / $tf2" "$rrps" "${rp}: $rr1 / $rr2" "$ratio"
  if [ -n "$a1" ] && [ -n "$a2" ]; then
    say "       follower 1: $(awk -v x="$a1" -v y="$a2" -v n="$N" 'BEGIN{printf "%.3f", (y-x)/n}') log appends (fsyncs) per SET"
  fi
done
say "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ "$STRACE" = 1 ]; then
  for pipe in $PIPELINES; do
    fpid=${NODE_PIDS[1]}
    strace -c -f -p "$fpid" -o "$WORK/strace-P$pipe.txt" &
    spid=$!
    sleep 0.5
    set_load "$T_PORT" "$pipe" "$N" >/dev/null
    kill -INT "$spid"; wait "$spid" 2>/dev/null || true
    say "follower 1 system calls per SET at -P $pipe (strace -c -f; calls per SET, top 8):"
    awk -v n="$N" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {name=$NF; calls=$4; tot+=calls; c[name]=calls}
      END{printf "    total %.2f\n", tot/n; for (k in c) printf "    %-16s %.3f\n", k, c[k]/n}' "$WORK/strace-P$pipe.txt" |
      sort -k2 -gr | head -9 || true
  done
fi

if [ "$PROFILE" = 1 ]; then
  for pipe in $PIPELINES; do
    redis-benchmark -h 127.0.0.1 -p "$T_PORT" -t set -c "$CLIENTS" -n 100000000 -d "$DATA_SIZE" -r "$KEYSPACE" -P "$pipe" -q >/dev/null 2>&1 &
    bpid=$!
    PIDS+=("$bpid")
    sleep 1
    curl -s --max-time 30 -o "$WORK/follower-P$pipe.pprof" "http://127.0.0.1:$((T_HTTP + 1))/debug/pprof/profile?seconds=10" || true
    kill "$bpid" 2>/dev/null || true
    wait "$bpid" 2>/dev/null || true
    say "CPU profile of follower 1, 10 s of SET -P $pipe ($WORK/follower-P$pipe.pprof):"
    go tool pprof -top -nodecount=30 "$TANDEM" "$WORK/follower-P$pipe.pprof" 2>/dev/null | sed 's/^/    /' || true
    go tool pprof -top -cum -nodecount=30 "$TANDEM" "$WORK/follower-P$pipe.pprof" 2>/dev/null | tail -n +6 | sed 's/^/    /' || true
  done
fi
