#!/usr/bin/env bash
# bench/proxy.sh: what a proxy costs, tandem's against twemproxy's, in one
# run with the same redis-benchmark GET workload (-c CLIENTS, -P 1 and -P 16):
#   tandem: GET straight at the leader  vs  GET through a `tandem proxy`
#           with policy leader (the same node serves it, so the ratio is
#           the proxy's own cost; its CPU per request is printed too), and
#           through tandem up's proxy (policy ryw: reads on the followers,
#           each with the session's position) and a proxy with policy any
#           (reads spread over the followers);
#   Redis:  GET straight at redis-server  vs  GET through twemproxy
#           (Debian's nutcracker) in front of it.
# Prints requests/s and the ratios proxied/direct.
#
# Usage (as root on Debian, from anywhere):  bench/proxy.sh
#   N         requests per redis-benchmark run   [200000]
#   CLIENTS   redis-benchmark -c                  [50]
#   PIPELINES pipeline depths                     ["1 16"]
#   KEYSPACE  redis-benchmark -r                  [100000]
set -euo pipefail

N=${N:-200000}
CLIENTS=${CLIENTS:-50}
PIPELINES=${PIPELINES:-"1 16"}
KEYSPACE=${KEYSPACE:-100000}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$PATH:/usr/local/go/bin

say() { printf '%s\n' "$*"; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v nutcracker >/dev/null || need+=(nutcracker)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  say "installing ${need[*]} (apt-get)"
  $sudo apt-get install -y -q "${need[@]}" >/dev/null || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${need[@]}" >/dev/null; }
fi
# Debian starts a redis-server service on install; this script uses its own.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-proxy-bench.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
base=0
for try in $(seq 1 100); do
  t=$((20000 + (RANDOM % 100) * 100 + RANDOM % 30))
  ok=1
  for p in $t $((t + 1)) $((t + 2)) $((t + 3)) $((t + 4)) $((t + 5)) $((t + 100)) $((t + 101)) $((t + 102)) $((t + 103)) $((t + 104)) $((t + 105)) \
    $((t + 200)) $((t + 201)) $((t + 202)) $((t + 203)) $((t + 50)) $((t + 51)) $((t + 52)) $((t + 60)); do
    port_free "$p" || { ok=0; break; }
  done
  if [ $ok = 1 ]; then base=$t; break; fi
done
[ "$base" != 0 ] || die "no free port range"
P_PORT=$base            # tandem up's proxy (policy ryw, the default)
LEADER_PORT=$((base + 1))
PANY_PORT=$((base + 60)) # a second proxy, policy any
PLEAD_PORT=$((base + 61)) # a third, policy leader: the proxy's own cost
R_PORT=$((base + 50))
TW_PORT=$((base + 51))

say "building tandem"
(cd "$REPO" && go build -o "$WORK/tandem" ./cmd/tandem)

"$WORK/tandem" up --dir "$WORK/t" --nodes 3 --port "$P_PORT" --mode async --sentinel-port 0 --log-level warn >"$WORK/up.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 300); do
  [ "$(redis-cli -p "$P_PORT" set tandem:ready 1 2>/dev/null)" = OK ] && break
  sleep 0.1
done
[ "$(redis-cli -p "$P_PORT" get tandem:ready 2>/dev/null)" = 1 ] || { cat "$WORK/up.log" >&2; die "tandem not ready"; }
LEADER=$(redis-cli -p "$P_PORT" info proxy | tr -d '\r' | sed -n 's/^leader://p')
LEADER_ADDR=$(redis-cli -p "$P_PORT" info proxy | tr -d '\r' | sed -n "s/^node_$LEADER:addr=\([^,]*\),.*/\1/p")
[ -n "$LEADER_ADDR" ] || die "no leader address from the proxy's INFO"
LEADER_PORT=${LEADER_ADDR##*:}
ETCD=$(sed -n 's/.*"\(http:\/\/127.0.0.1:[0-9]*\)".*/\1/p' "$WORK/t/cluster.json" | head -1)
"$WORK/tandem" proxy --etcd "$ETCD" --port "$PANY_PORT" --policy any --log-level warn >"$WORK/proxy-any.log" 2>&1 &
PIDS+=($!)
"$WORK/tandem" proxy --etcd "$ETCD" --port "$PLEAD_PORT" --policy leader --log-level warn >"$WORK/proxy-leader.log" 2>&1 &
PLEAD_PID=$!
PIDS+=($PLEAD_PID)

redis-server --port "$R_PORT" --save '' --appendonly no --dir "$WORK" --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
cat >"$WORK/nutcracker.yml" <<YML
bench:
  listen: 127.0.0.1:$TW_PORT
  hash: fnv1a_64
  distribution: ketama
  redis: true
  server_connections: 1
  servers:
    - 127.0.0.1:$R_PORT:1
YML
nutcracker -c "$WORK/nutcracker.yml" -o "$WORK/nutcracker.log" -s $((base + 52)) &
twpid=$!
PIDS+=($twpid)
for i in $(seq 1 100); do
  [ "$(redis-cli -p "$PANY_PORT" ping 2>/dev/null)" = PONG ] && [ "$(redis-cli -p "$PLEAD_PORT" ping 2>/dev/null)" = PONG ] &&
    [ "$(redis-cli -p "$TW_PORT" set x 1 2>/dev/null)" = OK ] && break
  sleep 0.1
done

say "loading $KEYSPACE keys into tandem and Redis"
redis-benchmark -p "$LEADER_PORT" -t set -n "$KEYSPACE" -r "$KEYSPACE" -c 50 -P 16 -q >/dev/null
redis-benchmark -p "$R_PORT" -t set -n "$KEYSPACE" -r "$KEYSPACE" -c 50 -P 16 -q >/dev/null

rps() { # port pipeline
  redis-benchmark -h 127.0.0.1 -p "$1" -t get -c "$CLIENTS" -n "$N" -r "$KEYSPACE" -P "$2" -q 2>/dev/null |
    awk '/requests per second/ {for (i = 1; i <= NF; i++) if ($i == "requests") {print $(i - 1); exit}}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# CPU time (user + system) of a process in clock ticks, and per request.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
us_per() { awk -v a="$1" -v b="$2" -v n="$N" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", (b - a) / hz * 1e6 / n}'; }

say ""
say "GET, -c $CLIENTS, -n $N, keyspace $KEYSPACE; requests/s (2 CPU cores shared by everything); load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-4s %11s %11s %6s %8s | %10s %10s | %11s %11s %6s %8s\n' "-P" "tandem-dir" "prx-leader" "ratio" "prx us/r" "prx-ryw" "prx-any" "redis-dir" "twemproxy" "ratio" "tw us/r"
for pl in $PIPELINES; do
  td=$(rps "$LEADER_PORT" "$pl")
  c0=$(ticks "$PLEAD_PID")
  tp=$(rps "$PLEAD_PORT" "$pl")
  tpc=$(us_per "$c0" "$(ticks "$PLEAD_PID")")
  tr=$(rps "$P_PORT" "$pl")
  ta=$(rps "$PANY_PORT" "$pl")
  rd=$(rps "$R_PORT" "$pl")
  c0=$(ticks "$twpid")
  rt=$(rps "$TW_PORT" "$pl")
  twc=$(us_per "$c0" "$(ticks "$twpid")")
  printf '%-4s %11s %11s %6s %8s | %10s %10s | %11s %11s %6s %8s\n' "$pl" "$td" "$tp" "$(ratio "$tp" "$td")" "$tpc" "$tr" "$ta" "$rd" "$rt" "$(ratio "$rt" "$rd")" "$twc"
done
say ""
say "ratio = proxied / direct (1.00: the proxy costs nothing); target: tandem's ratio >= twemproxy's."
say "prx-leader: a tandem proxy with policy leader (the leader serves every GET, as direct); us/r: the"
say "proxy's (twemproxy's) CPU per request. prx-ryw: tandem up's proxy on :$P_PORT, policy ryw (reads on"
say "the followers, each carrying the session's position); prx-any: a proxy with policy any."
redis-cli -p "$P_PORT" info proxy | grep -E '^(reads_|requests_failed)' | tr -d '\r' | sed 's/^/  ryw proxy: /'
