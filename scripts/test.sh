#!/usr/bin/env bash
# Runs sauna's whole test suite: static checks, then `go test -race` with the
# local AWS emulators (kinesalite, dynalite, moto_server) up on 127.0.0.1.
#
# Usage:
#   scripts/test.sh                          everything
#   scripts/test.sh ./observer/...           only these packages (vet and gofmt too)
#   scripts/test.sh -run TestX -v ./pkg/...  extra flags go to `go test`
#
# Arguments that look like package patterns (./x, ../x, ., or the module
# path) select packages; everything else is passed to `go test` after the
# default flags, so e.g. -count=3 or -timeout 5m overrides them.
#
# Environment: WITH_MOTO=0 runs without moto_server (CloudWatch tests skip);
# KINESIS_PORT/DYNAMODB_PORT/MOTO_PORT fix ports (default: free ones, so
# parallel runs on one machine do not collide).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
module=github.com/sauna-io/sauna
emulators=$root/scripts/emulators/emulators.sh

say() { printf '==> %s\n' "$*"; }
die() { printf 'test.sh: error: %s\n' "$*" >&2; exit 1; }

# ---- arguments ---------------------------------------------------------------
pkgs=()
flags=()
for arg in "$@"; do
  case $arg in
    . | .. | ./* | ../* | "$module" | "$module"/*) pkgs+=("$arg") ;;
    *) flags+=("$arg") ;;
  esac
done
whole=0
if ((${#pkgs[@]} == 0)); then
  pkgs=(./...)
  whole=1
fi

# ---- prerequisites -----------------------------------------------------------
command -v go >/dev/null 2>&1 || die "go not found on PATH: install Go $(sed -n 's/^go //p' go.mod) or later (https://go.dev/dl/)"

if ! command -v node >/dev/null 2>&1; then
  # CI machines are root with Debian's packages reachable; a developer
  # machine is left alone.
  if [[ ${CI:-} == true ]] && command -v apt-get >/dev/null 2>&1; then
    say "node not found; installing Debian's nodejs and npm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nodejs npm >/dev/null
  fi
fi
command -v node >/dev/null 2>&1 || die "node not found on PATH: install Node.js 20 (Debian: apt-get install -y nodejs npm); the Kinesis and DynamoDB emulators run on it"
command -v npm >/dev/null 2>&1 || die "npm not found on PATH: install npm (Debian: apt-get install -y npm); it installs the emulators from scripts/emulators/package-lock.json"
if [[ ${WITH_MOTO:-1} != 0 ]]; then
  command -v moto_server >/dev/null 2>&1 ||
    die "moto_server not found on PATH: install moto 5.2.1 (pip install 'moto[server]==5.2.1'), or run with WITH_MOTO=0 to skip the CloudWatch tests"
fi
# -race needs cgo and a C compiler.
[[ $(go env CGO_ENABLED) == 1 ]] || die "go test -race needs cgo: CGO_ENABLED is not 1 (install gcc and unset CGO_ENABLED=0)"
cc=$(go env CC)
command -v "${cc%% *}" >/dev/null 2>&1 || die "go test -race needs a C compiler: '$cc' not found (Debian: apt-get install -y gcc)"

# ---- static checks -----------------------------------------------------------
# PrepareCheckpoint in vmware-go-kcl-v2 v1.0.0 is a stub that returns nil and
# makes the caller dereference it: any production call is a panic waiting to
# happen. Comments are stripped first, so mentioning it is fine; tests may use
# it to prove the guard.
say "guard: no PrepareCheckpoint calls outside tests"
mapfile -d '' gofiles < <(find . -mindepth 1 \
  \( -name '.*' -o -name '_*' -o -name testdata -o -name vendor -o -name node_modules \) -prune -o \
  -type f -name '*.go' ! -name '*_test.go' -print0)
if ((${#gofiles[@]} > 0)); then
  if hits=$(awk '{ line = $0; sub(/\/\/.*/, "", line) }
      line ~ /\.PrepareCheckpoint([^A-Za-z0-9_]|$)/ { printf "%s:%d: %s\n", FILENAME, FNR, $0; n++ }
      END { exit n == 0 }' "${gofiles[@]}"); then
    printf '%s\n' "$hits" >&2
    die "PrepareCheckpoint is forbidden outside tests (it panics in vmware-go-kcl-v2); use Checkpoint"
  fi
fi

say "gofmt ${pkgs[*]}"
mapfile -t dirs < <(go list -e -f '{{.Dir}}' "${pkgs[@]}")
unformatted=()
gofmt_err=0
for d in "${dirs[@]}"; do
  [[ -n $d ]] || continue
  mapfile -d '' files < <(find "$d" -maxdepth 1 -type f -name '*.go' -print0)
  ((${#files[@]} > 0)) || continue
  out=$(gofmt -l "${files[@]}") || gofmt_err=1
  if [[ -n $out ]]; then
    mapfile -t -O "${#unformatted[@]}" unformatted <<<"$out"
  fi
done
((gofmt_err == 0)) || die "gofmt could not parse some files (errors above)"
if ((${#unformatted[@]} > 0)); then
  printf '  %s\n' "${unformatted[@]#"$root"/}" >&2
  die "these files are not gofmt-formatted: run gofmt -w on them"
fi

say "go vet ${pkgs[*]}"
go vet "${pkgs[@]}"

# bench/ is a module of its own (it needs the baselines it compares against),
# so ./... does not reach it; the whole suite keeps it building and tested.
if ((whole)); then
  say "bench module: gofmt, go vet, go test"
  bench_unformatted=$(cd bench && gofmt -l .)
  [[ -z $bench_unformatted ]] || die "these bench files are not gofmt-formatted: $bench_unformatted"
  (cd bench && go vet ./... && go test -count=1 ./...)
fi

# ---- emulators ---------------------------------------------------------------
# A private state dir and free ports let several runs share one machine.
EMULATORS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sauna-emulators.XXXXXX")
export EMULATORS_DIR
# shellcheck disable=SC2317 # called from the trap
cleanup() {
  local rc=$?
  "$emulators" stop || rc=1
  rm -rf "$EMULATORS_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting emulators"
if ! "$emulators" start; then
  die "the emulators did not start (details above)"
fi
eval "$("$emulators" env)"

# ---- tests -------------------------------------------------------------------
say "go test -race ${pkgs[*]}"
# bash runs a trap only after the foreground command ends, so a TERM during a
# 25-minute go test would wait for it, emulators and all. Run go test as a job
# in its own process group and wait, which a signal does interrupt; then
# forward the signal to that group so the test binaries stop too.
set -m
go test -race -count=1 -timeout 25m "${flags[@]}" "${pkgs[@]}" &
gotest=$!
set +m
# shellcheck disable=SC2317 # called from the traps
stop_tests() {
  kill -TERM -- "-$gotest" 2>/dev/null || true
  wait "$gotest" 2>/dev/null || true
  exit "$1"
}
trap 'stop_tests 130' INT
trap 'stop_tests 143' TERM
rc=0
wait "$gotest" || rc=$?
exit "$rc"
