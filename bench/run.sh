#!/usr/bin/env bash
# bench/run.sh: tandem (leader + 2 followers) against Redis 7 (primary + 2
# replicas, appendonly yes, appendfsync always): three copies on both sides at
# equal durability, in one run, with the same redis-benchmark workload. See
# bench/README.md.
#
# Usage (as root on Debian, from anywhere):  bench/run.sh
# Environment knobs (defaults in brackets):
#   N          requests per test and system, split over ROUNDS [200000]
#   ROUNDS     rounds of every test, N/ROUNDS requests each; odd
#              rounds run tandem first, even rounds Redis first; the
#              ratios and verdicts are the medians over the rounds
#                                                  [3 for suite, else 1]
#   WARMUP     requests of an unmeasured SET on each system before the
#              first measured test (0 = none)                  [20000]
#   CLIENTS    redis-benchmark -c                             [50]
#   DATA_SIZE  value size in bytes, -d                         [100]
#   KEYSPACE   redis-benchmark -r                             [100000]
#   PIPELINES  pipeline depths to run                         ["1 16"]
#   LOAD_KEYS  keys loaded for the memory figure (0 = skip)   [1000000]
#   LOAD_STREAMS  concurrent redis-cli --pipe loaders          [50]
#   LOAD_PROFILE  1 = CPU profiles of the tandem leader and a follower
#                 during the load (8 s), top functions printed [0]
#   RSS_SETTLE    seconds after the load (and the digests) before the RSS
#                 is read, on both systems: the RSS at rest          [4]
#   LARGE_SIZES   value sizes for the large-value test (bytes, "" = skip)
#                 ["1024 1048576 16777216 67108864"]
#   TESTS      redis-benchmark -t tests, or "suite" (set get incr lpush
#              rpush lpop rpop sadd hset spop zadd zpopmin lrange_100
#              lrange_300 mset: run in this order in every round, pushes
#              before pops)                                    ["set get"]
#   R_REPLICAS Redis replicas beside the primary               [2]
#   PROFILE    auto (when tandem SET is slower) | always | never   [auto]
#   BASE_PORT  tandem RESP port of node 1 (auto: a free range) []
#   KEEP       1 = keep the temp dirs (data, logs, profiles)  [0]
#   STATIC     1 = tandem up --static: no control plane, no failover [0]
#   WORKDIR    parent of the temp dir                          [$TMPDIR or /tmp]
set -euo pipefail

N=${N:-200000}
CLIENTS=${CLIENTS:-50}
DATA_SIZE=${DATA_SIZE:-100}
KEYSPACE=${KEYSPACE:-100000}
PIPELINES=${PIPELINES:-"1 16"}
LOAD_KEYS=${LOAD_KEYS:-1000000}
LOAD_STREAMS=${LOAD_STREAMS:-50}
LOAD_PROFILE=${LOAD_PROFILE:-0}
RSS_SETTLE=${RSS_SETTLE:-4}
LARGE_SIZES=${LARGE_SIZES-"1024 1048576 16777216 67108864"}
# redis-benchmark tests; "suite" is issue 17's list of every type's commands.
TESTS=${TESTS:-"set get"}
ROUNDS_DEFAULT=1
if [ "$TESTS" = suite ]; then
  TESTS="set get incr lpush rpush lpop rpop sadd hset spop zadd zpopmin lrange_100 lrange_300 mset"
  ROUNDS_DEFAULT=3
fi
# Rounds: Redis's fsync-bound write rate moves by half between two runs of
# the same test on a shared disk, so one run per system lets one hiccup
# decide a ratio. Each round runs every test on both systems, the first
# system alternating, and the verdicts use the median ratio over rounds.
ROUNDS=${ROUNDS:-$ROUNDS_DEFAULT}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { printf 'bench: ROUNDS=%s: want a positive integer\n' "$ROUNDS" >&2; exit 1; }
N_RUN=$(((N + ROUNDS - 1) / ROUNDS)) # requests per run: the total per test stays about N
WARMUP=${WARMUP:-20000}
# Redis replicas beside the primary: 2 makes three copies, as tandem's.
R_REPLICAS=${R_REPLICAS:-2}
PROFILE=${PROFILE:-auto}
BASE_PORT=${BASE_PORT:-}
KEEP=${KEEP:-0}
STATIC=${STATIC:-0}
SAMPLE_RATE=20 # /status samples per second (every 50 ms)
BENCH_TIMEOUT=${BENCH_TIMEOUT:-600}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$PATH:/usr/local/go/bin

say() { printf '%s\n' "$*"; }
hdr() { printf '\n== %s\n' "$*"; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
FAILED=0

# ---------------------------------------------------------------- 1. install
install_deps() {
  local need=()
  command -v redis-server >/dev/null || need+=(redis-server)
  { command -v redis-cli && command -v redis-benchmark; } >/dev/null || need+=(redis-tools)
  command -v curl >/dev/null || need+=(curl)
  command -v jq >/dev/null || need+=(jq)
  command -v timeout >/dev/null || need+=(coreutils)
  command -v setsid >/dev/null || need+=(util-linux)
  if ((${#need[@]})); then
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
      command -v sudo >/dev/null || die "need root to apt-get install ${need[*]}"
      sudo=sudo
    fi
    say "installing ${need[*]} (apt-get)"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  command -v go >/dev/null || die "Go is not installed: tandem needs Go $(awk '/^go /{print $2}' "$REPO/go.mod") (https://go.dev/dl), in PATH or /usr/local/go/bin"
  local rv
  rv=$(redis-server --version | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')
  [ "${rv%%.*}" -ge 7 ] || die "redis-server $rv found; this benchmark compares against Redis 7 (Debian 12 ships 7.0)"
  redis-benchmark --help 2>&1 | grep -q -- '--csv' || die "redis-benchmark lacks --csv"
}

# ------------------------------------------------------------------ helpers
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_ports() {
  # tandem's nodes take T..T+2 (RESP), T+100.. (peer), T+200.. (HTTP), its
  # proxy T-1 (HTTP T+199: tandem up --port T-1, so that the nodes start at
  # T and the benchmarks go to the leader directly); Redis T+50, T+51. Stay
  # below the kernel's ephemeral range (32768+).
  local try t p ok
  for try in $(seq 1 200); do
    if [ -n "$BASE_PORT" ]; then t=$BASE_PORT; else t=$((20000 + (RANDOM % 120) * 100 + RANDOM % 40)); fi
    ok=1
    for p in $((t - 1)) $((t + 199)) $t $((t + 1)) $((t + 2)) $((t + 100)) $((t + 101)) $((t + 102)) $((t + 200)) $((t + 201)) $((t + 202)) $((t + 50)) $((t + 51)) $((t + 52)) $((t + 53)); do
      port_free "$p" || { ok=0; break; }
    done
    if [ $ok = 1 ]; then
      T_PORT=$t; T_HTTP=$((t + 200)); R_PORT=$((t + 50)); R_REPL_PORT=$((t + 51)) # replicas: R_REPL_PORT, +1, ...
      return
    fi
    [ -z "$BASE_PORT" ] || die "ports around BASE_PORT=$BASE_PORT are in use"
  done
  die "no free port range found"
}

# CPU time (user + system) of processes, in clock ticks, one per pid.
cpu_ticks() { local p; for p in "$@"; do awk '{printf "%d ", $14 + $15}' "/proc/$p/stat" 2>/dev/null || printf '0 '; done; }
# cpu_per_op "ticks before" "ticks after" ops -> "a / b / c" microseconds of CPU per operation
cpu_per_op() {
  awk -v b="$1" -v a="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN{
    k = split(b, B, " "); split(a, A, " ")
    for (i = 1; i <= k; i++) printf "%s%.1f", (i > 1 ? " / " : ""), (A[i] - B[i]) / hz * 1e6 / n }'
}

rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mb() { awk -v k="$1" 'BEGIN{printf "%.1f MB", k/1024}'; }

# Background processes this script started; cleanup stops exactly these.
TANDEM_UP_PID=""
TANDEM_NODE_PIDS=()
REDIS_PIDS=()
AUX_PIDS=()

stop_pid() { # pid [seconds]: SIGTERM, wait, then SIGKILL
  local pid=$1 secs=${2:-15} i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${AUX_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_tandem
  stop_redis
  if [ "$KEEP" = 1 ]; then
    say "kept $WORK"
  elif [ -n "${WORK:-}" ]; then
    rm -rf "$WORK"
  fi
  exit $rc
}

# ------------------------------------------------------------------- tandem
start_tandem() { # dir
  local dir=$1 i
  mkdir -p "$dir"
  # STATIC=1: no control plane (`tandem up --static`: node 1 leads, nothing
  # fails over), for a loaded machine where a false failover would leave
  # the rest of the run refused (READONLY); the write path is the same.
  if [ "$STATIC" = 1 ]; then
    setsid "$TANDEM" up --static --dir "$dir" --nodes 3 --port "$T_PORT" --mode async --sentinel-port 0 >"$dir.up.log" 2>&1 &
  else
    setsid "$TANDEM" up --dir "$dir" --nodes 3 --port "$((T_PORT - 1))" --mode async --sentinel-port 0 >"$dir.up.log" 2>&1 &
  fi
  TANDEM_UP_PID=$!
  TANDEM_DIR=$dir
  # Ready: leader answers PING, and reports both followers connected.
  for ((i = 0; i < 600; i++)); do
    kill -0 "$TANDEM_UP_PID" 2>/dev/null || { cat "$dir.up.log" >&2; die "tandem up exited"; }
    if [ "$(redis-cli -p "$T_PORT" ping 2>/dev/null)" = PONG ] &&
      [ "$(curl -s --max-time 1 "http://127.0.0.1:$T_HTTP/status" | jq '[.followers[]? | select(.connected)] | length' 2>/dev/null)" = 2 ]; then
      TANDEM_NODE_PIDS=()
      for i in 0 1 2; do
        TANDEM_NODE_PIDS+=("$(curl -s --max-time 1 "http://127.0.0.1:$((T_HTTP + i))/status" | jq -r .pid)")
      done
      return
    fi
    sleep 0.1
  done
  cat "$dir.up.log" >&2
  die "tandem cluster not ready after 60 s"
}

stop_tandem() {
  [ -n "$TANDEM_UP_PID" ] || return 0
  stop_pid "$TANDEM_UP_PID" 20
  local p
  for p in "${TANDEM_NODE_PIDS[@]}"; do [ -z "$p" ] || stop_pid "$p" 5; done
  TANDEM_UP_PID=""
  TANDEM_NODE_PIDS=()
}

tandem_log_problems() { # dir: print errors/panics the nodes logged, and every failover
  local n
  n=$(cat "$1"/*.log "$1.up.log" 2>/dev/null | grep -ciE 'panic|fatal|level=error|"level":"error"|data race' || true)
  if [ "$n" -gt 0 ]; then
    say "tandem logged $n error/panic lines in $1; first ones:"
    cat "$1"/*.log "$1.up.log" 2>/dev/null | grep -iE 'panic|fatal|level=error|"level":"error"|data race' | head -5 | cut -c1-300 | sed 's/^/    /'
  else
    say "tandem node logs: no errors or panics"
  fi
  # A failover moves the leader away from the port the benchmarks write
  # to: every later write there is refused (READONLY). The orchestrator's
  # line says why it acted and what each node showed (its evidence).
  n=$(cat "$1"/o*.log 2>/dev/null | grep -c 'msg="leader failed"' || true)
  if [ "$n" -gt 0 ]; then
    say "tandem's orchestrator found the leader failed $n times (a failover, unless held by the failover policy):"
    cat "$1"/o*.log | grep 'msg="leader failed"' | head -3 | sed 's/^time=\([^ ]*\).*leader=\([^ ]*\).*reason=\("[^"]*"\).*evidence=/\1 \2 \3 evidence: /' | cut -c1-600 | sed 's/^/    /'
    FAILED=1
  fi
}

# -------------------------------------------------------------------- redis
start_redis() { # dir
  local dir=$1 i r ready
  local common=(--bind 127.0.0.1 --protected-mode no --appendonly yes --appendfsync always --save "" --daemonize no)
  mkdir -p "$dir/primary"
  redis-server --port "$R_PORT" --dir "$dir/primary" --logfile "$dir/primary/redis.log" "${common[@]}" &
  REDIS_PIDS+=($!)
  for ((r = 0; r < R_REPLICAS; r++)); do
    mkdir -p "$dir/replica$r"
    redis-server --port "$((R_REPL_PORT + r))" --dir "$dir/replica$r" --logfile "$dir/replica$r/redis.log" "${common[@]}" \
      --replicaof 127.0.0.1 "$R_PORT" &
    REDIS_PIDS+=($!)
  done
  for ((i = 0; i < 600; i++)); do
    ready=1
    redis-cli -p "$R_PORT" info replication 2>/dev/null | grep -q "^connected_slaves:$R_REPLICAS" || ready=0
    for ((r = 0; r < R_REPLICAS; r++)); do
      redis-cli -p "$((R_REPL_PORT + r))" info replication 2>/dev/null | grep -q '^master_link_status:up' || ready=0
    done
    [ $ready = 1 ] && return
    sleep 0.1
  done
  die "redis primary + $R_REPLICAS replicas not ready after 60 s (logs in $dir)"
}

stop_redis() {
  local p
  for p in "${REDIS_PIDS[@]}"; do stop_pid "$p" 10; done
  REDIS_PIDS=()
}

# -------------------------------------------------------- redis-benchmark
# bench PORT TEST PIPELINE [REQUESTS, default N_RUN] -> prints "rps avg p50 p95 p99 max" (ms)
bench() {
  local port=$1 test=$2 pipe=$3 n=${4:-$N_RUN} out line
  out=$(timeout "$BENCH_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -c "$CLIENTS" -n "$n" \
    -d "$DATA_SIZE" -r "$KEYSPACE" -P "$pipe" --csv 2>"$WORK/bench.err") || true
  # CSV names: "SET", "LRANGE_100 (first 100 elements)", "MSET (10 keys)".
  line=$(grep -i "^\"$test[\" ]" <<<"$out" | head -1 | tr -d '"' || true)
  if [ -z "$line" ]; then
    say "redis-benchmark -p $port -t $test -P $pipe failed:" >&2
    head -5 "$WORK/bench.err" >&2
    echo "0 0 0 0 0 0"
    return
  fi
  IFS=, read -r _ rps avg _ p50 p95 p99 max <<<"$line"
  echo "$rps $avg $p50 $p95 $p99 $max"
}

# Lag sampler: one curl process fetching the leader's /status SAMPLE_RATE
# times a second (URL globbing + --rate) while the SET run lasts.
start_sampler() { # out
  if curl --help all 2>/dev/null | grep -q -- '--rate'; then
    curl -s --max-time 3 --rate "$SAMPLE_RATE/s" "http://127.0.0.1:$T_HTTP/status?s=[1-1000000]" >"$1" 2>/dev/null &
  else
    (while :; do curl -s --max-time 1 "http://127.0.0.1:$T_HTTP/status"; sleep 0.05; done) >"$1" 2>/dev/null &
  fi
  SAMPLER_PID=$!
  AUX_PIDS+=("$SAMPLER_PID")
}
stop_sampler() {
  kill "$SAMPLER_PID" 2>/dev/null || true
  wait "$SAMPLER_PID" 2>/dev/null || true
}

pct() { # file-of-numbers p -> percentile (nearest rank)
  sort -g "$1" | awk -v p="$2" '{a[NR]=$1} END{if(NR==0){print "n/a";exit} i=int(NR*p/100); if(i<NR*p/100)i++; if(i<1)i=1; print a[i]}'
}

lag_report() { # samples-file label
  local f=$1 label=$2 n id
  n=$(jq -R 'fromjson? | select(.followers) | 1' "$f" | wc -l)
  jq -R -r 'fromjson? | .followers[]? | [.id, .lag_lsn, (.lag_seconds*1000)] | @tsv' "$f" >"$f.tsv"
  say "follower lag during tandem $label ($n samples of the leader's /status, every 50 ms):"
  printf '  %-10s %10s %10s %10s  %10s %10s %10s\n' follower "p50 LSNs" "p99 LSNs" "max LSNs" "p50 ms" "p99 ms" "max ms"
  for id in $(cut -f1 "$f.tsv" | sort -u) all; do
    if [ "$id" = all ]; then cp "$f.tsv" "$f.sel"; else awk -F'\t' -v id="$id" '$1==id' "$f.tsv" >"$f.sel"; fi
    cut -f2 "$f.sel" >"$f.lsn"
    cut -f3 "$f.sel" >"$f.ms"
    printf '  %-10s %10s %10s %10s  %10.1f %10.1f %10.1f\n' "$id" \
      "$(pct "$f.lsn" 50)" "$(pct "$f.lsn" 99)" "$(pct "$f.lsn" 100)" \
      "$(pct "$f.ms" 50)" "$(pct "$f.ms" 99)" "$(pct "$f.ms" 100)" 2>/dev/null || true
  done
  LAG_SUMMARY+=("$label: follower lag p99 $(pct "$f.lsn" 99) LSNs, $(awk -v v="$(pct "$f.ms" 99)" 'BEGIN{printf "%.1f", v}') ms")
}

# ---------------------------------------------------------- digest check
# check_digests PORT... : wait until every node reports the same applied LSN,
# then compare the keyspace digests. Prints PASS/FAIL.
check_digests() {
  local label=$1; shift
  local i port out lsn dig lsns digs leader_port=$1
  for ((i = 0; i < 300; i++)); do
    lsns=(); digs=()
    for port in "$@"; do
      out=$(redis-cli -p "$port" TANDEM.DIGEST 2>&1 || true)
      lsn=$(sed -n 1p <<<"$out"); dig=$(sed -n 2p <<<"$out")
      lsns+=("$lsn"); digs+=("$dig")
    done
    if [[ ${lsns[0]} =~ ^[0-9]+$ ]] && [ "$(printf '%s\n' "${lsns[@]}" | sort -u | wc -l)" = 1 ]; then
      break
    fi
    sleep 0.2
  done
  for ((i = 0; i < $#; i++)); do
    say "  node $((i + 1)) (port $(($leader_port + i))): applied_lsn ${lsns[$i]}  digest ${digs[$i]}"
  done
  if [[ ${lsns[0]} =~ ^[0-9]+$ ]] && [ "$(printf '%s\n' "${lsns[@]}" | sort -u | wc -l)" = 1 ] &&
    [ "$(printf '%s\n' "${digs[@]}" | sort -u | wc -l)" = 1 ] && [ -n "${digs[0]}" ]; then
    say "  digest check ($label): PASS"
    DIGEST_SUMMARY+=("$label: PASS")
  else
    say "  digest check ($label): FAIL"
    DIGEST_SUMMARY+=("$label: FAIL")
    FAILED=1
  fi
}

# ----------------------------------------------------------- profiling
profile_set() { # pipeline
  local pipe=$1 prof="$WORK/tandem-set-P$pipe.pprof" bpid
  say "CPU profile of the tandem leader, 10 s of SET -c $CLIENTS -d $DATA_SIZE -P $pipe:"
  redis-benchmark -h 127.0.0.1 -p "$T_PORT" -t set -c "$CLIENTS" -n 100000000 -d "$DATA_SIZE" -r "$KEYSPACE" \
    -P "$pipe" -q >/dev/null 2>&1 &
  bpid=$!
  AUX_PIDS+=("$bpid")
  sleep 1
  curl -s --max-time 30 -o "$prof" "http://127.0.0.1:$T_HTTP/debug/pprof/profile?seconds=10" || true
  kill "$bpid" 2>/dev/null || true
  wait "$bpid" 2>/dev/null || true
  if [ -s "$prof" ]; then
    go tool pprof -top -nodecount=25 "$TANDEM" "$prof" 2>/dev/null | sed 's/^/    /' || say "    (go tool pprof failed)"
    say "  cumulative (top 15):"
    go tool pprof -top -cum -nodecount=15 "$TANDEM" "$prof" 2>/dev/null | tail -n +6 | sed 's/^/    /' || true
  else
    say "    (no profile captured)"
  fi
}

# ---------------------------------------------------------- 1M-key load
gen_resp() { # n part parts: RESP SET key:I <DATA_SIZE-byte value> for I = part, part+parts, ... < n
  awk -v n="$1" -v part="$2" -v parts="$3" -v size="$DATA_SIZE" 'BEGIN{
    pad = sprintf("%0" size "d", 0)
    for (i = part; i < n; i += parts) {
      k = "key:" i
      v = substr(i "-" pad, 1, size)
      printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, size, v
    }
  }'
}

# load_keys PORT HTTP PID...: LOAD_STREAMS concurrent `redis-cli --pipe`
# connections, each sending its share of key:0..key:LOAD_KEYS-1 (one pipe
# alone would leave one write per group commit); the same for tandem and
# Redis. Prints keys/s and each server's CPU per key (user + system, from
# /proc, from the start of the load until every server has applied it:
# the followers' catch-up after the last reply is theirs too). HTTP is the
# tandem leader's HTTP port (0 for Redis): with LOAD_PROFILE=1 it takes a
# CPU profile of the leader and of a follower over the load's first 8 s
# and prints their top functions.
load_keys() {
  local port=$1 http=$2 t0 t1 j c0 pids=() profs=() epoch0=""
  shift 2
  [ "$http" = 0 ] || epoch0=$(curl -s --max-time 5 "http://127.0.0.1:$http/status" | jq -r .epoch 2>/dev/null || true)
  c0=$(cpu_ticks "$@")
  t0=$(date +%s.%N)
  for ((j = 0; j < LOAD_STREAMS; j++)); do
    { gen_resp "$LOAD_KEYS" "$j" "$LOAD_STREAMS" |
      timeout "$BENCH_TIMEOUT" redis-cli -p "$port" --pipe --pipe-timeout 120 >"$WORK/load.$j" 2>&1 || true; } &
    pids+=($!)
  done
  AUX_PIDS+=("${pids[@]}")
  if [ "$LOAD_PROFILE" = 1 ] && [ "$http" != 0 ]; then
    for j in 0 1; do
      curl -s --max-time 30 -o "$WORK/load-n$((j + 1)).pprof" "http://127.0.0.1:$((http + j))/debug/pprof/profile?seconds=8" &
      profs+=($!)
    done
  fi
  wait "${pids[@]}" 2>/dev/null || true
  t1=$(date +%s.%N)
  LOAD_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
  LOAD_RESULT=$(cat "$WORK"/load.* | awk '/errors:/{gsub(",",""); e+=$2; r+=$4} END{printf "errors: %d, replies: %d", e, r}')
  # redis-cli --pipe prints each error reply (the last after its count):
  # say which, so a refused load is explained, not only counted.
  sed 's/^errors: [0-9]*, replies: [0-9]*//' "$WORK"/load.* | grep -v '^All data transferred\|^Last reply received\|^$' |
    cut -c1-160 | sort | uniq -c | sort -rn | head -5 | sed 's/^/  error reply: /' | while IFS= read -r l; do say "$l"; done || true
  rm -f "$WORK"/load.*
  LOAD_RATE=$(awk -v n="$LOAD_KEYS" -v s="$LOAD_SECS" 'BEGIN{printf "%.0f", n/s}')
  say "  load ($LOAD_STREAMS pipes): $LOAD_RESULT in $LOAD_SECS s ($LOAD_RATE keys/s)"
  if [ "$http" != 0 ]; then
    # The load goes to the leader's port directly (redis-cli --pipe follows
    # no leader; the proxy would): a failover during it leaves the rest of
    # the load refused by a follower, in a few seconds, and the figures void.
    local st role epoch1
    st=$(curl -s --max-time 5 "http://127.0.0.1:$http/status" || true)
    role=$(jq -r .role <<<"$st" 2>/dev/null || true)
    epoch1=$(jq -r .epoch <<<"$st" 2>/dev/null || true)
    if [ "$role" != leader ] || [ "$epoch1" != "$epoch0" ]; then
      say "  LEADER CHANGED during the load (epoch $epoch0 -> $epoch1, the node loaded is now ${role:-unknown}): writes after it were refused; the load's figures are void"
      "$TANDEM" status --dir "$TANDEM_DIR" 2>&1 | grep '^last change' | sed 's/^/    /' || true
      FAILED=1
    fi
  fi
  [ ${#profs[@]} = 0 ] || wait "${profs[@]}" 2>/dev/null || true
  if [ "$http" != 0 ]; then # the followers' catch-up
    for ((j = 0; j < 300; j++)); do
      [ "$(curl -s --max-time 1 "http://127.0.0.1:$http/status" | jq '[.followers[]? | .applied_lsn] | min' 2>/dev/null)" \
        = "$(curl -s --max-time 1 "http://127.0.0.1:$http/status" | jq '.applied_lsn' 2>/dev/null)" ] && break
      sleep 0.1
    done
  else
    sleep 1 # Redis's replicas are a socket write behind
  fi
  LOAD_CPU=$(cpu_per_op "$c0" "$(cpu_ticks "$@")" "$LOAD_KEYS")
  say "  server CPU us per key (user+system, first / the others): $LOAD_CPU"
  for j in 1 2; do
    [ "$http" != 0 ] && [ -s "$WORK/load-n$j.pprof" ] || continue
    say "  CPU profile of node $j, the load's first 8 s ($WORK/load-n$j.pprof), top 25 cumulative:"
    go tool pprof -top -cum -nodecount=25 "$TANDEM" "$WORK/load-n$j.pprof" 2>/dev/null | tail -n +6 | sed 's/^/    /' || true
  done
}

hwm_kb() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
now_ms() { date +%s%3N; }

# wait_strlen port key size -> ms when STRLEN key reached size (within 120 s)
wait_strlen() {
  local i
  for ((i = 0; i < 12000; i++)); do
    [ "$(redis-cli -p "$1" strlen "$2" 2>/dev/null)" = "$3" ] && { now_ms; return 0; }
    sleep 0.01
  done
  echo 0
  return 1
}

# large_value_row size: one SET of size bytes on each system; sets LARGE_ROW
large_value() {
  local size=$1 f="$WORK/value.$1" key="big:$1" t0 tack t1 t2 r0 r1 racks rrepl
  # (head closes the pipe early: its SIGPIPE upstream is expected)
  { head -c "$size" /dev/urandom | base64 -w0 | head -c "$size" >"$f"; } || true
  [ "$(stat -c %s "$f")" = "$size" ] || die "could not make a $size-byte value"
  local lp=${TANDEM_NODE_PIDS[0]} f1=${TANDEM_NODE_PIDS[1]} f2=${TANDEM_NODE_PIDS[2]}
  local lr=$(rss_kb "$lp") lh=$(hwm_kb "$lp") fr=$(rss_kb "$f1") fh=$(hwm_kb "$f1")
  t0=$(now_ms)
  redis-cli -p "$T_PORT" -x set "$key" <"$f" >/dev/null
  tack=$(now_ms)
  t1=$(wait_strlen "$((T_PORT + 1))" "$key" "$size")
  t2=$(wait_strlen "$((T_PORT + 2))" "$key" "$size")
  local tl=$(( $(rss_kb "$lp") - lr )) tlh=$(( $(hwm_kb "$lp") - lh )) tf=$(( $(rss_kb "$f1") - fr )) tfh=$(( $(hwm_kb "$f1") - fh ))
  local pp=${REDIS_PIDS[0]} rp=${REDIS_PIDS[1]} r rr1
  local pr=$(rss_kb "$pp") rr=$(rss_kb "$rp")
  r0=$(now_ms)
  redis-cli -p "$R_PORT" -x set "$key" <"$f" >/dev/null
  racks=$(now_ms)
  rrepl=0
  for ((r = 0; r < R_REPLICAS; r++)); do # the time to the last replica, as tandem's to its last follower
    rr1=$(wait_strlen "$((R_REPL_PORT + r))" "$key" "$size")
    rrepl=$(max2 "$rrepl" "$rr1")
  done
  local rpd=$(( $(rss_kb "$pp") - pr )) rrd=$(( $(rss_kb "$rp") - rr ))
  rm -f "$f"
  local trep=$(( $(max2 "$t1" "$t2") - t0 )) rrep=$(( rrepl - r0 ))
  LARGE_ROW=$(awk -v s="$size" -v ta=$((tack - t0)) -v tr="$trep" -v ra=$((racks - r0)) -v rr="$rrep" \
    -v tl="$tl" -v tlh="$tlh" -v tf="$tf" -v tfh="$tfh" -v rp="$rpd" -v rq="$rrd" 'BEGIN{
    m = 1048576; printf "%10d %8d %10d %8d %10d %6s | %8.1f %8.1f %8.1f %8.1f | %8.1f %8.1f\n", s, ta, tr, ra, rr,
      (rr > 0 ? sprintf("%.2f", tr / rr) : "n/a"), tl/1024, tlh/1024, tf/1024, tfh/1024, rp/1024, rq/1024 }')
  say "$LARGE_ROW"
  # The target (issue 19): a value costs at most 3x its size in peak RSS.
  LARGE_PEAK="peak RSS growth / value size, $size bytes: tandem leader $(awk -v k="$tlh" -v s="$size" 'BEGIN{printf "%.1fx", k*1024/s}'), follower $(awk -v k="$tfh" -v s="$size" 'BEGIN{printf "%.1fx", k*1024/s}') (target <= 3.0x)"
  say "  $LARGE_PEAK"
}
max2() { if [ "$1" -gt "$2" ]; then echo "$1"; else echo "$2"; fi; }

# idle_cpu pid... -> percent of a core each used over 5 s
idle_cpu() {
  local b a
  b=$(cpu_ticks "$@"); sleep 5; a=$(cpu_ticks "$@")
  awk -v b="$b" -v a="$a" -v hz="$(getconf CLK_TCK)" 'BEGIN{k = split(b, B, " "); split(a, A, " ")
    for (i = 1; i <= k; i++) printf "%s%.1f%%", (i > 1 ? " / " : ""), (A[i] - B[i]) / hz / 5 * 100 }'
}

wait_dbsize() { # port expected -> 0 when reached within 60 s
  local i
  for ((i = 0; i < 300; i++)); do
    [ "$(redis-cli -p "$1" dbsize 2>/dev/null)" = "$2" ] && return 0
    sleep 0.2
  done
  return 1
}

# ===================================================================== main
install_deps
WORK=$(mktemp -d "${WORKDIR:-${TMPDIR:-/tmp}}/tandem-bench.XXXXXX")
trap cleanup EXIT
trap 'exit 130' INT TERM
pick_ports
TANDEM=$WORK/bin/tandem
LAG_SUMMARY=()
DIGEST_SUMMARY=()

hdr "tandem vs Redis 7, equal durability (fsync before acknowledging a write)"
say "machine: $(nproc) cores ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/{printf "%.1f GB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
say "NOTE: redis-benchmark, the 3 tandem processes and the 2 Redis processes all share these $(nproc) cores."
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (anything else running on the machine skews the figures)"
say "data dir: $WORK on $(df -T "$WORK" | awk 'NR==2{print $2}')$(df -T "$WORK" | awk 'NR==2 && $2=="tmpfs"{print " (WARNING: tmpfs, fsync costs nothing)"}')"
say "$(redis-server --version | cut -d' ' -f1-3), $(go version | cut -d' ' -f3)"
say "tandem: $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
say "workload: redis-benchmark -t ${TESTS// /,} -c $CLIENTS -n $N_RUN -d $DATA_SIZE -r $KEYSPACE, -P in {${PIPELINES// /,}}, $ROUNDS round(s) (N=$N per test and system), warm-up $WARMUP SETs"

say "building tandem..."
(cd "$REPO" && go build -o "$TANDEM" ./cmd/tandem) || die "go build ./cmd/tandem failed"

start_tandem "$WORK/tandem"
start_redis "$WORK/redis"
say "tandem: leader 127.0.0.1:$T_PORT, followers :$((T_PORT + 1)) :$((T_PORT + 2)), http :$T_HTTP..  (tandem up --mode async: the leader fsyncs every write before acking, followers stream)"
say "redis:  primary 127.0.0.1:$R_PORT, $R_REPLICAS replicas from :$R_REPL_PORT  (appendonly $(redis-cli -p "$R_PORT" config get appendonly | tail -1), appendfsync $(redis-cli -p "$R_PORT" config get appendfsync | tail -1), save '$(redis-cli -p "$R_PORT" config get save | tail -1)')"

# ----------------------------------------------------------- 3. benchmarks
declare -A RES CPU
# run_one SYSTEM TEST PIPE ROUND: one measured redis-benchmark run of
# N_RUN requests; its figures and the servers' CPU per op go to RES and CPU.
run_one() {
  local sys=$1 test=$2 pipe=$3 r=$4 port c0 pids
  if [ "$sys" = tandem ]; then port=$T_PORT; pids=("${TANDEM_NODE_PIDS[@]}"); else port=$R_PORT; pids=("${REDIS_PIDS[@]}"); fi
  c0=$(cpu_ticks "${pids[@]}")
  RES[$sys,$test,$pipe,$r]=$(bench "$port" "$test" "$pipe")
  CPU[$sys,$test,$pipe,$r]=$(cpu_per_op "$c0" "$(cpu_ticks "${pids[@]}")" "$N_RUN")
}
fig() { awk '{printf "%6.0f ops/s p50 %7.3f p99 %7.3f", $1, $3, $5}' <<<"$1"; }

# summarize TEST PIPE -> one line of medians over the rounds: "trps rrps
# ratio ratios tp50 rp50 tp99 rp99 p99ratio tcpu rcpu cpuratio", where
# ratio, p99ratio and cpuratio (the leader's CPU per op over the
# primary's) are medians of each round's own ratio, and ratios lists the
# rounds' throughput ratios (a/b/c) so the spread shows.
summarize() {
  local test=$1 pipe=$2 r
  for ((r = 1; r <= ROUNDS; r++)); do
    echo "${RES[tandem,$test,$pipe,$r]} ${RES[redis,$test,$pipe,$r]} ${CPU[tandem,$test,$pipe,$r]%% *} ${CPU[redis,$test,$pipe,$r]%% *}"
  done | awk '
    function med(v, n,   i, j, t, w) {
      for (i = 1; i <= n; i++) w[i] = v[i]
      for (i = 2; i <= n; i++) for (j = i; j > 1 && w[j-1] > w[j]; j--) { t = w[j]; w[j] = w[j-1]; w[j-1] = t }
      return n % 2 ? w[(n+1)/2] : (w[n/2] + w[n/2+1]) / 2
    }
    function q(a, b) { return b > 0 ? a / b : 0 }
    { n++; ta[n] = $1; tp[n] = $3; t9[n] = $5; ra[n] = $7; rp[n] = $9; r9[n] = $11; tc[n] = $13; rc[n] = $14
      x[n] = q($1, $7); y[n] = q($5, $11); z[n] = q($13, $14)
      rs = rs (n > 1 ? "/" : "") sprintf("%.2f", x[n]) }
    END { printf "%.0f %.0f %.2f %s %.3f %.3f %.3f %.3f %.2f %.1f %.1f %.2f\n", med(ta, n), med(ra, n), med(x, n), rs,
      med(tp, n), med(rp, n), med(t9, n), med(r9, n), med(y, n), med(tc, n), med(rc, n), med(z, n) }'
}

# cpu_median SYSTEM TEST PIPE -> "a / b / c": each server's median CPU per op over the rounds
cpu_median() {
  local r
  for ((r = 1; r <= ROUNDS; r++)); do echo "${CPU[$1,$2,$3,$r]}"; done | tr -d '/' | awk '
    { n++; for (i = 1; i <= NF; i++) v[i, n] = $i; k = NF }
    END { for (i = 1; i <= k; i++) {
        for (j = 1; j <= n; j++) w[j] = v[i, j]
        for (a = 2; a <= n; a++) for (b = a; b > 1 && w[b-1] > w[b]; b--) { t = w[b]; w[b] = w[b-1]; w[b-1] = t }
        printf "%s%.1f", (i > 1 ? " / " : ""), n % 2 ? w[(n+1)/2] : (w[n/2] + w[n/2+1]) / 2 } }'
}

# Warm-up: the first measured test should not pay for a cold process
# (page cache, Go heap growth, Redis's AOF file). Same request count on both.
if [ "$WARMUP" -gt 0 ]; then
  hdr "warm-up (not measured): SET, $WARMUP requests on each system"
  say "  tandem: $(fig "$(bench "$T_PORT" set 1 "$WARMUP")")"
  say "  redis:  $(fig "$(bench "$R_PORT" set 1 "$WARMUP")")"
fi

for pipe in $PIPELINES; do
  sfx=$([ "$pipe" = 1 ] || echo " -P $pipe")
  for ((r = 1; r <= ROUNDS; r++)); do
    # The system that runs first alternates by round: a slow disk spell
    # or the other system's leftover work (compactions, AOF rewrites)
    # then falls on each side alike.
    if ((r % 2)); then order="tandem redis"; else order="redis tandem"; fi
    hdr "round $r of $ROUNDS$sfx: $N_RUN requests per run, ${order% *} first (load $(cut -d' ' -f1 /proc/loadavg))"
    say "  server CPU per op (us): tandem leader / followers; redis primary / replicas"
    for test in $TESTS; do
      for sys in $order; do run_one "$sys" "$test" "$pipe" "$r"; done
      say "  $(printf '%-10s' "$(tr a-z A-Z <<<"$test")") tandem $(fig "${RES[tandem,$test,$pipe,$r]}") | redis $(fig "${RES[redis,$test,$pipe,$r]}") | ratio $(awk -v a="${RES[tandem,$test,$pipe,$r]%% *}" -v b="${RES[redis,$test,$pipe,$r]%% *}" 'BEGIN{printf "%.2f", (b > 0) ? a / b : 0}')"
      say "  $(printf '%-10s' '') CPU us/op tandem ${CPU[tandem,$test,$pipe,$r]}; redis ${CPU[redis,$test,$pipe,$r]}"
    done
  done
  # Follower lag, sampled from the leader's /status on a tandem SET run of
  # its own: the sampler (a curl process, and the leader's /status
  # handler) shares the cores, so it stays off the measured runs; this
  # run's figures beside the measured SET's median show what it costs.
  if [[ " $TESTS " == *" set "* ]]; then
    hdr "follower lag$sfx: tandem SET, $N_RUN requests, /status sampled every 50 ms (not in the table)"
    start_sampler "$WORK/lag-P$pipe.jsonl"
    run_one tandem set "$pipe" lag
    stop_sampler
    say "  with the sampler:     tandem $(fig "${RES[tandem,set,$pipe,lag]}"), CPU us/op ${CPU[tandem,set,$pipe,lag]}"
    say "  measured (median):    tandem $(summarize set "$pipe" | awk '{printf "%6.0f ops/s p50 %7.3f p99 %7.3f", $1, $5, $7}'), CPU us/op $(cpu_median tandem set "$pipe")"
    lag_report "$WORK/lag-P$pipe.jsonl" "SET$sfx"
  fi
done

# ----------------------------------------------------------- 4. the table
hdr "results: medians over $ROUNDS round(s) of $N_RUN requests (ops/s; latency in ms as measured by redis-benchmark)"
say "ratio: the median of the rounds' tandem/redis ratios (each round's in 'rounds'); cpu: server CPU us per op, tandem leader and redis primary, and the median of the rounds' t/r"
TABLE=$(
  printf '%-13s %8s %8s %6s %-*s | %7s %7s | %8s %8s %6s | %6s %6s %5s\n' test "t ops/s" "r ops/s" ratio "$((ROUNDS * 5 + 1))" rounds "t p50" "r p50" "t p99" "r p99" "p99t/r" "t cpu" "r cpu" "t/r"
  printf '%s\n' "--------------------------------------------------------------------------------------------------------------"
  for pipe in $PIPELINES; do
    for test in $TESTS; do
      label="$(tr a-z A-Z <<<"$test")$([ "$pipe" = 1 ] || echo " -P $pipe")"
      read -r trps rrps ratio rounds tp50 rp50 tp99 rp99 p99r tcpu rcpu cpur <<<"$(summarize "$test" "$pipe")"
      printf '%-13s %8s %8s %6s %-*s | %7s %7s | %8s %8s %6s | %6s %6s %5s\n' "$label" "$trps" "$rrps" "$ratio" "$((ROUNDS * 5 + 1))" "$rounds" \
        "$tp50" "$rp50" "$tp99" "$rp99" "$p99r" "$tcpu" "$rcpu" "$cpur"
    done
  done
)
say "$TABLE"
say "target: SET ops/s ratio >= 1.00 and SET p99 ratio <= 2.00; each collection command at least SET's ratio; LRANGE_100 >= 0.50 (medians)"
VERDICTS=""
for pipe in $PIPELINES; do
  [[ " $TESTS " == *" set "* ]] || continue # the floor is SET's ratio
  read -r _ _ setr _ <<<"$(summarize set "$pipe")"
  for test in $TESTS; do
    case $test in set | get | incr | mset) continue ;; esac
    read -r _ _ ratio rounds _ _ _ _ _ _ _ cpur <<<"$(summarize "$test" "$pipe")"
    read -r _ _ _ _ _ _ _ _ _ _ _ setc <<<"$(summarize set "$pipe")"
    VERDICTS+=$(awk -v t="$test" -v p="$pipe" -v r="$ratio" -v rs="$rounds" -v floor="$setr" -v c="$cpur" -v sc="$setc" 'BEGIN{
      if (t == "lrange_100" && floor < 0.5) floor = 0.5
      printf "  %-10s -P %-3s %.2fx (rounds %s), needs %.2fx: %-6s cpu t/r %.2f (SET %.2f)\n", toupper(t), p, r, rs, floor, (r >= floor && r > 0) ? "MET" : "MISSED", c, sc }')$'\n'
  done
done
for pipe in $PIPELINES; do
  [[ " $TESTS " == *" set "* ]] || continue
  read -r _ _ ratio rounds _ _ _ _ p99r _ <<<"$(summarize set "$pipe")"
  VERDICTS+=$(awk -v p="$pipe" -v r="$ratio" -v rs="$rounds" -v q="$p99r" 'BEGIN{
    printf "  SET -P %-3s throughput %s (%.2fx, rounds %s), p99 %s (%.2fx)\n", p, (r >= 1) ? "MET" : "MISSED", r, rs, (q <= 2 && q > 0) ? "MET" : "MISSED", q }')$'\n'
done
printf '%s' "$VERDICTS"

# ---------------------------------------------------- profile if slower
for pipe in $PIPELINES; do
  setr=1
  [[ " $TESTS " != *" set "* ]] || read -r _ _ setr _ <<<"$(summarize set "$pipe")"
  if [ "$PROFILE" = always ] || { [ "$PROFILE" = auto ] && awk -v r="$setr" 'BEGIN{exit !(r < 1)}'; }; then
    hdr "profile (tandem SET -P $pipe)"
    profile_set "$pipe"
  fi
done

# ------------------------------------------- 7. replicas identical (bench)
hdr "replica consistency after the benchmarks (TANDEM.DIGEST)"
check_digests "after benchmarks" "$T_PORT" "$((T_PORT + 1))" "$((T_PORT + 2))"
"$TANDEM" status --dir "$WORK/tandem" 2>&1 | sed 's/^/  /' || true
tandem_log_problems "$WORK/tandem"

# ------------------------------------------------------- 8. large values
if [ -n "$LARGE_SIZES" ]; then
  hdr "large values: one SET of each size (base64 of random bytes) on the clusters above"
  say "  ms: from sending the SET to its reply (ack) and to the value on every follower/replica (repl);"
  say "  RSS: MB the process grew (now, and its peak VmHWM) over its size before the SET"
  LARGE_TABLE=$(printf '%10s %8s %10s %8s %10s %6s | %8s %8s %8s %8s | %8s %8s\n' bytes "t ack" "t repl" "r ack" "r repl" "t/r" "t lead" "peak" "t foll" "peak" "r prim" "r repl")
  say "$LARGE_TABLE"
  for size in $LARGE_SIZES; do
    large_value "$size"
    LARGE_TABLE+=$'\n'"$LARGE_ROW"
  done
  sleep 2
  LARGE_IDLE="idle CPU over 5 s after the large values: tandem leader / followers $(idle_cpu "${TANDEM_NODE_PIDS[@]}"); redis primary / replicas $(idle_cpu "${REDIS_PIDS[@]}")"
  say "  $LARGE_IDLE"
  say "  RSS now: tandem leader $(mb "$(rss_kb "${TANDEM_NODE_PIDS[0]}")"), follower $(mb "$(rss_kb "${TANDEM_NODE_PIDS[1]}")"); redis primary $(mb "$(rss_kb "${REDIS_PIDS[0]}")"), replica $(mb "$(rss_kb "${REDIS_PIDS[1]}")")"
  check_digests "after large values" "$T_PORT" "$((T_PORT + 1))" "$((T_PORT + 2))"
fi
stop_tandem
stop_redis

# ------------------------------------------------------------- 6. memory
if [ "$LOAD_KEYS" -gt 0 ]; then
  hdr "memory: $LOAD_KEYS keys (key:0..key:$((LOAD_KEYS - 1))), $DATA_SIZE-byte values, via $LOAD_STREAMS x redis-cli --pipe"
  say "tandem (fresh cluster):"
  start_tandem "$WORK/tandem-load"
  load_keys "$T_PORT" "$T_HTTP" "${TANDEM_NODE_PIDS[@]}"
  T_LOAD_RATE=$LOAD_RATE T_LOAD_CPU=$LOAD_CPU
  dbs=$(redis-cli -p "$T_PORT" dbsize)
  say "  leader DBSIZE $dbs ($([ "$dbs" = "$LOAD_KEYS" ] && echo OK || echo "MISMATCH, expected $LOAD_KEYS"))"
  [ "$dbs" = "$LOAD_KEYS" ] || FAILED=1
  check_digests "after 1M-key load" "$T_PORT" "$((T_PORT + 1))" "$((T_PORT + 2))"
  for i in 1 2; do
    fd=$(redis-cli -p "$((T_PORT + i))" dbsize 2>/dev/null)
    say "  follower n$((i + 1)) DBSIZE $fd"
  done
  # RSS at rest: a node returns its Go heap's garbage once a burst has
  # settled (internal/node/memory.go, about 2 s after the last flush,
  # compaction or read); Redis is measured as long after its load.
  sleep "$RSS_SETTLE"
  st=$(curl -s "http://127.0.0.1:$T_HTTP/status")
  lpid=$(jq -r .pid <<<"$st")
  fpid=$(curl -s "http://127.0.0.1:$((T_HTTP + 1))/status" | jq -r .pid)
  T_LRSS=$(rss_kb "$lpid"); T_FRSS=$(rss_kb "$fpid")
  say "  leader   RSS $(mb "$T_LRSS") (pid $lpid), retained log $(jq -r '.log_bytes' <<<"$st" | awk '{printf "%.1f MB", $1/1048576}')"
  say "  follower RSS $(mb "$T_FRSS") (pid $fpid)"
  say "  where the RSS is (MB; /debug/memory: Go = mapped less released, of it live at the last GC, free pages kept, goal; outside Go = Pebble's C memory and the allocator's):"
  for i in 0 1; do
    curl -s --max-time 5 "http://127.0.0.1:$((T_HTTP + i))/debug/memory" | jq -r --arg who "$([ "$i" = 0 ] && echo leader || echo follower)" '
      def mb: . / 1048576 | floor;
      "    \($who): RSS \(.RSSBytes|mb) = binary \(.FileBytes|mb) + Go \((.Go.MappedBytes - .Go.ReleasedBytes)|mb) (live \(.Go.LiveBytes|mb), free \(.Go.FreeBytes|mb), goal \(.Go.GoalBytes|mb), limit \(.Go.LimitBytes|mb)) + outside Go \(.OutsideGoBytes|mb); caches: row cache \(.Storage.RowCacheBytes|mb), key filter \(.Storage.KeyFilterBytes|mb), Pebble block cache \(.Storage.BlockCacheBytes|mb), memtables \(.Storage.MemTableBytes|mb) (+\(.Storage.MemTableZombieBytes|mb) zombie); allocator trims \(.Storage.Trims) (\(.Storage.TrimNanos / 1e6 | floor) ms CPU)"' 2>/dev/null || say "    (no /debug/memory from node $((i + 1)))"
  done
  say "  on disk, 3 nodes: $(du -sh "$WORK/tandem-load" | cut -f1)"
  T_DISK=$(du -sk "$WORK/tandem-load/n1" | cut -f1); T_FDISK=$(du -sk "$WORK/tandem-load/n2" | cut -f1)
  say "  on disk per node: leader $(mb "$T_DISK"), follower $(mb "$T_FDISK") (data, Pebble's WAL and the log)"
  tandem_log_problems "$WORK/tandem-load"
  stop_tandem

  say "redis (fresh primary + $R_REPLICAS replicas):"
  start_redis "$WORK/redis-load"
  load_keys "$R_PORT" 0 "${REDIS_PIDS[@]}"
  R_LOAD_RATE=$LOAD_RATE R_LOAD_CPU=$LOAD_CPU
  rdbs=$(redis-cli -p "$R_PORT" dbsize)
  say "  primary DBSIZE $rdbs"
  for ((r = 0; r < R_REPLICAS; r++)); do
    wait_dbsize "$((R_REPL_PORT + r))" "$rdbs" || say "  replica $r did not reach DBSIZE $rdbs"
  done
  sleep "$RSS_SETTLE"
  R_PRSS=$(rss_kb "${REDIS_PIDS[0]}"); R_RRSS=$(rss_kb "${REDIS_PIDS[1]}")
  say "  primary RSS $(mb "$R_PRSS") (used_memory $(redis-cli -p "$R_PORT" info memory | tr -d '\r' | awk -F: '$1=="used_memory_human"{print $2}'))"
  say "  replica RSS $(mb "$R_RRSS")"
  say "  on disk, $((R_REPLICAS + 1)) nodes: $(du -sh "$WORK/redis-load" | cut -f1)"
  R_DISK=$(du -sk "$WORK/redis-load/primary" | cut -f1); R_RDISK=$(du -sk "$WORK/redis-load/replica0" | cut -f1)
  say "  on disk per node: primary $(mb "$R_DISK"), replica $(mb "$R_RDISK") (RDB + AOF)"
  stop_redis
fi

# ------------------------------------------------------------- summary
hdr "summary"
say "$TABLE"
printf '%s' "$VERDICTS"
for pipe in $PIPELINES; do
  for test in $TESTS; do
    say "$(printf '%-10s' "$(tr a-z A-Z <<<"$test")$([ "$pipe" = 1 ] || echo " -P $pipe")") server CPU us/op (median of $ROUNDS): tandem $(cpu_median tandem "$test" "$pipe") (leader / followers); redis $(cpu_median redis "$test" "$pipe") (primary / replicas)"
  done
done
for l in "${LAG_SUMMARY[@]}"; do say "$l"; done
if [ "$LOAD_KEYS" -gt 0 ]; then
  say "bulk load of $LOAD_KEYS keys: tandem $T_LOAD_RATE keys/s vs redis $R_LOAD_RATE: $(awk -v a="$T_LOAD_RATE" -v b="$R_LOAD_RATE" 'BEGIN{printf "%.2fx", a/b}') (target >= 1.00x); server CPU us per key: tandem $T_LOAD_CPU (leader / followers), redis $R_LOAD_CPU (primary / replicas)"
  say "RSS with $LOAD_KEYS keys: tandem leader $(mb "$T_LRSS"), follower $(mb "$T_FRSS"); redis primary $(mb "$R_PRSS"), replica $(mb "$R_RRSS"): $(awk -v a="$T_LRSS" -v b="$R_PRSS" -v c="$T_FRSS" -v d="$R_RRSS" 'BEGIN{printf "%.2fx, %.2fx (target <= 1.00x)", a/b, c/d}')"
  say "disk per node with $LOAD_KEYS keys: tandem leader $(mb "$T_DISK"), follower $(mb "$T_FDISK"); redis primary $(mb "$R_DISK"), replica $(mb "$R_RDISK"): $(awk -v a="$T_DISK" -v b="$R_DISK" -v c="$T_FDISK" -v d="$R_RDISK" 'BEGIN{printf "%.2fx, %.2fx (target <= 3.00x)", a/b, c/d}')"
fi
if [ -n "$LARGE_SIZES" ]; then
  say "large values (ms; RSS growth in MB):"
  say "$LARGE_TABLE"
  say "$LARGE_PEAK"
  say "$LARGE_IDLE"
fi
for l in "${DIGEST_SUMMARY[@]}"; do say "replica digests $l"; done
say "($(nproc) cores shared by client and servers; $ROUNDS round(s) of N/ROUNDS = $N_RUN requests per test and system, load at the end $(cut -d' ' -f1-3 /proc/loadavg))"
exit $FAILED
