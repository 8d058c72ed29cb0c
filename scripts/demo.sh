#!/usr/bin/env bash
# Runs sauna end to end on this machine, with no AWS account: local Kinesis
# and DynamoDB emulators on 127.0.0.1, a stream, `sauna run` on the example
# configs in configs/, the example commands in testdata/commands/ published
# with `sauna publish`, and a local stand-in for Slack's webhook that prints
# what it receives. Everything it starts is stopped by PID when it ends.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
emulators=$root/scripts/emulators/emulators.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/sauna-demo.XXXXXX")
export EMULATORS_DIR=$work/emulators WITH_MOTO=0
pids=()

say() { printf '\n==> %s\n' "$*"; }
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  "$emulators" stop >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "building sauna"
go build -o "$work/sauna" ./cmd/sauna
go build -o "$work/demo" ./scripts/demo

say "starting the Kinesis and DynamoDB emulators on 127.0.0.1"
"$emulators" start
eval "$("$emulators" env)"

say "creating the 2-shard stream sauna-demo"
"$work/demo" create-stream sauna-demo 2

say "starting a local Slack webhook stand-in"
"$work/demo" sink "$work/sink-url" >"$work/sink.log" &
pids+=($!)
for _ in $(seq 100); do [[ -s $work/sink-url ]] && break; sleep 0.05; done
sink=$(cat "$work/sink-url")
echo "Slack stand-in listening on $sink"

say "sauna run --config-dir <copy of configs/ pointing Slack at the stand-in>"
mkdir "$work/configs"
cp configs/*.json "$work/configs/"
sed -i "s#http://127.0.0.1:8089#$sink#" "$work/configs/slack.json"
"$work/sauna" run --config-dir "$work/configs" 2>"$work/sauna.log" &
sauna_pid=$!
pids+=("$sauna_pid")
for _ in $(seq 600); do
  grep -q 'msg="observer started"' "$work/sauna.log" && break
  kill -0 "$sauna_pid" 2>/dev/null || { cat "$work/sauna.log"; exit 1; }
  sleep 0.05
done
grep -q 'msg="observer started"' "$work/sauna.log" || { cat "$work/sauna.log"; echo "sauna did not start" >&2; exit 1; }

say "sauna publish --stream sauna-demo testdata/commands/*.json"
"$work/sauna" publish --stream sauna-demo testdata/commands/*.json

say "waiting for the commands to run"
# Two commands are live; the third expired in 2017 and must be rejected.
for _ in $(seq 600); do
  if [[ $(grep -c '^slack #' "$work/sink.log") -ge 2 && $(grep -c 'msg="command rejected"' "$work/sauna.log") -ge 1 ]]; then
    break
  fi
  sleep 0.1
done

say "what the Slack stand-in received"
cat "$work/sink.log"

say "stopping sauna (SIGTERM)"
kill -TERM "$sauna_pid"
wait "$sauna_pid" || true

say "what sauna logged"
grep -E 'observer started|shard acquired|command rejected|observer stopped|sauna stopped' "$work/sauna.log" | cut -c1-400
