#!/usr/bin/env bash
# bench/commit.sh: the commit-mode benchmark. tandem in every commit mode
# against Redis 7 (SET + WAIT 1 0), etcd 3.4 (3 members) and PostgreSQL 15
# (one synchronous standby), fsync on everywhere, in one run. See
# bench/README.md and `tandem bench commit --help`.
#
# Usage (as root on Debian 12, from anywhere):
#   bench/commit.sh [tandem bench commit flags]
#   bench/commit.sh --targets tandem-semisync,redis-wait --duration 10s
# Environment: WORKDIR  parent of the run's temp dir [$TMPDIR or /tmp]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$PATH:/usr/local/go/bin

die() { printf 'commit.sh: %s\n' "$*" >&2; exit 1; }

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v etcd >/dev/null || need+=(etcd-server)
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need+=(postgresql)
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
# Debian starts a cluster and an etcd as system services on install; they
# would share the cores with the benchmark.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl stop etcd postgresql >/dev/null 2>&1 || true
fi
command -v go >/dev/null || die "Go is not installed: tandem needs Go $(awk '/^go /{print $2}' "$REPO/go.mod") (https://go.dev/dl), in PATH or /usr/local/go/bin"

BIN=$(mktemp -d "${WORKDIR:-${TMPDIR:-/tmp}}/tandem-commit-bin.XXXXXX")
trap 'rm -rf "$BIN"' EXIT
# tandem bench runs the tools binary, tandem-bench, found beside tandem.
(cd "$REPO" && go build -o "$BIN/" ./cmd/tandem ./cmd/tandem-bench)
printf '%s cores, %s\n' "$(nproc)" "$(uname -r)"
TMPDIR=${WORKDIR:-${TMPDIR:-/tmp}} "$BIN/tandem" bench commit "$@"
