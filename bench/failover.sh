#!/usr/bin/env bash
# bench/failover.sh: the failover benchmark. kill -9 the leader under a
# steady write load, 10 times per target, and print detection, promotion and
# write-unavailability times and the acknowledged writes lost; Redis
# Sentinel (3 sentinels, quorum 2, primary + 2 replicas, fsync on) is one
# target. See bench/README.md and `tandem bench failover --help`.
#
# Usage (as root on Debian, from anywhere):
#   bench/failover.sh [--long] [tandem bench failover flags]
#   bench/failover.sh --targets redis-sentinel --trials 10
# Before each target's trials its leader is saturated, counting the (false)
# failovers: redis-benchmark -c 50 -P 16 SET over 1M keys, then 50
# bulk-load streams (redis-cli --pipe's load: SETs sent without waiting for
# replies, over the same 1M keys). The default run (45 s + 30 s) takes
# about 3 minutes for tandem; --long (first argument) runs 90 s of each: a
# leak that grows with the keys written showed only after a minute or more.
# Environment: WORKDIR  parent of the run's temp dir [$TMPDIR or /tmp]
#              SATURATE, SATURATE_BULK  the two phases' lengths [45s, 30s;
#                        --long 90s, 90s; 0 skips; --saturate and
#                        --saturate-bulk flags win]
set -euo pipefail

sat=45s bulk=30s
if [ "${1:-}" = --long ]; then
  shift
  sat=90s bulk=90s
fi

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$PATH:/usr/local/go/bin

die() { printf 'failover.sh: %s\n' "$*" >&2; exit 1; }

# Sentinel is redis-server --sentinel: the redis-server package is enough
# (Debian's redis-sentinel package only adds a symlink and a system service).
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
if ((${#need[@]})); then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "need root to apt-get install ${need[*]}"
    sudo=sudo
  fi
  printf 'installing %s (apt-get)\n' "${need[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v go >/dev/null || die "Go is not installed: tandem needs Go $(awk '/^go /{print $2}' "$REPO/go.mod") (https://go.dev/dl), in PATH or /usr/local/go/bin"
rv=$(redis-server --version | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')
[ "${rv%%.*}" -ge 7 ] || die "redis-server $rv found; this benchmark measures Redis 7 (Debian 12 ships 7.0)"

BIN=$(mktemp -d "${WORKDIR:-${TMPDIR:-/tmp}}/tandem-failover-bin.XXXXXX")
trap 'rm -rf "$BIN"' EXIT
# tandem bench runs the tools binary, tandem-bench, found beside tandem.
(cd "$REPO" && go build -o "$BIN/" ./cmd/tandem ./cmd/tandem-bench)
printf 'redis-server %s, %s cores\n' "$rv" "$(nproc)"
TMPDIR=${WORKDIR:-${TMPDIR:-/tmp}} "$BIN/tandem" bench failover --saturate "${SATURATE:-$sat}" --saturate-bulk "${SATURATE_BULK:-$bulk}" "$@"
