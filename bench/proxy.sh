#!/usr/bin/env bash
# bench/proxy.sh — proxy efficiency and latency yardstick: direct vs HAProxy vs nginx vs Sinew.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash bench/proxy.sh [--quick] [--no-build] [--no-sinew] [--report FILE] [--netns] [--help]

Benchmarks, one after another in one run, the same nginx backend reached:
  direct   127.0.0.1:18080 (no proxy)
  HAProxy  127.0.0.1:18081 (bench/peers/haproxy.cfg, 1 thread)
  nginx    127.0.0.1:18082 (bench/peers/nginx-proxy.conf, 1 worker)
  Sinew    127.0.0.1:18083 (bench/sinew.yaml, 1 worker; routing, balancing, metrics on)
Each proxy is pinned to CPU 1; the backend and the load generators to CPU 0.

Per target:
  throughput  wrk -t1 -c32 (2 s warm-up, then 10 s) — requests/s, and the proxy's
              CPU time per request from /proc/PID/stat (utime+stime) around the run
  latency     oha at a fixed 10,000 requests/s for 10 s with latency correction —
              p50/p99/p99.9 and p99 added over direct
  memory      VmRSS of the proxy after start (idle) and after load

Prints a markdown report and writes it to docs/benchmarks.md (the published figures).

Options:
  --quick        short runs (1 s warm-up, 3 s measurements) for smoke tests; the report
                 goes to the run directory under bench/out/ instead of docs/benchmarks.md
  --no-build     do not run `cargo build --release -p sinew`; use the existing binary
  --no-sinew     measure direct, HAProxy and nginx only
  --report FILE  write the report to FILE (repo-relative or absolute)
  --netns        run inside a private network namespace (root; needs unshare and ip), so
                 the fixed ports cannot clash with another run of the yardstick on the
                 machine; CPU contention with it remains (see "other work" in the report)
  --help         this text

Environment:
  SINEW_BIN      the Sinew binary to measure (default: target/release/sinew)

Tools: haproxy, nginx, wrk, jq (installed with apt-get when missing and run as root),
oha (installed with `cargo install oha --locked` when missing), taskset, curl.
Raw outputs (wrk text, oha JSON, logs) stay in bench/out/run-*/. Every process the
script starts is stopped on exit, on failure too.
EOF
}

# ---------------------------------------------------------------- arguments
QUICK=0
BUILD=1
WANT_SINEW=1
REPORT=""
NETNS=0
ARGS=("$@")
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --no-sinew) WANT_SINEW=0 ;;
    --report)
      [[ $# -ge 2 ]] || { echo "proxy.sh: --report needs a file" >&2; exit 2; }
      REPORT="$2"
      shift
      ;;
    --netns) NETNS=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "proxy.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ $NETNS -eq 1 && -z ${PROXY_SH_NETNS:-} ]]; then
  [[ $(id -u) -eq 0 ]] || { echo "proxy.sh: --netns needs root" >&2; exit 2; }
  # A fresh namespace has only a loopback interface, down: bring it up, then rerun.
  # shellcheck disable=SC2016 # $0 and $@ belong to the inner bash
  exec unshare -n env PROXY_SH_NETNS=1 bash -c 'ip link set lo up && exec bash "$0" "$@"' \
    "${BASH_SOURCE[0]}" "${ARGS[@]}"
fi

# ---------------------------------------------------------------- settings
BACKEND_PORT=18080
HAPROXY_PORT=18081
NGINX_PORT=18082
SINEW_PORT=18083
SINEW_API_PORT=18091
SINEW_INBOUND_PORT=18093
CONNS=32
RATE=10000
if [[ $QUICK -eq 1 ]]; then
  WARM=1 DUR=3
else
  WARM=2 DUR=10
fi
SINEW_BIN="${SINEW_BIN:-target/release/sinew}"
CLK_TCK="$(getconf CLK_TCK)"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD -- crates Cargo.toml 2>/dev/null; then
  COMMIT="$COMMIT (with uncommitted changes in crates/)"
fi
STAMP="$(date -u +%Y%m%d-%H%M%S)"
RUN="bench/out/run-$STAMP"
if [[ -z "$REPORT" ]]; then
  if [[ $QUICK -eq 1 ]]; then REPORT="$RUN/benchmarks.md"; else REPORT="docs/benchmarks.md"; fi
fi

log() { printf '[proxy.sh] %s\n' "$*" >&2; }
die() { printf '[proxy.sh] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup
STARTED=()
# Whether PID runs (an exited child stays a zombie, state Z, until it is reaped).
alive() {
  local line
  line="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ ${line##*) } != Z* ]]
}
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
cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
  STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools
need_apt() {
  local tool=$1 pkg=$2
  command -v "$tool" >/dev/null 2>&1 && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing $pkg (apt-get)"
    apt-get install -y "$pkg" >&2 || { apt-get update >&2 && apt-get install -y "$pkg" >&2; }
  fi
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: apt-get install $pkg"
}
# Debian puts haproxy and nginx in /usr/sbin, which a non-login shell may not have on PATH.
export PATH="$PATH:/usr/sbin:/sbin:$HOME/.cargo/bin"
need_apt haproxy haproxy
need_apt nginx nginx
need_apt wrk wrk
need_apt jq jq
need_apt curl curl
need_apt taskset util-linux
if ! command -v oha >/dev/null 2>&1; then
  command -v cargo >/dev/null 2>&1 || die "oha is missing and cargo is not installed"
  log "installing oha (cargo install oha --locked; takes several minutes)"
  cargo install oha --locked >&2
fi
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (the proxy on CPU 1, backend and load on CPU 0)"

OHA_JSON=(-j)
if oha --help 2>&1 | grep -q -- '--output-format'; then OHA_JSON=(--output-format json); fi

# ---------------------------------------------------------------- /proc helpers
# PID and all its descendants (nginx does its work in a forked worker).
tree_pids() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { i = length($0); while (i > 0 && substr($0, i, 1) != ")") i--
      split(substr($0, i + 2), f, " "); parent[$1] = f[2] }
    END { keep[root] = 1; grew = 1
          while (grew) { grew = 0
            for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; grew = 1 } }
          for (p in keep) if (p in parent) print p }'
}
# utime + stime, in clock ticks, of PID and its descendants.
cpu_ticks() {
  local total=0 pid line rest
  for pid in $(tree_pids "$1"); do
    line="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
    rest="${line##*) }"
    total=$((total + $(awk '{ print $12 + $13 }' <<<"$rest")))
  done
  echo "$total"
}
# VmRSS, in kB, of PID and its descendants (shared pages counted once per process).
rss_kb() {
  local total=0 pid kb
  for pid in $(tree_pids "$1"); do
    kb="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)" || continue
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

# user + nice + system ticks of the whole machine, and all ticks (the capacity), from /proc/stat.
machine_ticks() { awk '/^cpu / { s = 0; for (i = 2; i <= NF; i++) s += $i; print $2 + $3 + $4, s }' /proc/stat; }
# utime + stime + cutime + cstime of this script: itself and the load generators it reaped.
self_ticks() {
  local line
  line="$(cat "/proc/$$/stat")"
  awk '{ print $12 + $13 + $14 + $15 }' <<<"${line##*) }"
}

# ---------------------------------------------------------------- process helpers
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Waits until `Host: be` on PORT answers the backend's body; fails if PID exits first.
wait_serving() {
  local port=$1 pid=$2 i body
  for ((i = 0; i < 150; i++)); do
    alive "$pid" || return 1
    body="$(curl -s --max-time 1 -H 'Host: be' "http://127.0.0.1:$port/" 2>/dev/null || true)"
    [[ "$body" == "hello world" ]] && return 0
    sleep 0.1
  done
  return 1
}
# start NAME CPU CMD... : starts CMD pinned to CPU, logs to $RUN/NAME.log, sets STARTED_PID.
start() {
  local name=$1 cpu=$2
  shift 2
  taskset -c "$cpu" "$@" >"$RUN/$name.log" 2>&1 &
  STARTED_PID=$!
  STARTED+=("$STARTED_PID")
}

# ---------------------------------------------------------------- results
declare -A RPS REQS TICKS CPU_US RATE_US BE_US OTHER NON2XX P50 P99 P999 OHA_RPS OHA_ERR RSS_IDLE RSS_LOAD
TARGETS=()

fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { if (v == "" || v == "-") print "—"; else printf "%.*f\n", d, v }'; }

# measure NAME PORT PROXY_PID|- : the throughput, latency and memory figures of one target.
measure() {
  local name=$1 port=$2 pid=$3 url="http://127.0.0.1:$2/" t0 t1 b0 b1 m0 m1 s0 s1 p0=0 p1=0 be0 be1
  TARGETS+=("$name")
  if [[ $pid != "-" ]]; then RSS_IDLE[$name]=$(rss_kb "$pid"); fi
  log "$name: warm-up ${WARM}s"
  taskset -c 0 wrk -t1 -c"$CONNS" -d"${WARM}s" -H 'Host: be' "$url" >"$RUN/$name.warmup.txt"
  log "$name: wrk ${DUR}s"
  m0=$(machine_ticks)
  s0=$(self_ticks)
  b0=$(cpu_ticks "$BACKEND_PID")
  be0=$b0
  if [[ $pid != "-" ]]; then t0=$(cpu_ticks "$pid"); p0=$t0; fi
  taskset -c 0 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -H 'Host: be' "$url" >"$RUN/$name.wrk.txt"
  if [[ $pid != "-" ]]; then t1=$(cpu_ticks "$pid"); fi
  b1=$(cpu_ticks "$BACKEND_PID")
  REQS[$name]=$(awk '/ requests in / { print $1 }' "$RUN/$name.wrk.txt")
  RPS[$name]=$(awk '/^Requests\/sec:/ { print $2 }' "$RUN/$name.wrk.txt")
  NON2XX[$name]=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$RUN/$name.wrk.txt")
  [[ -n ${REQS[$name]} && ${REQS[$name]} -gt 0 ]] || die "$name: wrk completed no requests (see $RUN/$name.wrk.txt)"
  BE_US[$name]=$(awk -v d=$((b1 - b0)) -v n="${REQS[$name]}" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", d * 1e6 / hz / n }')
  if [[ $pid != "-" ]]; then
    TICKS[$name]=$((t1 - t0))
    CPU_US[$name]=$(awk -v d="${TICKS[$name]}" -v n="${REQS[$name]}" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", d * 1e6 / hz / n }')
  fi
  log "$name: oha ${DUR}s at ${RATE} requests/s"
  if [[ $pid != "-" ]]; then t0=$(cpu_ticks "$pid"); fi
  taskset -c 0 oha --no-tui -z "${DUR}s" -c "$CONNS" -q "$RATE" --latency-correction \
    "${OHA_JSON[@]}" -H 'Host: be' "$url" >"$RUN/$name.oha.json"
  if [[ $pid != "-" ]]; then t1=$(cpu_ticks "$pid"); p1=$t1; fi
  be1=$(cpu_ticks "$BACKEND_PID")
  s1=$(self_ticks)
  m1=$(machine_ticks)
  # What the rest of the machine used meanwhile: busy ticks not spent by the backend, the
  # proxy, or this script and its load generators.
  OTHER[$name]=$(awk -v m0="$m0" -v m1="$m1" -v ours=$(((s1 - s0) + (be1 - be0) + (p1 - p0))) 'BEGIN {
    split(m0, a, " "); split(m1, b, " "); cap = b[2] - a[2]; o = b[1] - a[1] - ours
    if (o < 0) o = 0
    printf "%.0f\n", (cap > 0) ? 100 * o / cap : 0 }')
  P50[$name]=$(jq -r '.latencyPercentiles.p50 * 1e6' "$RUN/$name.oha.json")
  P99[$name]=$(jq -r '.latencyPercentiles.p99 * 1e6' "$RUN/$name.oha.json")
  P999[$name]=$(jq -r '.latencyPercentiles["p99.9"] * 1e6' "$RUN/$name.oha.json")
  OHA_RPS[$name]=$(jq -r '.summary.requestsPerSec' "$RUN/$name.oha.json")
  OHA_REQS=$(jq -r '.statusCodeDistribution // {} | [.[]] | add // 0' "$RUN/$name.oha.json")
  if [[ $pid != "-" && $OHA_REQS -gt 0 ]]; then
    RATE_US[$name]=$(awk -v d=$((t1 - t0)) -v n="$OHA_REQS" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", d * 1e6 / hz / n }')
  fi
  # Requests cut off when the -z duration ends are not failures.
  OHA_ERR[$name]=$(jq -r '[(.errorDistribution // {}) | to_entries[]
    | select(.key != "aborted due to deadline") | .value] | add // 0' "$RUN/$name.oha.json")
  if [[ $pid != "-" ]]; then RSS_LOAD[$name]=$(rss_kb "$pid"); fi
  log "$name: $(fmt "${RPS[$name]}" 0) req/s, proxy $(fmt "${CPU_US[$name]:-}" 2) µs/req, p99 $(fmt "${P99[$name]}" 0) µs"
}

# ---------------------------------------------------------------- run
mkdir -p "$RUN"
cp bench/peers/backend-nginx.conf bench/peers/haproxy.cfg bench/peers/nginx-proxy.conf "$RUN/"
log "run directory: $RUN"

for port in $BACKEND_PORT $HAPROXY_PORT $NGINX_PORT $SINEW_PORT $SINEW_API_PORT $SINEW_INBOUND_PORT; do
  port_busy "$port" && die "127.0.0.1:$port is already in use; stop what listens there first"
done

SINEW_STATUS="measured"
if [[ $WANT_SINEW -eq 0 ]]; then
  SINEW_STATUS="skipped (--no-sinew)"
elif [[ $BUILD -eq 1 ]]; then
  log "building Sinew: cargo build --release -p sinew"
  if ! cargo build --release -p sinew >"$RUN/cargo-build.log" 2>&1; then
    SINEW_STATUS="skipped: cargo build --release -p sinew failed (see $RUN/cargo-build.log)"
  fi
fi
if [[ $SINEW_STATUS == measured && ! -x $SINEW_BIN ]]; then
  SINEW_STATUS="skipped: $SINEW_BIN does not exist"
elif [[ $SINEW_STATUS == measured && $BUILD -eq 0 ]]; then
  SINEW_STATUS="measured (--no-build: binary built $(date -u -r "$SINEW_BIN" '+%Y-%m-%d %H:%M UTC'), possibly before this commit)"
fi

# Share of CPU time other work used over 2 s (from /proc/stat: idle + iowait are not busy).
cpu_busy_percent() {
  local a b
  a=$(awk '/^cpu / { print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
  sleep 2
  b=$(awk '/^cpu / { print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[1] - x[1]
    printf "%.0f\n", (t > 0) ? 100 * (1 - (y[2] - x[2]) / t) : 0 }'
}
BUSY_BEFORE=$(cpu_busy_percent)
log "CPU busy with other work before the run: $BUSY_BEFORE%"

log "starting backend nginx on CPU 0"
start backend 0 nginx -e stderr -p "$ROOT/$RUN" -c backend-nginx.conf
BACKEND_PID=$STARTED_PID
wait_serving "$BACKEND_PORT" "$BACKEND_PID" || die "backend nginx did not serve on $BACKEND_PORT (see $RUN/backend.log)"

measure direct "$BACKEND_PORT" -

log "starting HAProxy on CPU 1"
start haproxy 1 haproxy -db -f "$RUN/haproxy.cfg"
wait_serving "$HAPROXY_PORT" "$STARTED_PID" || die "HAProxy did not serve on $HAPROXY_PORT (see $RUN/haproxy.log)"
measure haproxy "$HAPROXY_PORT" "$STARTED_PID"
stop_pid "$STARTED_PID"

log "starting nginx (proxy) on CPU 1"
start nginx 1 nginx -e stderr -p "$ROOT/$RUN" -c nginx-proxy.conf
wait_serving "$NGINX_PORT" "$STARTED_PID" || die "nginx did not serve on $NGINX_PORT (see $RUN/nginx.log)"
measure nginx "$NGINX_PORT" "$STARTED_PID"
stop_pid "$STARTED_PID"

if [[ $SINEW_STATUS == measured* ]]; then
  log "starting Sinew on CPU 1"
  start sinew 1 "$SINEW_BIN" proxy --config bench/sinew.yaml
  SINEW_PID=$STARTED_PID
  if wait_serving "$SINEW_PORT" "$SINEW_PID"; then
    measure sinew "$SINEW_PORT" "$SINEW_PID"
    curl -s --max-time 2 "http://127.0.0.1:$SINEW_API_PORT/metrics" >"$RUN/sinew.metrics.txt" || true
    stop_pid "$SINEW_PID"
  else
    if alive "$SINEW_PID"; then
      SINEW_STATUS="skipped: $SINEW_BIN did not serve Host: be on 127.0.0.1:$SINEW_PORT within 15 s (see $RUN/sinew.log)"
    else
      SINEW_STATUS="skipped: $SINEW_BIN exited before serving (see $RUN/sinew.log)"
    fi
    stop_pid "$SINEW_PID"
  fi
fi
[[ $SINEW_STATUS == measured* ]] || log "Sinew $SINEW_STATUS"

# ---------------------------------------------------------------- report
# ratio A B: A / B with two decimals, or empty when either is missing.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print ""; else printf "%.6f\n", a / b }'; }
# verdict OK_EXPR: "pass" / "**FAIL**" from an awk condition on v (and w).
verdict() { awk -v v="$1" -v w="${3:-}" "BEGIN { if (v == \"\") print \"not measured\"; else if ($2) print \"pass\"; else print \"**FAIL**\" }"; }
mib() { awk -v k="$1" 'BEGIN { if (k == "") print "—"; else printf "%.1f\n", k / 1024 }'; }
label() {
  case "$1" in
    direct) echo "direct (no proxy, :$BACKEND_PORT)" ;;
    haproxy) echo "HAProxy (:$HAPROXY_PORT)" ;;
    nginx) echo "nginx (:$NGINX_PORT)" ;;
    sinew) echo "Sinew (:$SINEW_PORT)" ;;
  esac
}
notes() {
  local n=$1 out=()
  [[ -n ${NON2XX[$n]:-} ]] && out+=("wrk: ${NON2XX[$n]} non-2xx")
  [[ ${OHA_ERR[$n]:-0} != 0 ]] && out+=("oha: ${OHA_ERR[$n]} errors")
  if [[ ${OTHER[$n]:-0} -ge 5 ]]; then out+=("other work used ${OTHER[$n]}% of the CPUs"); fi
  if awk -v r="${OHA_RPS[$n]:-0}" -v q="$RATE" 'BEGIN { exit !(r < 0.95 * q) }'; then
    out+=("oha reached only $(fmt "${OHA_RPS[$n]:-0}" 0) req/s")
  fi
  local joined="" x
  for x in "${out[@]}"; do joined+="${joined:+; }$x"; done
  echo "$joined"
}

# A warning when other work kept the CPUs busy just before the run.
busy_note() {
  awk -v b="$BUSY_BEFORE" 'BEGIN {
    if (b + 0 >= 10)
      printf "\n**The machine was busy: %s%% of its CPU time was used by other work in the 2 s before the run. CPU-per-request ratios still compare the proxies; latency percentiles mostly measure the contention. Rerun on a quiet machine for latency figures.**\n", b }'
}

# What Sinew's own /metrics counted, as evidence that routing and metrics were on.
sinew_metrics_note() {
  local f="$RUN/sinew.metrics.txt" n
  [[ $SINEW_STATUS == measured* ]] || return 0
  n=$(awk '/^sinew_requests_total\{/ && /direction="outbound"/ && /route="be"/ { s += $NF } END { printf "%d", s }' "$f" 2>/dev/null || echo 0)
  if [[ $n -gt 0 ]]; then
    echo "; its /metrics counted $n outbound requests on route \`be\` during the run"
  else
    echo "; its /metrics showed no outbound requests on route \`be\` (see sinew.metrics.txt)"
  fi
}

# added_p99 NAME: NAME's p99 minus direct's, in µs ("—" when not measured).
added_p99() {
  awk -v a="${P99[$1]:-}" -v b="${P99[direct]:-}" 'BEGIN { if (a == "" || b == "") print "—"; else printf "%.0f µs\n", a - b }'
}

report() {
  local n added hp np
  cat <<MD
# Proxy benchmarks

Generated by \`bash bench/proxy.sh${ARGS[*]:+ ${ARGS[*]}}\` — do not edit by hand; rerun the script.
$([[ $QUICK -eq 1 ]] && printf '\n**Quick run (%s s measurements): a smoke test, not figures to publish.**\n' "$DUR")
$(busy_note)

- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- Commit: $COMMIT
- Machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r), load average at start $LOAD_START; CPU busy with other work in the 2 s before the run: $BUSY_BEFORE%
- Tools: $(haproxy -v 2>/dev/null | awk 'NR == 1 { print "HAProxy " $3 }'), $(nginx -v 2>&1 | sed 's|.*/||; s|^|nginx |'), $(wrk --version 2>&1 | awk 'NR == 1 { print "wrk " $2 }'), $(oha --version 2>/dev/null | head -1)
- Clock ticks: CLK_TCK = $CLK_TCK (CPU time resolution $((1000 / CLK_TCK)) ms)
- Sinew: $SINEW_STATUS$(sinew_metrics_note)

## Results

Throughput: wrk, $CONNS connections, ${DUR} s after a ${WARM} s warm-up. Latency: oha at a fixed
$RATE requests/s, $CONNS connections, ${DUR} s, latency-corrected. CPU is the proxy process tree's
utime + stime over the wrk run (and, in the "at $RATE/s" column, over the oha run, where the
proxy is not saturated); "backend" is the backend nginx's over the wrk run, for reference.

| target | requests/s | proxy CPU ticks | proxy CPU µs/request | backend CPU µs/request | p50 µs | p99 µs | p99.9 µs | p99 added over direct µs | proxy CPU µs/request at $RATE/s | RSS idle → after load MiB | other work % CPU | notes |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
MD
  for n in "${TARGETS[@]}"; do
    added=""
    [[ $n != direct ]] && added=$(awk -v a="${P99[$n]}" -v b="${P99[direct]}" 'BEGIN { printf "%.0f", a - b }')
    local rss="—"
    [[ -n ${RSS_IDLE[$n]:-} ]] && rss="$(mib "${RSS_IDLE[$n]}") → $(mib "${RSS_LOAD[$n]:-}")"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$n")" \
      "$(fmt "${RPS[$n]}" 0)" "${TICKS[$n]:-—}" "$(fmt "${CPU_US[$n]:-}" 2)" "$(fmt "${BE_US[$n]}" 2)" \
      "$(fmt "${P50[$n]}" 0)" "$(fmt "${P99[$n]}" 0)" "$(fmt "${P999[$n]}" 0)" "${added:-—}" \
      "$(fmt "${RATE_US[$n]:-}" 2)" "$rss" "${OTHER[$n]}" "$(notes "$n")"
  done

  hp=$(ratio "${CPU_US[haproxy]:-}" "${CPU_US[sinew]:-}")
  np=$(ratio "${CPU_US[nginx]:-}" "${CPU_US[sinew]:-}")
  added=""
  [[ -n ${P99[sinew]:-} ]] && added=$(awk -v a="${P99[sinew]}" -v b="${P99[direct]}" 'BEGIN { printf "%.0f", a - b }')
  local p999="" p999_ok=""
  if [[ -n ${P999[sinew]:-} ]]; then
    p999="$(fmt "${P999[sinew]}" 0) µs vs HAProxy $(fmt "${P999[haproxy]}" 0), nginx $(fmt "${P999[nginx]}" 0)"
    p999_ok=$(awk -v s="${P999[sinew]}" -v h="${P999[haproxy]}" -v g="${P999[nginx]}" 'BEGIN { print (s <= h && s <= g) ? 1 : 0 }')
  fi
  cat <<MD

## Bars (Sinew against the peers in this run)

| bar | measured | required | verdict |
|---|---:|---:|---|
| CPU per request, HAProxy µs / Sinew µs | $(fmt "$hp" 2) | ≥ 1.30 | $(verdict "$hp" 'v >= 1.3') |
| CPU per request, nginx µs / Sinew µs | $(fmt "$np" 2) | ≥ 1.15 | $(verdict "$np" 'v >= 1.15') |
| p99 added over direct at $RATE requests/s | ${added:-—}${added:+ µs} (HAProxy $(added_p99 haproxy), nginx $(added_p99 nginx)) | ≤ 50 µs | $(verdict "$added" 'v <= 50') |
| p99.9 at $RATE requests/s | ${p999:-—} | ≤ both peers | $(verdict "$p999_ok" 'v == 1') |
| idle RSS | $(mib "${RSS_IDLE[sinew]:-}") MiB | ≤ 8 MiB | $(verdict "${RSS_IDLE[sinew]:-}" 'v <= 8192') |

For context, between the peers: nginx µs / HAProxy µs = $(fmt "$(ratio "${CPU_US[nginx]:-}" "${CPU_US[haproxy]:-}")" 2).
$(for n in "${TARGETS[@]}"; do [[ -z $(notes "$n") ]] || printf '\n**%s figures are suspect: %s.**\n' "$(label "$n")" "$(notes "$n")"; done)

## Commands

\`\`\`sh
# RUN=bench/out/run-$STAMP holds copies of bench/peers/*
taskset -c 0 nginx -e stderr -p "\$PWD/\$RUN" -c backend-nginx.conf              # backend, :$BACKEND_PORT
taskset -c 1 haproxy -db -f "\$RUN/haproxy.cfg"                                  # :$HAPROXY_PORT
taskset -c 1 nginx -e stderr -p "\$PWD/\$RUN" -c nginx-proxy.conf                 # :$NGINX_PORT
taskset -c 1 $SINEW_BIN proxy --config bench/sinew.yaml                  # :$SINEW_PORT
# per target, PORT = $BACKEND_PORT (direct), $HAPROXY_PORT, $NGINX_PORT, $SINEW_PORT, one after another:
taskset -c 0 wrk -t1 -c$CONNS -d${WARM}s -H 'Host: be' http://127.0.0.1:PORT/             # warm-up
taskset -c 0 wrk -t1 -c$CONNS -d${DUR}s --latency -H 'Host: be' http://127.0.0.1:PORT/   # /proc/PID/stat read before and after
taskset -c 0 oha --no-tui -z ${DUR}s -c $CONNS -q $RATE --latency-correction ${OHA_JSON[*]} -H 'Host: be' http://127.0.0.1:PORT/
\`\`\`

## Method

- **Placement.** Two CPUs: each proxy under test pinned to CPU 1 (\`taskset -c 1\`), the
  backend nginx and the load generators to CPU 0. The proxies run one after another against
  the same backend within one run of the script.
- **CPU time per request** is the figure that matters: utime + stime of the proxy process
  and its children (fields 14 and 15 of \`/proc/PID/stat\`, in clock ticks) read just before
  and just after the wrk run, times 10⁶ / CLK_TCK, divided by the requests wrk completed.
  It holds whether or not the proxy saturates its core: with fast proxies the load
  generator's core saturates first, so requests/s alone hides the difference. The raw tick
  counts are reported because CLK_TCK = $CLK_TCK gives $((1000 / CLK_TCK)) ms resolution — negligible over
  a ${DUR} s run at hundreds of ticks, but visible in \`--quick\` runs.
- **CPU per request at a fixed rate** (the "at $RATE/s" column) is the same reading around
  the oha run, divided by the responses oha received. An unsaturated proxy wakes up for
  fewer requests at a time, so this is higher than the saturated figure; it is the cost a
  sidecar pays at an ordinary load. At ${DUR} s × $RATE/s it rests on fewer ticks: context, not a bar.
- **Latency** is measured at a fixed $RATE requests/s with oha's latency correction
  (coordinated omission accounted for), so a proxy is not rewarded for answering fewer
  requests. "p99 added over direct" is the proxy's p99 minus the direct connection's p99
  from the same run. With this placement the load generator and the backend share CPU 0,
  so a proxied request hops between the CPUs twice and can queue behind oha on CPU 0's
  run queue; the peers' added p99 in the same run shows how much of the figure is the
  placement rather than the proxy.
- **Other work** is the share of the machine's CPU time (user + nice + system, from
  \`/proc/stat\`) during the target's wrk and oha runs that neither the backend, the proxy
  nor the load generators used: other processes competing for the two CPUs. Above 5 % it
  is flagged, and that target's latency figures mostly measure the contention.
- **Memory** is VmRSS from \`/proc/PID/status\`, summed over the process tree, right after the
  proxy serves its first request (idle) and after the load.
- **Configuration.** HAProxy and nginx use the team's fixed peer configs
  (\`bench/peers/\`): one thread/worker, keep-alive pooling to the backend. Sinew uses
  \`bench/sinew.yaml\`: one worker, a Route for host \`be\` with a path-prefix rule, a Service
  with least-request balancing, and the api listener serving metrics.
- **Ratios from one run are what counts.** Absolute figures drift between runs on a shared
  machine (other builds, noisy neighbours, frequency scaling); ratios between proxies
  measured minutes apart in the same run hold. For reference, a minimal hyper 1.x reverse
  proxy (current-thread runtime, no routing or metrics) measured about 0.94× HAProxy and
  1.05× nginx on this kind of machine: beating the peers needs a leaner request path than
  a stock hyper proxy.
- Raw outputs (wrk text, oha JSON, process logs, Sinew's /metrics after the run) are kept in
  \`bench/out/run-*/\` (not committed).
MD
}


mkdir -p "$(dirname "$REPORT")"
report | cat -s >"$RUN/report.md"
cp "$RUN/report.md" "$REPORT"
cat "$RUN/report.md"
log "report written to $REPORT (raw outputs in $RUN)"
