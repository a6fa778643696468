#!/usr/bin/env bash
# bench/profile.sh — where each proxy's CPU time per request goes: kernel or user space,
# and how many system calls a request costs. The "what bounds it" companion of proxy.sh.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash bench/profile.sh [--no-build] [--seconds N] [--netns] [--report FILE] [--help]

The same placement and load as bench/proxy.sh (backend nginx and wrk on CPU 0, the proxy on
CPU 1, wrk -t1 -c32, Host: be), for HAProxy, nginx and Sinew in turn, each started afresh:
  1. wrk for N seconds (default 10) while `perf record -e cpu-clock` samples the proxy's
     process tree; CPU µs per request from /proc/PID/stat as in proxy.sh, split between
     the kernel and user space in the proportion of the samples;
  2. wrk for 3 s while `strace -c -f` counts the proxy's system calls (strace slows the
     proxy down; only the counts per request are used).
Writes the section between the profile markers of docs/benchmarks.md (or --report FILE).

Options:
  --no-build     use the existing target/release/sinew
  --seconds N    length of the sampled wrk run (default 10)
  --netns        run inside a private network namespace (root), as proxy.sh --netns
  --report FILE  where to write the section (default docs/benchmarks.md)
Tools: haproxy, nginx, wrk, perf (linux-perf), strace, taskset (installed with apt-get
when missing and run as root). Raw outputs stay in bench/out/profile-*/.
EOF
}

BUILD=1
SECONDS_EACH=10
NETNS=0
REPORT=docs/benchmarks.md
ARGS=("$@")
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --seconds)
      [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || { echo "profile.sh: --seconds needs a whole number" >&2; exit 2; }
      SECONDS_EACH=$2
      shift
      ;;
    --netns) NETNS=1 ;;
    --report)
      [[ $# -ge 2 ]] || { echo "profile.sh: --report needs a file" >&2; exit 2; }
      REPORT=$2
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "profile.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ $NETNS -eq 1 && -z ${PROFILE_SH_NETNS:-} ]]; then
  [[ $(id -u) -eq 0 ]] || { echo "profile.sh: --netns needs root" >&2; exit 2; }
  # shellcheck disable=SC2016 # $0 and $@ belong to the inner bash
  exec unshare -n env PROFILE_SH_NETNS=1 bash -c 'ip link set lo up && exec bash "$0" "$@"' \
    "${BASH_SOURCE[0]}" "${ARGS[@]}"
fi

STAMP="$(date -u +%Y%m%d-%H%M%S)"
RUN="bench/out/profile-$STAMP"
BENCH_NAME=profile.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh
mkdir -p "$RUN"
cp bench/peers/backend-nginx.conf bench/peers/haproxy.cfg bench/peers/nginx-proxy.conf "$RUN/"

need_apt haproxy haproxy
need_apt nginx nginx
need_apt wrk wrk
need_apt perf linux-perf
need_apt strace strace
need_apt taskset util-linux
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs"
SINEW_BIN="${SINEW_BIN:-target/release/sinew}"
if [[ $BUILD -eq 1 ]]; then
  log "building Sinew: cargo build --release -p sinew"
  cargo build --release -p sinew >"$RUN/cargo-build.log" 2>&1 || die "build failed (see $RUN/cargo-build.log)"
fi
[[ -x $SINEW_BIN ]] || die "$SINEW_BIN is missing"
CLK_TCK="$(getconf CLK_TCK)"

cpu_ticks() {
  local total=0 pid line rest
  for pid in $(tree_pids "$1"); do
    line="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
    rest="${line##*) }"
    total=$((total + $(awk '{ print $12 + $13 }' <<<"$rest")))
  done
  echo "$total"
}
wait_serving() {
  local port=$1 pid=$2 i
  for ((i = 0; i < 150; i++)); do
    alive "$pid" || return 1
    [[ "$(curl -s --max-time 1 -H 'Host: be' "http://127.0.0.1:$port/" 2>/dev/null || true)" == "hello world" ]] && return 0
    sleep 0.1
  done
  return 1
}
requests_of() { awk '/ requests in / { print $1 }' "$1"; }

ROWS=()
SINEW_TOP=""
declare -A US KUS UUS
# profile NAME PORT BINARY_DSO CMD...: starts the proxy on CPU 1, samples it, counts its calls.
profile() {
  local name=$1 port=$2 dso=$3 pid pids t0 t1 reqs us f="$RUN/$1"
  shift 3
  start "$name" 1 "$@"
  pid=$STARTED_PID
  wait_serving "$port" "$pid" || die "$name did not serve on $port (see $RUN/$name.log)"
  taskset -c 0 wrk -t1 -c32 -d2s -H 'Host: be' "http://127.0.0.1:$port/" >"$f.warmup.txt"
  pids=$(tree_pids "$pid" | paste -sd, -)
  log "$name: wrk ${SECONDS_EACH}s, perf record on $pids"
  perf record -q -e cpu-clock -F 999 -p "$pids" -o "$f.perf.data" -- sleep $((SECONDS_EACH + 2)) 2>"$f.perf.log" &
  local perf_pid=$!
  sleep 0.5
  t0=$(cpu_ticks "$pid")
  taskset -c 0 wrk -t1 -c32 -d"${SECONDS_EACH}s" -H 'Host: be' "http://127.0.0.1:$port/" >"$f.wrk.txt"
  t1=$(cpu_ticks "$pid")
  wait "$perf_pid" || true
  reqs=$(requests_of "$f.wrk.txt")
  us=$(awk -v d=$((t1 - t0)) -v n="$reqs" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
  perf report -i "$f.perf.data" --no-children --sort dso -g none --percent-limit 0 --stdio 2>/dev/null |
    awk '/^ *[0-9.]+%/ { sub("%", "", $1); print $1, $2 }' >"$f.dso.txt"
  local kernel user
  kernel=$(awk '$2 == "[kernel.kallsyms]" { s += $1 } END { printf "%.1f", s }' "$f.dso.txt")
  user=$(awk '$2 != "[kernel.kallsyms]" { s += $1 } END { printf "%.1f", s }' "$f.dso.txt")
  local own
  own=$(awk -v d="$dso" '$2 == d { s += $1 } END { printf "%.1f", s }' "$f.dso.txt")

  log "$name: wrk 3s under strace -c"
  strace -c -f -p "$(tree_pids "$pid" | paste -sd, -)" -o "$f.strace.txt" 2>"$f.strace.log" &
  local strace_pid=$!
  sleep 1
  taskset -c 0 wrk -t1 -c32 -d3s -H 'Host: be' "http://127.0.0.1:$port/" >"$f.strace-wrk.txt"
  kill -INT "$strace_pid" 2>/dev/null || true
  wait "$strace_pid" 2>/dev/null || true
  local sreqs calls
  sreqs=$(requests_of "$f.strace-wrk.txt")
  # Per request: sends, receives, epoll waits, everything else.
  calls=$(awk -v n="$sreqs" '
    $NF ~ /^(sendto|write|writev|sendmsg)$/ { s += $4 } $NF ~ /^(recvfrom|read|readv|recvmsg)$/ { r += $4 }
    $NF ~ /^epoll_(wait|pwait)$/ { e += $4 } $NF ~ /^[a-z_0-9]+$/ && $NF != "total" && $1 ~ /^[0-9.]+$/ { t += $4 }
    END { printf "%.2f|%.2f|%.2f|%.2f", s / n, r / n, e / n, (t - s - r - e) / n }' "$f.strace.txt")
  stop_started "$pid"
  local k_us u_us own_us
  k_us=$(awk -v a="$us" -v p="$kernel" 'BEGIN { printf "%.2f", a * p / 100 }')
  u_us=$(awk -v a="$us" -v p="$user" 'BEGIN { printf "%.2f", a * p / 100 }')
  own_us=$(awk -v a="$us" -v p="$own" 'BEGIN { printf "%.2f", a * p / 100 }')
  US[$name]=$us KUS[$name]=$k_us UUS[$name]=$u_us
  ROWS+=("| $name | $(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$f.wrk.txt") | $us | $k_us ($kernel %) | $u_us ($user %) | $own_us ($own %) | ${calls//|/ | } |")
  log "$name: $us µs/request, kernel $kernel %, user $user % ($dso $own %), calls/request $calls"
  if [[ $name == Sinew ]]; then
    SINEW_TOP=$(perf report -i "$f.perf.data" --no-children --sort dso,sym -g none --stdio 2>/dev/null |
      awk -v d="$dso" '/^ *[0-9.]+%/ && $2 == d { p = $1; $1 = ""; $2 = ""; $3 = ""; sub(/^ +/, ""); printf "| %s | `%s` |\n", p, $0 }' | head -8)
  fi
}

log "run directory: $RUN"
start backend 0 nginx -e stderr -p "$ROOT/$RUN" -c backend-nginx.conf
BACKEND_PID=$STARTED_PID
wait_serving 18080 "$BACKEND_PID" || die "backend nginx did not serve on 18080"

profile HAProxy 18081 haproxy haproxy -db -f "$RUN/haproxy.cfg"
profile nginx 18082 nginx nginx -e stderr -p "$ROOT/$RUN" -c nginx-proxy.conf
profile Sinew 18083 sinew "$SINEW_BIN" proxy --config bench/sinew.yaml

SECTION="$RUN/profile.md"
{
  cat <<EOF
## Where the CPU time per request goes

Generated by \`bash bench/profile.sh${NETNS:+ --netns}\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD).
One run, each proxy pinned to CPU 1 under \`wrk -t1 -c32\` (CPU 0) against the backend nginx
(CPU 0), as in the yardstick above. CPU µs/request from \`/proc\` over ${SECONDS_EACH} s; the split
between kernel and user space is that of \`perf record -e cpu-clock\` samples of the proxy's
processes over the same run ("own code" is the proxy's executable, the rest of user space
is libc and the vDSO). System calls per request are \`strace -c -f\` counts over a 3 s run
divided by the requests it completed.

| proxy | requests/s | CPU µs/request | kernel µs (share) | user space µs (share) | own code µs (share) | sends/request | receives/request | epoll waits/request | other calls/request |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
  printf '%s\n' "${ROWS[@]}"
  cat <<EOF

Sinew's own code, hottest symbols (share of all its samples):

| share | symbol |
|---:|---|
$SINEW_TOP

**Reading.** The bars of the yardstick ask Sinew for at most HAProxy's / 1.3 =
$(awk -v a="${US[HAProxy]}" 'BEGIN { printf "%.2f", a / 1.3 }') µs and nginx's / 1.15 = $(awk -v a="${US[nginx]}" 'BEGIN { printf "%.2f", a / 1.15 }') µs per request in this run. The kernel's
share per request was HAProxy ${KUS[HAProxy]}, nginx ${KUS[nginx]}, Sinew ${KUS[Sinew]} µs; user space HAProxy
${UUS[HAProxy]}, nginx ${UUS[nginx]}, Sinew ${UUS[Sinew]} µs. With the system calls per request equal
(one send and one receive each way on each connection), the kernel's TCP work is the floor
that all three share; a proxy's own part is its user-space time.
EOF
} >"$SECTION"
cat "$SECTION"
BEGIN_MARK="<!-- profile:begin -->"
END_MARK="<!-- profile:end -->"
put_section "$REPORT" "$SECTION" profile
