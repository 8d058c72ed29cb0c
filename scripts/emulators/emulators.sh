#!/usr/bin/env bash
# Local AWS emulators for sauna's integration tests, on 127.0.0.1 only:
#   kinesalite 3.3.3 (Kinesis), dynalite 4.0.0 (DynamoDB), moto_server (CloudWatch).
#
# Usage: emulators.sh start|stop|env|status
#
#   start   install the npm packages if needed, start the servers, wait until
#           each answers a real request, write the env file
#   stop    stop exactly the processes that start recorded (safe to repeat)
#   env     print `export` lines for the endpoints: eval "$(emulators.sh env)"
#   status  print each server's state; exit 1 unless all recorded ones run
#
# Environment:
#   EMULATORS_DIR   state dir for pid files, logs and the env file
#                   (default: $PWD/.emulators)
#   KINESIS_PORT, DYNAMODB_PORT, MOTO_PORT
#                   fixed ports; unset or 0 picks a free port, so parallel
#                   runs on one machine never collide
#   WITH_MOTO=0     skip moto_server (no CloudWatch endpoint)
#   EMULATORS_READY_TIMEOUT_MS
#                   readiness limit per server (default 15000)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
state_dir=${EMULATORS_DIR:-$PWD/.emulators}
with_moto=${WITH_MOTO:-1}
ready_timeout_ms=${EMULATORS_READY_TIMEOUT_MS:-15000}

log() { printf 'emulators: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

now_ms() { date +%s%3N; }
elapsed() { local ms=$(($(now_ms) - $1)); printf '%d.%02ds' $((ms / 1000)) $((ms % 1000 / 10)); }

# A pid is alive unless it is gone or a zombie: orphans re-parented to an init
# that does not reap them stay in the table as 'Z', and kill -0 still succeeds.
alive() {
  local pid=$1 stat st
  if [[ -d /proc ]] && [[ -e /proc/self/stat ]]; then
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    st=${stat##*) }
    st=${st%% *}
    [[ $st != Z && $st != X ]]
  else
    st=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
    [[ -n $st && $st != Z* ]]
  fi
}

# Guards against pid reuse: only signal a pid whose command line still looks
# like the server we started under that name.
marker_for() {
  case $1 in
    kinesis) echo kinesalite-local.js ;;
    dynamodb) echo dynalite-local.js ;;
    moto) echo moto_server ;;
  esac
}

owns() {
  local name=$1 pid=$2 cmd
  if [[ -r /proc/$pid/cmdline ]]; then
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  else
    cmd=$(ps -o command= -p "$pid" 2>/dev/null) || return 1
  fi
  [[ $cmd == *"$(marker_for "$name")"* ]]
}

names() {
  if [[ $with_moto != 0 ]]; then echo kinesis dynamodb moto; else echo kinesis dynamodb; fi
}

abs_state_dir() {
  mkdir -p "$state_dir"
  state_dir=$(cd "$state_dir" && pwd)
  # Keep the state dir out of git wherever it is created.
  [[ -e $state_dir/.gitignore ]] || printf '*\n' >"$state_dir/.gitignore"
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH. $2"
}

# npm ci wipes node_modules first, so concurrent starts from one checkout
# must not run it at the same time: serialise on a lock file.
ensure_packages() {
  local lockfile=$here/.npm-ci.lock
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$lockfile"
    flock 9
  fi
  local installed=$here/node_modules/.package-lock.json
  if [[ ! -f $here/node_modules/kinesalite/package.json || ! -f $here/node_modules/dynalite/package.json ||
        ! -f $installed || $here/package-lock.json -nt $installed ]]; then
    local t0
    t0=$(now_ms)
    log "npm ci in $here"
    # Both native modules ship linux-x64 prebuilds, so the skipped install
    # scripts npm warns about are not needed; --loglevel=error hides that noise.
    if ! npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >"$state_dir/npm-ci.log" 2>&1; then
      cat "$state_dir/npm-ci.log" >&2
      die "npm ci failed in $here (is the npm registry reachable?)"
    fi
    log "npm ci done in $(elapsed "$t0")"
  fi
  if command -v flock >/dev/null 2>&1; then
    exec 9>&-
  fi
}

# launch NAME PORT: start the server as a direct child so that $! is the
# server itself (a `cd dir && node ... &` would record a subshell instead).
launch() {
  local name=$1 port=$2 logf=$state_dir/$1.log
  case $name in
    kinesis)
      node "$here/kinesalite-local.js" --host 127.0.0.1 --port "$port" \
        --createStreamMs 0 --deleteStreamMs 0 --updateStreamMs 0 --shardLimit 10000 \
        </dev/null >"$logf" 2>&1 &
      ;;
    dynamodb)
      node "$here/dynalite-local.js" --host 127.0.0.1 --port "$port" \
        --createTableMs 0 --deleteTableMs 0 --updateTableMs 0 \
        </dev/null >"$logf" 2>&1 &
      ;;
    moto)
      # A pip entry point (or a pyenv shim that execs one): $! is the server.
      moto_server -H 127.0.0.1 -p "$port" </dev/null >"$logf" 2>&1 &
      ;;
  esac
  echo $! >"$state_dir/$name.pid"
  echo "$port" >"$state_dir/$name.port"
}

# wait_ready NAME PORT -> 0 ready, 3 died, 4 timed out
wait_ready() {
  local name=$1 port=$2 pid rc=0
  pid=$(<"$state_dir/$name.pid")
  node "$here/probe.js" ready "$name" "http://127.0.0.1:$port" "$pid" "$ready_timeout_ms" || rc=$?
  return "$rc"
}

show_log() {
  local f=$state_dir/$1.log
  if [[ -s $f ]]; then
    log "---- $f ----"
    tail -n 40 "$f" >&2
    log "---- end of $f ----"
  else
    log "($f is empty)"
  fi
}

start_failed() {
  if (($1 != 0)); then
    cmd_stop >/dev/null 2>&1 || true
  fi
}

cmd_start() {
  abs_state_dir
  need node "Install Node.js 20 (Debian: apt-get install -y nodejs npm)."
  need npm "Install npm (Debian: apt-get install -y npm)."
  if [[ $with_moto != 0 ]]; then
    need moto_server "Install moto 5.2.1 with its server extra (pip install 'moto[server]==5.2.1'), or set WITH_MOTO=0 to run without CloudWatch."
  fi

  local name pid
  for name in kinesis dynamodb moto; do
    if [[ -f $state_dir/$name.pid ]]; then
      pid=$(<"$state_dir/$name.pid")
      if alive "$pid" && owns "$name" "$pid"; then
        die "$name is already running from $state_dir (pid $pid); run '$0 stop' first or use another EMULATORS_DIR"
      fi
    fi
  done
  rm -f "$state_dir"/*.pid "$state_dir"/*.port "$state_dir/env"

  ensure_packages

  # From here on, any failure or interruption must not leave half the
  # servers running.
  trap 'start_failed $?' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  local -a list wanted got
  read -r -a list <<<"$(names)"
  local var val
  for name in "${list[@]}"; do
    var=${name^^}_PORT
    val=${!var:-0}
    if ! [[ $val =~ ^[0-9]{1,5}$ ]] || ((10#$val > 65535)); then
      die "$var='$val' is not a port number"
    fi
    wanted+=("$((10#$val))")
  done
  local ports_out
  if ! ports_out=$(node "$here/probe.js" ports "${wanted[@]}" 2>&1); then
    die "$ports_out: free it, or choose other KINESIS_PORT/DYNAMODB_PORT/MOTO_PORT values (unset picks free ports)"
  fi
  read -r -a got <<<"$ports_out"

  local t0 i rc tries port
  t0=$(now_ms)
  for i in "${!list[@]}"; do
    launch "${list[$i]}" "${got[$i]}"
  done

  for i in "${!list[@]}"; do
    name=${list[$i]}
    port=${got[$i]}
    tries=1
    while :; do
      rc=0
      wait_ready "$name" "$port" || rc=$?
      if ((rc == 0)); then
        break
      fi
      # A picked port can be taken by someone else between the check and the
      # server's bind; pick again rather than fail the whole run.
      if ((rc == 3)) && [[ ${wanted[$i]} == 0 ]] && ((tries < 3)) &&
        grep -qiE 'EADDRINUSE|address already in use' "$state_dir/$name.log" 2>/dev/null; then
        port=$(node "$here/probe.js" ports 0)
        log "$name: picked port was taken meanwhile, retrying on $port"
        launch "$name" "$port"
        tries=$((tries + 1))
        continue
      fi
      show_log "$name"
      if ((rc == 3)); then
        die "$name exited during startup on 127.0.0.1:$port (log above)"
      elif ((rc == 4)); then
        die "$name not ready on 127.0.0.1:$port after ${ready_timeout_ms} ms (log above)"
      else
        die "$name readiness probe failed (rc=$rc)"
      fi
    done
    got[i]=$port
    log "$name ready on http://127.0.0.1:$port (pid $(<"$state_dir/$name.pid"))"
  done

  local kin_url dyn_url cw_url=""
  kin_url=http://127.0.0.1:$(<"$state_dir/kinesis.port")
  dyn_url=http://127.0.0.1:$(<"$state_dir/dynamodb.port")
  if [[ -f $state_dir/moto.port ]]; then
    cw_url=http://127.0.0.1:$(<"$state_dir/moto.port")
  fi
  {
    # Dummy credentials: no emulator checks signatures, and real ones must
    # never be sent anywhere from a test. No IMDS: it lives off loopback.
    echo "export AWS_ACCESS_KEY_ID=test"
    echo "export AWS_SECRET_ACCESS_KEY=test"
    echo "export AWS_REGION=us-east-1"
    echo "export AWS_EC2_METADATA_DISABLED=true"
    echo "export AWS_ENDPOINT_URL_KINESIS=$kin_url"
    echo "export AWS_ENDPOINT_URL_DYNAMODB=$dyn_url"
    if [[ -n $cw_url ]]; then echo "export AWS_ENDPOINT_URL_CLOUDWATCH=$cw_url"; fi
    echo "export SAUNA_TEST_KINESIS_ENDPOINT=$kin_url"
    echo "export SAUNA_TEST_DYNAMODB_ENDPOINT=$dyn_url"
    if [[ -n $cw_url ]]; then
      echo "export SAUNA_TEST_CLOUDWATCH_ENDPOINT=$cw_url"
    else
      # A value left from an earlier eval would point at a dead moto.
      echo "unset AWS_ENDPOINT_URL_CLOUDWATCH SAUNA_TEST_CLOUDWATCH_ENDPOINT"
    fi
  } >"$state_dir/env.tmp"
  mv "$state_dir/env.tmp" "$state_dir/env"
  trap - EXIT INT TERM
  log "all ready in $(elapsed "$t0"); state in $state_dir"
}

cmd_stop() {
  if [[ ! -d $state_dir ]]; then
    return 0
  fi
  local f name pid
  local -a pids=()
  for f in "$state_dir"/*.pid; do
    [[ -e $f ]] || continue
    name=$(basename "$f" .pid)
    pid=$(<"$f")
    if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && owns "$name" "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    else
      # Gone before it was told to stop: every test after that moment met
      # "connection refused"; its log says why it went.
      log "$name (pid $pid) had exited before stop"
      show_log "$name"
    fi
  done

  # TERM first so the servers exit cleanly; KILL whatever is left after 2 s.
  local deadline left
  deadline=$(($(now_ms) + 2000))
  while :; do
    left=()
    for pid in "${pids[@]}"; do
      if alive "$pid"; then left+=("$pid"); fi
    done
    ((${#left[@]} == 0)) && break
    if (($(now_ms) >= deadline)); then
      log "still running after TERM, sending KILL: ${left[*]}"
      kill -KILL "${left[@]}" 2>/dev/null || true
      deadline=$(($(now_ms) + 1000))
      while (($(now_ms) < deadline)); do
        left=()
        for pid in "${pids[@]}"; do
          if alive "$pid"; then left+=("$pid"); fi
        done
        ((${#left[@]} == 0)) && break
        sleep 0.05
      done
      ((${#left[@]} == 0)) || die "could not stop pids ${left[*]}"
      break
    fi
    pids=("${left[@]}")
    sleep 0.05
  done
  rm -f "$state_dir"/*.pid "$state_dir"/*.port "$state_dir/env"
}

cmd_env() {
  [[ -f $state_dir/env ]] || die "no emulators running from $state_dir; run '$0 start' first (with the same EMULATORS_DIR)"
  cat "$state_dir/env"
}

cmd_status() {
  local name pid port any=0 bad=0
  for name in kinesis dynamodb moto; do
    [[ -f $state_dir/$name.pid ]] || continue
    any=1
    pid=$(<"$state_dir/$name.pid")
    port=$(cat "$state_dir/$name.port" 2>/dev/null || echo '?')
    if alive "$pid" && owns "$name" "$pid"; then
      printf '%-9s running  pid %-7s http://127.0.0.1:%s\n' "$name" "$pid" "$port"
    else
      printf '%-9s DEAD     pid %-7s (log: %s)\n' "$name" "$pid" "$state_dir/$name.log"
      bad=1
    fi
  done
  if ((any == 0)); then
    echo "not started (state dir: $state_dir)"
    return 1
  fi
  return "$bad"
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) cmd_env ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start|stop|env|status" >&2
    exit 2
    ;;
esac
