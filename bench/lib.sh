# Shared by the bench scripts (source it after setting BENCH_NAME and RUN):
# logging, the processes a script starts and their cleanup, tool installs.
# shellcheck shell=bash

log() { printf '[%s] %s\n' "$BENCH_NAME" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$BENCH_NAME" "$*" >&2; exit 1; }

# ---------------------------------------------------------------- processes
STARTED=()
# Whether PID runs (an exited child stays a zombie, state Z, until it is reaped).
alive() {
  local line
  line="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ ${line##*) } != Z* ]]
}
# PID and all its descendants.
tree_pids() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { i = length($0); while (i > 0 && substr($0, i, 1) != ")") i--
      split(substr($0, i + 2), f, " "); parent[$1] = f[2] }
    END { keep[root] = 1; grew = 1
          while (grew) { grew = 0
            for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; grew = 1 } }
          for (p in keep) if (p in parent) print p }'
}
# SIGTERM, then SIGKILL to the whole tree after 5 s.
stop_pid() {
  local pid=$1 i
  alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    local child
    for child in $(tree_pids "$pid"); do kill -KILL "$child" 2>/dev/null || true; done
  fi
  wait "$pid" 2>/dev/null || true
}
# Drops PID from STARTED (once it was stopped or killed), so that cleanup never signals a
# reused PID.
forget() {
  local keep=() p
  for p in "${STARTED[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  STARTED=("${keep[@]}")
}
stop_started() {
  stop_pid "$1"
  forget "$1"
}
cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
  STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CPU CMD... : starts CMD pinned to CPU, logs to $RUN/NAME.log, sets STARTED_PID.
start() {
  local name=$1 cpu=$2
  shift 2
  taskset -c "$cpu" "$@" >"$RUN/$name.log" 2>&1 &
  STARTED_PID=$!
  STARTED+=("$STARTED_PID")
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- tools
# Debian puts haproxy and nginx in /usr/sbin, which a non-login shell may not have on PATH.
export PATH="$PATH:/usr/sbin:/sbin:$HOME/.cargo/bin"
# need_apt TOOL PACKAGE: installs PACKAGE when TOOL is missing (as root), or dies.
need_apt() {
  local tool=$1 pkg=$2
  command -v "$tool" >/dev/null 2>&1 && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing $pkg (apt-get)"
    apt-get install -y "$pkg" >&2 || { apt-get update >&2 && apt-get install -y "$pkg" >&2; }
  fi
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: apt-get install $pkg"
}
# need_oha: oha from the Rust crate registry when missing.
need_oha() {
  command -v oha >/dev/null 2>&1 && return 0
  command -v cargo >/dev/null 2>&1 || die "oha is missing and cargo is not installed"
  log "installing oha (cargo install oha --locked; takes several minutes)"
  cargo install oha --locked >&2
}

# ---------------------------------------------------------------- reports
# put_section TARGET SECTION NAME: puts the file SECTION into TARGET between
# the lines $BEGIN_MARK and $END_MARK, replacing what is there, or appends it
# (with the markers) when TARGET has none; NAME is for the log line.
put_section() {
  local target=$1 section=$2 name=$3
  local block="$RUN/$name.block.md"
  { echo "$BEGIN_MARK"; cat "$section"; echo "$END_MARK"; } >"$block"
  mkdir -p "$(dirname "$target")"
  if [[ -f $target ]] && grep -qxF "$BEGIN_MARK" "$target" && grep -qxF "$END_MARK" "$target"; then
    awk -v b="$BEGIN_MARK" -v e="$END_MARK" -v f="$block" '
      $0 == b { while ((getline line < f) > 0) print line; skip = 1; next }
      $0 == e { skip = 0; next }
      !skip' "$target" >"$block.new"
    cat "$block.new" >"$target"
    log "replaced the $name section in $target"
  else
    { [[ -s $target ]] && echo; cat "$block"; } >>"$target"
    log "appended the $name section to $target"
  fi
}
