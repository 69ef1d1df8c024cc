# bench/static.sh: sourced by bench/bulk.sh and bench/large.sh, after they
# set NAME (for messages) and P (node 1's RESP port). Starts a static
# 3-node cluster (`tandem up --static --mode async`: node 1 leads, nothing
# fails over) on RESP ports P, P+1, P+2 from the binary TANDEM (default:
# built from this tree) in a temporary dir D, which goes with the cluster
# on exit; waits until node 1 and node 3 answer, sets L, F1, F2 to the
# nodes' pids and defines pid, hwm, rss (KiB) and cpu (clock ticks) of a
# pid.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
D=$(mktemp -d)
UP=
cleanup() {
  if [ -n "$UP" ]; then kill -TERM -- "-$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; fi
  rm -rf "$D"
}
trap cleanup EXIT
BIN=${TANDEM:-}
if [ -z "$BIN" ]; then
  BIN=$D/tandem
  (cd "$REPO" && PATH=$PATH:/usr/local/go/bin go build -o "$BIN" ./cmd/tandem)
fi
setsid "$BIN" up --static --nodes 3 --port "$P" --mode async --dir "$D/data" --sentinel-port 0 >"$D/up.log" 2>&1 &
UP=$!
for _ in $(seq 300); do
  [ "$(redis-cli -p "$P" ping 2>/dev/null)" = PONG ] && [ "$(redis-cli -p $((P + 2)) ping 2>/dev/null)" = PONG ] && break
  sleep 0.1
done
sleep 2 # the followers connect
pid() { pgrep -f -- "--resp-addr 127.0.0.1:$1 " | head -1; }
hwm() { awk '/VmHWM/{print $2}' "/proc/$1/status"; }
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
L=$(pid "$P") F1=$(pid $((P + 1))) F2=$(pid $((P + 2)))
[ -n "$L" ] && [ -n "$F1" ] && [ -n "$F2" ] || { echo "$NAME: the cluster did not start (see $D/up.log)" >&2; exit 1; }
