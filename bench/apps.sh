#!/usr/bin/env bash
# bench/apps.sh: what applications build on Redis beyond GET/SET, tandem
# beside Redis 7 in one run: MULTI of 5 SETs, EVALSHA of a compare-and-set
# script, an LPUSH/BLPOP job queue (50 producers, 50 consumers) and PUBLISH
# fan-out to 100 subscribers over the 3 servers, each with SET (50 clients)
# from the same run as the yardstick: it prints each workload's
# tandem/redis ratio beside SET's, round by round (--rounds, default 3,
# the targets' order swapped each round) and their median, which the
# verdict uses. See bench/README.md and `tandem bench apps --help`.
#
# Usage (as root on Debian, from anywhere):
#   bench/apps.sh [tandem bench apps flags]
#   bench/apps.sh --rounds 5 --duration 4s --workloads set,queue
# Environment: WORKDIR  parent of the run's temp dir [$TMPDIR or /tmp]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$PATH:/usr/local/go/bin

die() { printf 'apps.sh: %s\n' "$*" >&2; exit 1; }

need=()
command -v redis-server >/dev/null || need+=(redis-server)
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

BIN=$(mktemp -d "${WORKDIR:-${TMPDIR:-/tmp}}/tandem-apps-bin.XXXXXX")
trap 'rm -rf "$BIN"' EXIT
# tandem bench runs the tools binary, tandem-bench, found beside tandem.
(cd "$REPO" && go build -o "$BIN/" ./cmd/tandem ./cmd/tandem-bench)
printf 'redis-server %s, %s cores, tandem %s\n' "$rv" "$(nproc)" "$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
TMPDIR=${WORKDIR:-${TMPDIR:-/tmp}} "$BIN/tandem" bench apps "$@"
