# shellcheck shell=bash
# Helpers shared by the benchmark scripts. Source after setting BENCH_TAG
# (the log prefix). Nothing here starts or mounts anything by itself.

log() { printf '[%s] %s\n' "${BENCH_TAG:-bench}" "$*" >&2; }
die() { printf '[%s] error: %s\n' "${BENCH_TAG:-bench}" "$*" >&2; exit 1; }

# command -> Debian package that provides it
ensure_packages() {
  local -A provider=(
    [fio]=fio
    [nbdkit]=nbdkit
    [nbdfuse]=libnbd-bin
    [fusermount3]=fuse3
    [python3]=python3
    [findmnt]=util-linux
  )
  local cmd missing=()
  for cmd in "${!provider[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${provider[$cmd]}")
  done
  if ((${#missing[@]})); then
    log "installing missing packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # The file plugin ships inside the nbdkit package on Debian 12; some
  # releases split plugins out, so look for a separate package if needed.
  if ! nbdkit file --version >/dev/null 2>&1; then
    if apt-cache show nbdkit-plugin-file >/dev/null 2>&1; then
      log "installing nbdkit-plugin-file"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nbdkit-plugin-file >/dev/null
    fi
    nbdkit file --version >/dev/null 2>&1 || die "the nbdkit file plugin is not usable ('nbdkit file --version' fails)"
  fi
}

is_mounted() { [[ -n $1 ]] && findmnt -rn -M "$1" >/dev/null 2>&1; }

# stop_pid PID NAME: wait (bounded) for PID to leave, then TERM, then KILL.
stop_pid() {
  local pid=$1 name=$2 i
  [[ -n $pid ]] || return 0
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) still running; sending TERM"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored TERM; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# Serves $IMAGE with nbdkit's file plugin on $NBD_SOCK and mounts it with
# nbdfuse on $NBD_MNT (the image appears as $NBD_MNT/nbd); logs go to $LOGS.
# Sets NBDKIT_PID and NBDFUSE_PID. On failure records it in FAILURES and
# returns 1; unmount_nbdfuse undoes either way.
mount_nbdfuse() {
  nbdkit --exit-with-parent -f -U "$NBD_SOCK" -P "$WORK/nbdkit.pid" \
    file "file=$IMAGE" >"$LOGS/nbdkit.log" 2>&1 &
  NBDKIT_PID=$!
  if ! wait_until "$READY_TIMEOUT" "$NBDKIT_PID" nbdkit test -S "$NBD_SOCK"; then
    FAILURES+=("nbdkit/start")
    return 1
  fi
  nbdfuse -P "$WORK/nbdfuse.pid" "$NBD_MNT" --unix "$NBD_SOCK" >"$LOGS/nbdfuse.log" 2>&1 &
  NBDFUSE_PID=$!
  if ! wait_until "$READY_TIMEOUT" "$NBDFUSE_PID" nbdfuse test -s "$WORK/nbdfuse.pid"; then
    FAILURES+=("nbdfuse/mount")
    return 1
  fi
}

unmount_nbdfuse() {
  if is_mounted "$NBD_MNT"; then
    fusermount3 -u -z "$NBD_MNT" 2>/dev/null || umount -l "$NBD_MNT" 2>/dev/null || true
  fi
  stop_pid "$NBDFUSE_PID" nbdfuse
  NBDFUSE_PID=""
  if [[ -n $NBDKIT_PID ]]; then
    kill -TERM "$NBDKIT_PID" 2>/dev/null || true
    stop_pid "$NBDKIT_PID" nbdkit
    NBDKIT_PID=""
  fi
}

# wait_until TIMEOUT PID NAME CMD...: poll CMD every 0.1 s; fail if PID dies
# or TIMEOUT seconds pass.
wait_until() {
  local timeout=$1 pid=$2 name=$3 i
  shift 3
  for ((i = 0; i < timeout * 10; i++)); do
    "$@" && return 0
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited before it was ready (see its log)"
      return 1
    fi
    sleep 0.1
  done
  log "$name not ready after ${timeout} s"
  return 1
}
