#!/usr/bin/env bash
# Tools apart (issue 20): no product package links a tool package. The
# tools are internal/tools/... and cmd/tandem-bench; the test harness is
# test/..., internal/testbin and internal/testutil; everything else is
# product, and `go list -deps` of it (its whole import graph, test files
# excluded) must not name a tool package. Prints each offender and the
# tool packages it links.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
tools="^$mod/(internal/tools(/|\$)|cmd/tandem-bench\$)"
harness="^$mod/(test/|internal/testbin\$|internal/testutil\$)"
product=$(go list ./... | grep -Ev "$tools" | grep -Ev "$harness")
if [ -z "$product" ]; then
  echo "tools-apart: no product package found"; exit 1
fi
if ! go list -deps $product | grep -Eq "$tools"; then
  echo "tools-apart: $(echo "$product" | wc -l) product packages, none links a tool package"
  exit 0
fi
echo "tools-apart: product packages link tool packages (move the code, or the import, to internal/tools):"
for p in $product; do
  bad=$(go list -deps "$p" | grep -E "$tools" || true)
  if [ -n "$bad" ]; then
    echo "  $p links: $(echo $bad)"
  fi
done
exit 1
