#!/usr/bin/env bash
# Regenerates internal/peerpb from proto/peer.proto with pinned plugin
# versions. Needs protoc (Debian: apt-get install protobuf-compiler).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN=$bin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN=$bin go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
PATH=$bin:$PATH protoc -I proto \
  --go_out=internal/peerpb --go_opt=paths=source_relative \
  --go-grpc_out=internal/peerpb --go-grpc_opt=paths=source_relative \
  proto/peer.proto
