#!/usr/bin/env bash
# Runs the benchmark suite (bench/, its own Go module) against local
# emulators, restarted empty before every measurement, and writes
# docs/benchmarks.md. Arguments go to the harness, e.g.
#   scripts/bench.sh -quick
#   scripts/bench.sh -scenarios startup,latency -consumers sauna,raw
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
emulators=$root/scripts/emulators/emulators.sh

# Own state dir: never touches emulators another run or a developer started.
EMULATORS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sauna-bench-emulators.XXXXXX")
export EMULATORS_DIR
export WITH_MOTO=0

cleanup() {
  "$emulators" stop || true
  rm -rf "$EMULATORS_DIR"
}
trap cleanup EXIT
# Turn signals into a normal exit so the EXIT trap stops the emulators.
trap 'exit 130' INT
trap 'exit 143' TERM

"$emulators" start
eval "$("$emulators" env)"
# Every child (go, the harness, the consumers) inherits this: the SDK must
# never look for instance credentials off loopback.
export AWS_EC2_METADATA_DISABLED=true

cd "$root/bench"
# -emulators: the harness restarts the emulators (same EMULATORS_DIR) before
# every measurement, so none inherits what earlier ones left in them; the
# EXIT trap then stops whichever processes the state dir names last.
go run . -out ../docs/benchmarks.md -emulators "$emulators" "$@"
