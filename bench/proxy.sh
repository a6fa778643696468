#!/usr/bin/env bash
# bench/proxy.sh — proxy efficiency and latency yardstick: direct vs HAProxy vs nginx vs Sinew.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash bench/proxy.sh [--quick] [--rounds N] [--no-build] [--no-sinew] [--report FILE] [--netns] [--help]

Benchmarks, one after another in one round, the same nginx backend reached:
  direct   127.0.0.1:18080 (no proxy)
  HAProxy  127.0.0.1:18081 (bench/peers/haproxy.cfg, 1 thread)
  nginx    127.0.0.1:18082 (bench/peers/nginx-proxy.conf, 1 worker)
  Sinew    127.0.0.1:18083 (bench/sinew.yaml, 1 worker; routing, balancing, metrics on)
Each proxy is pinned to CPU 1; the backend and the load generators to CPU 0.
A run repeats the round N times, interleaved (round 1: all four, round 2: all four, ...),
starting each proxy afresh every round; the backend stays up for the whole run.

Per target:
  throughput  wrk -t1 -c32 (2 s warm-up, then 10 s) — requests/s, and the proxy's
              CPU time per request from /proc/PID/stat (utime+stime) around the run
  latency     oha at a fixed 10,000 requests/s for 10 s with latency correction —
              p50/p99/p99.9 and p99 added over direct
  memory      VmRSS of the proxy after start (idle) and after load

Prints a markdown report and writes it to docs/benchmarks.md (the published figures): per
target the median of each figure across rounds, the per-round CPU and latency figures, and
the bars judged on the median of the per-round ratios and comparisons.

Options:
  --quick        short runs (1 s warm-up, 3 s measurements, 1 round unless --rounds is
                 given) for smoke tests; the report goes to the run directory under
                 bench/out/ instead of docs/benchmarks.md
  --rounds N     repeat the whole sequence N times, interleaved (default 3; --quick: 1)
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
ROUNDS=""
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
    --rounds)
      [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || { echo "proxy.sh: --rounds needs a whole number of 1 or more" >&2; exit 2; }
      ROUNDS="$2"
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
  ROUNDS="${ROUNDS:-1}"
else
  WARM=2 DUR=10
  ROUNDS="${ROUNDS:-3}"
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

BENCH_NAME=proxy.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

# ---------------------------------------------------------------- tools
need_apt haproxy haproxy
need_apt nginx nginx
need_apt wrk wrk
need_apt jq jq
need_apt curl curl
need_apt taskset util-linux
need_oha
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (the proxy on CPU 1, backend and load on CPU 0)"

OHA_JSON=(-j)
if oha --help 2>&1 | grep -q -- '--output-format'; then OHA_JSON=(--output-format json); fi

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

# ---------------------------------------------------------------- results
# Every figure is kept per target and round, under the key NAME.ROUND (e.g. sinew.2).
declare -A RPS REQS TICKS CPU_US RATE_US BE_US OTHER NON2XX P50 P99 P999 OHA_RPS OHA_ERR RSS_IDLE RSS_LOAD
TARGETS=()

fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { if (v == "" || v == "-") print "—"; else printf "%.*f\n", d, v }'; }

# measure NAME ROUND PORT PROXY_PID|- : the throughput, latency and memory figures of one
# target in one round; raw outputs go to $RUN/rROUND.NAME.*.
# shellcheck disable=SC2034 # P50, RATE_US, RSS_* are read through the nameref in series()
measure() {
  local name=$1 r=$2 port=$3 pid=$4 url="http://127.0.0.1:$3/" t0 t1 b0 b1 m0 m1 s0 s1 p0=0 p1=0 be0 be1 oha_reqs
  local k="$name.$r" f="$RUN/r$r.$name"
  [[ " ${TARGETS[*]} " == *" $name "* ]] || TARGETS+=("$name")
  if [[ $pid != "-" ]]; then RSS_IDLE[$k]=$(rss_kb "$pid"); fi
  log "round $r, $name: warm-up ${WARM}s"
  taskset -c 0 wrk -t1 -c"$CONNS" -d"${WARM}s" -H 'Host: be' "$url" >"$f.warmup.txt"
  log "round $r, $name: wrk ${DUR}s"
  m0=$(machine_ticks)
  s0=$(self_ticks)
  b0=$(cpu_ticks "$BACKEND_PID")
  be0=$b0
  if [[ $pid != "-" ]]; then t0=$(cpu_ticks "$pid"); p0=$t0; fi
  taskset -c 0 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -H 'Host: be' "$url" >"$f.wrk.txt"
  if [[ $pid != "-" ]]; then t1=$(cpu_ticks "$pid"); fi
  b1=$(cpu_ticks "$BACKEND_PID")
  REQS[$k]=$(awk '/ requests in / { print $1 }' "$f.wrk.txt")
  RPS[$k]=$(awk '/^Requests\/sec:/ { print $2 }' "$f.wrk.txt")
  NON2XX[$k]=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$f.wrk.txt")
  [[ -n ${REQS[$k]} && ${REQS[$k]} -gt 0 ]] || die "round $r, $name: wrk completed no requests (see $f.wrk.txt)"
  BE_US[$k]=$(awk -v d=$((b1 - b0)) -v n="${REQS[$k]}" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", d * 1e6 / hz / n }')
  if [[ $pid != "-" ]]; then
    TICKS[$k]=$((t1 - t0))
    CPU_US[$k]=$(awk -v d="${TICKS[$k]}" -v n="${REQS[$k]}" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", d * 1e6 / hz / n }')
  fi
  log "round $r, $name: oha ${DUR}s at ${RATE} requests/s"
  if [[ $pid != "-" ]]; then t0=$(cpu_ticks "$pid"); fi
  taskset -c 0 oha --no-tui -z "${DUR}s" -c "$CONNS" -q "$RATE" --latency-correction \
    "${OHA_JSON[@]}" -H 'Host: be' "$url" >"$f.oha.json"
  if [[ $pid != "-" ]]; then t1=$(cpu_ticks "$pid"); p1=$t1; fi
  be1=$(cpu_ticks "$BACKEND_PID")
  s1=$(self_ticks)
  m1=$(machine_ticks)
  # What the rest of the machine used meanwhile: busy ticks not spent by the backend, the
  # proxy, or this script and its load generators.
  OTHER[$k]=$(awk -v m0="$m0" -v m1="$m1" -v ours=$(((s1 - s0) + (be1 - be0) + (p1 - p0))) 'BEGIN {
    split(m0, a, " "); split(m1, b, " "); cap = b[2] - a[2]; o = b[1] - a[1] - ours
    if (o < 0) o = 0
    printf "%.0f\n", (cap > 0) ? 100 * o / cap : 0 }')
  P50[$k]=$(jq -r '.latencyPercentiles.p50 * 1e6' "$f.oha.json")
  P99[$k]=$(jq -r '.latencyPercentiles.p99 * 1e6' "$f.oha.json")
  P999[$k]=$(jq -r '.latencyPercentiles["p99.9"] * 1e6' "$f.oha.json")
  OHA_RPS[$k]=$(jq -r '.summary.requestsPerSec' "$f.oha.json")
  oha_reqs=$(jq -r '.statusCodeDistribution // {} | [.[]] | add // 0' "$f.oha.json")
  if [[ $pid != "-" && $oha_reqs -gt 0 ]]; then
    RATE_US[$k]=$(awk -v d=$((t1 - t0)) -v n="$oha_reqs" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", d * 1e6 / hz / n }')
  fi
  # Requests cut off when the -z duration ends are not failures.
  OHA_ERR[$k]=$(jq -r '[(.errorDistribution // {}) | to_entries[]
    | select(.key != "aborted due to deadline") | .value] | add // 0' "$f.oha.json")
  if [[ $pid != "-" ]]; then RSS_LOAD[$k]=$(rss_kb "$pid"); fi
  log "round $r, $name: $(fmt "${RPS[$k]}" 0) req/s, proxy $(fmt "${CPU_US[$k]:-}" 2) µs/req, p99 $(fmt "${P99[$k]}" 0) µs, other work ${OTHER[$k]}%"
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

log "starting backend nginx on CPU 0 (kept up for all $ROUNDS rounds)"
start backend 0 nginx -e stderr -p "$ROOT/$RUN" -c backend-nginx.conf
BACKEND_PID=$STARTED_PID
wait_serving "$BACKEND_PORT" "$BACKEND_PID" || die "backend nginx did not serve on $BACKEND_PORT (see $RUN/backend.log)"

SINEW_ROUNDS=0     # rounds in which Sinew was measured
SINEW_FAILED=""    # why Sinew could not be measured in a round; it is not retried after that
# sinew_round ROUND: starts Sinew afresh, measures it, keeps its /metrics, stops it.
sinew_round() {
  local r=$1 pid
  log "round $r: starting Sinew on CPU 1"
  start "r$r.sinew" 1 "$SINEW_BIN" proxy --config bench/sinew.yaml
  pid=$STARTED_PID
  if wait_serving "$SINEW_PORT" "$pid"; then
    measure sinew "$r" "$SINEW_PORT" "$pid"
    curl -s --max-time 2 "http://127.0.0.1:$SINEW_API_PORT/metrics" >"$RUN/r$r.sinew.metrics.txt" || true
    SINEW_ROUNDS=$((SINEW_ROUNDS + 1))
  elif alive "$pid"; then
    SINEW_FAILED="round $r: $SINEW_BIN did not serve Host: be on 127.0.0.1:$SINEW_PORT within 15 s (see $RUN/r$r.sinew.log)"
  else
    SINEW_FAILED="round $r: $SINEW_BIN exited before serving (see $RUN/r$r.sinew.log)"
  fi
  stop_started "$pid"
}

for ((round = 1; round <= ROUNDS; round++)); do
  log "round $round of $ROUNDS"
  measure direct "$round" "$BACKEND_PORT" -

  log "round $round: starting HAProxy on CPU 1"
  start "r$round.haproxy" 1 haproxy -db -f "$RUN/haproxy.cfg"
  wait_serving "$HAPROXY_PORT" "$STARTED_PID" || die "HAProxy did not serve on $HAPROXY_PORT (see $RUN/r$round.haproxy.log)"
  measure haproxy "$round" "$HAPROXY_PORT" "$STARTED_PID"
  stop_started "$STARTED_PID"

  log "round $round: starting nginx (proxy) on CPU 1"
  start "r$round.nginx" 1 nginx -e stderr -p "$ROOT/$RUN" -c nginx-proxy.conf
  wait_serving "$NGINX_PORT" "$STARTED_PID" || die "nginx did not serve on $NGINX_PORT (see $RUN/r$round.nginx.log)"
  measure nginx "$round" "$NGINX_PORT" "$STARTED_PID"
  stop_started "$STARTED_PID"

  if [[ $SINEW_STATUS == measured* && -z $SINEW_FAILED ]]; then sinew_round "$round"; fi
done
if [[ -n $SINEW_FAILED ]]; then
  if [[ $SINEW_ROUNDS -eq 0 ]]; then
    SINEW_STATUS="skipped: ${SINEW_FAILED#round 1: }"
  else
    SINEW_STATUS="$SINEW_STATUS, in $SINEW_ROUNDS of $ROUNDS rounds only ($SINEW_FAILED; not retried)"
  fi
fi
[[ $SINEW_STATUS == measured* ]] || log "Sinew $SINEW_STATUS"

# ---------------------------------------------------------------- per-round comparisons
# ratio A B: A / B, or empty when either is missing.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print ""; else printf "%.6f\n", a / b }'; }
# difference A B: A - B, or empty when either is missing.
difference() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print ""; else printf "%.3f\n", a - b }'; }

# CMP[hs.R], CMP[ns.R], CMP[nh.R]: round R's CPU µs/request ratios HAProxy / Sinew,
# nginx / Sinew, nginx / HAProxy. CMP[margin.R]: Sinew's p99.9 minus the better peer's in
# round R (0 or less: no worse than either). ADD99[NAME.R], ADD999[NAME.R]: NAME's p99 and
# p99.9 minus direct's in round R.
declare -A CMP ADD99 ADD999
for ((r = 1; r <= ROUNDS; r++)); do
  CMP[hs.$r]=$(ratio "${CPU_US[haproxy.$r]:-}" "${CPU_US[sinew.$r]:-}")
  CMP[ns.$r]=$(ratio "${CPU_US[nginx.$r]:-}" "${CPU_US[sinew.$r]:-}")
  CMP[nh.$r]=$(ratio "${CPU_US[nginx.$r]:-}" "${CPU_US[haproxy.$r]:-}")
  CMP[margin.$r]=$(awk -v s="${P999[sinew.$r]:-}" -v h="${P999[haproxy.$r]:-}" -v g="${P999[nginx.$r]:-}" \
    'BEGIN { if (s == "" || h == "" || g == "") print ""; else printf "%.3f\n", s - (h < g ? h : g) }')
  for n in haproxy nginx sinew; do
    ADD99[$n.$r]=$(difference "${P99[$n.$r]:-}" "${P99[direct.$r]:-}")
    ADD999[$n.$r]=$(difference "${P999[$n.$r]:-}" "${P999[direct.$r]:-}")
  done
done

# series ARRAY NAME: ARRAY[NAME.1] … ARRAY[NAME.ROUNDS], one a line (empty when not measured).
series() {
  local -n values=$1
  local r
  for ((r = 1; r <= ROUNDS; r++)); do printf '%s\n' "${values[$2.$r]:-}"; done
}
# median: the median of the numbers on stdin, empty lines skipped (an even count averages the
# middle two); empty when there are none.
median() {
  awk 'NF' | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) print ""; else if (NR % 2) printf "%.6f\n", v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# med ARRAY NAME: the median of NAME's values across rounds.
med() { series "$1" "$2" | median; }
# highest ARRAY NAME: the largest of NAME's values across rounds.
highest() { series "$1" "$2" | awk 'NF && (m == "" || $1 + 0 > m + 0) { m = $1 } END { print m }'; }
# listing ARRAY NAME DECIMALS [DIVISOR]: the per-round values joined by " · " ("—" for a round
# without one).
listing() {
  series "$1" "$2" | awk -v d="$3" -v q="${4:-1}" '{ x = ($1 == "") ? "—" : sprintf("%.*f", d, $1 / q)
    s = s (NR > 1 ? " · " : "") x } END { print s }'
}
# held ARRAY NAME COND: "K of N rounds", the rounds in which the awk condition on v holds.
held() { series "$1" "$2" | awk "NF { n++; v = \$1; if ($3) k++ } END { printf \"%d of %d round%s\", k, n, (n == 1) ? \"\" : \"s\" }"; }

# ---------------------------------------------------------------- report
# verdict VALUE OK_EXPR: "pass" / "**FAIL**" from an awk condition on v.
verdict() { awk -v v="$1" "BEGIN { if (v == \"\") print \"not measured\"; else if ($2) print \"pass\"; else print \"**FAIL**\" }"; }
mib() { awk -v k="$1" 'BEGIN { if (k == "") print "—"; else printf "%.1f\n", k / 1024 }'; }
label() {
  case "$1" in
    direct) echo "direct (no proxy, :$BACKEND_PORT)" ;;
    haproxy) echo "HAProxy (:$HAPROXY_PORT)" ;;
    nginx) echo "nginx (:$NGINX_PORT)" ;;
    sinew) echo "Sinew (:$SINEW_PORT)" ;;
  esac
}
short_label() {
  case "$1" in
    direct) echo "direct" ;;
    haproxy) echo "HAProxy" ;;
    nginx) echo "nginx" ;;
    sinew) echo "Sinew" ;;
  esac
}
# notes NAME.ROUND: why that target's figures in that round are suspect (empty when they are
# not, or when it was not measured that round).
notes() {
  local k=$1 out=()
  [[ -n ${REQS[$k]:-} ]] || return 0
  [[ -n ${NON2XX[$k]:-} ]] && out+=("wrk: ${NON2XX[$k]} non-2xx")
  [[ ${OHA_ERR[$k]:-0} != 0 ]] && out+=("oha: ${OHA_ERR[$k]} errors")
  if [[ ${OTHER[$k]:-0} -ge 5 ]]; then out+=("other work used ${OTHER[$k]}% of the CPUs"); fi
  if awk -v r="${OHA_RPS[$k]:-0}" -v q="$RATE" 'BEGIN { exit !(r < 0.95 * q) }'; then
    out+=("oha reached only $(fmt "${OHA_RPS[$k]:-0}" 0) req/s")
  fi
  local joined="" x
  for x in "${out[@]}"; do joined+="${joined:+; }$x"; done
  echo "$joined"
}
# target_notes NAME: NAME's notes of every round, "round R: …", joined.
target_notes() {
  local r x joined=""
  for ((r = 1; r <= ROUNDS; r++)); do
    x=$(notes "$1.$r")
    [[ -z $x ]] || joined+="${joined:+; }round $r: $x"
  done
  echo "$joined"
}
# round_suspects R: the targets whose figures in round R are suspect ("—" when none).
round_suspects() {
  local n joined=""
  for n in "${TARGETS[@]}"; do
    [[ -z $(notes "$n.$1") ]] || joined+="${joined:+, }$(short_label "$n")"
  done
  echo "${joined:-—}"
}
SUSPECT_ROUNDS=0
for ((r = 1; r <= ROUNDS; r++)); do
  [[ $(round_suspects "$r") == "—" ]] || SUSPECT_ROUNDS=$((SUSPECT_ROUNDS + 1))
done

# A warning when other work kept the CPUs busy just before the run.
busy_note() {
  awk -v b="$BUSY_BEFORE" 'BEGIN {
    if (b + 0 >= 10)
      printf "\n**The machine was busy: %s%% of its CPU time was used by other work in the 2 s before the run. CPU-per-request ratios still compare the proxies; latency percentiles mostly measure the contention. Rerun on a quiet machine for latency figures.**\n", b }'
}

# What Sinew's own /metrics counted in each round, as evidence that routing and metrics were on.
sinew_metrics_note() {
  local r f n counts="" zero=0
  [[ $SINEW_STATUS == measured* ]] || return 0
  for ((r = 1; r <= ROUNDS; r++)); do
    f="$RUN/r$r.sinew.metrics.txt"
    [[ -n ${REQS[sinew.$r]:-} ]] || continue
    n=$(awk '/^sinew_requests_total\{/ && /direction="outbound"/ && /route="be"/ { s += $NF } END { printf "%d", s }' "$f" 2>/dev/null || echo 0)
    [[ $n -gt 0 ]] || zero=1
    counts+="${counts:+ · }$n"
  done
  if [[ $zero -eq 0 ]]; then
    echo "; its /metrics counted $counts outbound requests on route \`be\` (per round, a fresh process each round)"
  else
    echo "; its /metrics showed no outbound requests on route \`be\` in some round ($counts; see r*.sinew.metrics.txt)"
  fi
}

# plural N ONE MANY: ONE when N is 1, else MANY.
plural() { if [[ $1 -eq 1 ]]; then echo "$2"; else echo "$3"; fi; }

# bar_cell ARRAY NAME DECIMALS UNIT BAR COND: the median of NAME's values across rounds with
# UNIT, then the per-round values and in how many rounds the awk condition COND on v (the
# bar, BAR) held; "—" when never measured.
bar_cell() {
  local m
  m=$(med "$1" "$2")
  if [[ -z $m ]]; then echo "—"; return 0; fi
  echo "$(fmt "$m" "$3")$4 ($(listing "$1" "$2" "$3"); $5 in $(held "$1" "$2" "$6"))"
}

# cell ARRAY NAME DECIMALS: the median of NAME's values across rounds, formatted.
cell() { fmt "$(med "$1" "$2")" "$3"; }

report() {
  local n r added rss other hp np margin
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
- Rounds: $ROUNDS, interleaved (each round measures direct, HAProxy, nginx$([[ $WANT_SINEW -eq 1 ]] && echo ", Sinew") in turn, each proxy started afresh); suspect rounds: $SUSPECT_ROUNDS
- Sinew: $SINEW_STATUS$(sinew_metrics_note)

## Results (median of $ROUNDS $(plural "$ROUNDS" round rounds))

Throughput: wrk, $CONNS connections, ${DUR} s after a ${WARM} s warm-up. Latency: oha at a fixed
$RATE requests/s, $CONNS connections, ${DUR} s, latency-corrected. CPU is the proxy process tree's
utime + stime over the wrk run (and, in the "at $RATE/s" column, over the oha run, where the
proxy is not saturated); "backend" is the backend nginx's over the wrk run, for reference.
Each figure is the median of that target's figures across the rounds; "p99 added" is the
median of the per-round differences from direct; "other work" is the median, with the
highest round in brackets.

| target | requests/s | proxy CPU ticks | proxy CPU µs/request | backend CPU µs/request | p50 µs | p99 µs | p99.9 µs | p99 added over direct µs | proxy CPU µs/request at $RATE/s | RSS idle → after load MiB | other work % CPU | notes |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
MD
  for n in "${TARGETS[@]}"; do
    added="—"
    [[ $n == direct ]] || added=$(cell ADD99 "$n" 0)
    rss="—"
    [[ -n $(med RSS_IDLE "$n") ]] && rss="$(mib "$(med RSS_IDLE "$n")") → $(mib "$(med RSS_LOAD "$n")")"
    other="$(cell OTHER "$n" 0)"
    [[ $ROUNDS -eq 1 ]] || other+=" ($(highest OTHER "$n"))"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$n")" \
      "$(cell RPS "$n" 0)" "$(cell TICKS "$n" 0)" "$(cell CPU_US "$n" 2)" "$(cell BE_US "$n" 2)" \
      "$(cell P50 "$n" 0)" "$(cell P99 "$n" 0)" "$(cell P999 "$n" 0)" "$added" \
      "$(cell RATE_US "$n" 2)" "$rss" "$other" "$(target_notes "$n")"
  done

  cat <<MD

### Per round: proxy CPU µs/request (wrk) and the same-round ratios

| round | HAProxy | nginx | Sinew | HAProxy / Sinew | nginx / Sinew | nginx / HAProxy | backend (direct) | highest other work % CPU | suspect |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---|
MD
  for ((r = 1; r <= ROUNDS; r++)); do
    other=$(for n in "${TARGETS[@]}"; do echo "${OTHER[$n.$r]:-}"; done | awk 'NF && $1 + 0 >= m + 0 { m = $1 } END { print m }')
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$r" \
      "$(fmt "${CPU_US[haproxy.$r]:-}" 2)" "$(fmt "${CPU_US[nginx.$r]:-}" 2)" "$(fmt "${CPU_US[sinew.$r]:-}" 2)" \
      "$(fmt "${CMP[hs.$r]}" 2)" "$(fmt "${CMP[ns.$r]}" 2)" "$(fmt "${CMP[nh.$r]}" 2)" \
      "$(fmt "${BE_US[direct.$r]:-}" 2)" "${other:-—}" "$(round_suspects "$r")"
  done
  printf '| **median** | %s | %s | %s | **%s** | **%s** | %s | %s | | |\n' \
    "$(cell CPU_US haproxy 2)" "$(cell CPU_US nginx 2)" "$(cell CPU_US sinew 2)" \
    "$(cell CMP hs 2)" "$(cell CMP ns 2)" "$(cell CMP nh 2)" "$(cell BE_US direct 2)"

  cat <<MD

### Per round: latency at $RATE requests/s, µs

"added" is the target's percentile minus direct's in the same round; the last column is
Sinew's p99.9 minus the better peer's (0 or less: no worse than either).

| round | direct p99 | HAProxy added p99 | nginx added p99 | Sinew added p99 | direct p99.9 | HAProxy added p99.9 | nginx added p99.9 | Sinew added p99.9 | Sinew p99.9 − better peer's | suspect |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
MD
  for ((r = 1; r <= ROUNDS; r++)); do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$r" \
      "$(fmt "${P99[direct.$r]:-}" 0)" "$(fmt "${ADD99[haproxy.$r]}" 0)" "$(fmt "${ADD99[nginx.$r]}" 0)" "$(fmt "${ADD99[sinew.$r]}" 0)" \
      "$(fmt "${P999[direct.$r]:-}" 0)" "$(fmt "${ADD999[haproxy.$r]}" 0)" "$(fmt "${ADD999[nginx.$r]}" 0)" "$(fmt "${ADD999[sinew.$r]}" 0)" \
      "$(fmt "${CMP[margin.$r]}" 0)" "$(round_suspects "$r")"
  done
  printf '| **median** | %s | %s | %s | **%s** | %s | %s | %s | %s | **%s** | |\n' \
    "$(cell P99 direct 0)" "$(cell ADD99 haproxy 0)" "$(cell ADD99 nginx 0)" "$(cell ADD99 sinew 0)" \
    "$(cell P999 direct 0)" "$(cell ADD999 haproxy 0)" "$(cell ADD999 nginx 0)" "$(cell ADD999 sinew 0)" \
    "$(cell CMP margin 0)"

  hp=$(med CMP hs)
  np=$(med CMP ns)
  added=$(med ADD99 sinew)
  margin=$(med CMP margin)
  cat <<MD

## Bars (Sinew against the peers: median of the same-round comparisons over $ROUNDS $(plural "$ROUNDS" round rounds))

| bar | measured: median (per round) | required | verdict |
|---|---|---:|---|
| CPU per request, HAProxy µs / Sinew µs | $(bar_cell CMP hs 2 "" "≥ 1.30" 'v >= 1.3') | ≥ 1.30 | $(verdict "$hp" 'v >= 1.3') |
| CPU per request, nginx µs / Sinew µs | $(bar_cell CMP ns 2 "" "≥ 1.15" 'v >= 1.15') | ≥ 1.15 | $(verdict "$np" 'v >= 1.15') |
| p99 added over direct at $RATE requests/s | $(bar_cell ADD99 sinew 0 " µs" "≤ 50" 'v <= 50'); HAProxy $(cell ADD99 haproxy 0) µs, nginx $(cell ADD99 nginx 0) µs | ≤ 50 µs | $(verdict "$added" 'v <= 50') |
| p99.9 at $RATE requests/s, Sinew − the better peer's | $(bar_cell CMP margin 0 " µs" "≤ 0" 'v <= 0'); medians: Sinew $(cell P999 sinew 0), HAProxy $(cell P999 haproxy 0), nginx $(cell P999 nginx 0) µs | ≤ 0 (no worse than both peers) | $(verdict "$margin" 'v <= 0') |
| idle RSS | $(if [[ -n $(med RSS_IDLE sinew) ]]; then echo "$(mib "$(med RSS_IDLE sinew)") MiB ($(listing RSS_IDLE sinew 1 1024))"; else echo "—"; fi) | ≤ 8 MiB | $(verdict "$(med RSS_IDLE sinew)" 'v <= 8192') |

For context, between the peers: nginx µs / HAProxy µs = $(cell CMP nh 2) (median of the per-round ratios).
$(for ((r = 1; r <= ROUNDS; r++)); do for n in "${TARGETS[@]}"; do
    x=$(notes "$n.$r")
    [[ -z $x ]] || printf '\n**Round %s: %s figures are suspect: %s.**\n' "$r" "$(label "$n")" "$x"
  done; done)
$(if [[ $SUSPECT_ROUNDS -gt 0 && $((2 * SUSPECT_ROUNDS)) -ge $ROUNDS ]]; then
    printf '\n**Suspect rounds: %s of %s. The medians cannot outvote them; rerun on a quieter machine.**\n' "$SUSPECT_ROUNDS" "$ROUNDS"
  fi)

## Commands

\`\`\`sh
# RUN=bench/out/run-$STAMP holds copies of bench/peers/*; raw outputs are r<round>.<target>.*
taskset -c 0 nginx -e stderr -p "\$PWD/\$RUN" -c backend-nginx.conf              # backend, :$BACKEND_PORT, up for the whole run
# $ROUNDS $(plural "$ROUNDS" round rounds), interleaved; in each, direct and then each proxy, started afresh, measured, stopped:
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
  backend nginx and the load generators to CPU 0. Within a round the proxies run one after
  another against the same backend.
- **Rounds.** The whole sequence (direct, HAProxy, nginx, Sinew) runs $ROUNDS $(plural "$ROUNDS" time times),
  interleaved: round 1 measures all four, then round 2 all four, and so on. Each proxy is
  started afresh in every round and stopped after it (the backend stays up), so no round
  inherits another's warmed caches, pools or grown heaps. The results table gives, per
  target, the median of each figure across rounds (with an even number of rounds, the mean
  of the middle two).
- **Verdicts use same-round comparisons.** The targets of one round are measured within
  about a minute of each other, under the same background load; targets in different rounds
  are not. So each bar is judged on the median of the per-round comparisons — the median of
  the per-round ratios HAProxy µs / Sinew µs and nginx µs / Sinew µs, the median of the
  per-round p99 added over direct, and the median of the per-round margin of Sinew's p99.9
  over the better peer's — not on a ratio of medians. One disturbed round then cannot flip a
  verdict when there are three or more; the per-round tables show how far the rounds agree.
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
  from the same round. With this placement the load generator and the backend share CPU 0,
  so a proxied request hops between the CPUs twice and can queue behind oha on CPU 0's
  run queue; the peers' added p99 in the same round shows how much of the figure is the
  placement rather than the proxy.
- **Other work** is the share of the machine's CPU time (user + nice + system, from
  \`/proc/stat\`) during a target's wrk and oha runs in one round that neither the backend,
  the proxy nor the load generators used: other processes competing for the two CPUs. At
  5 % or more that target's figures in that round are flagged, the round is marked suspect
  in the per-round tables, and its latency figures mostly measure the contention.
- **Memory** is VmRSS from \`/proc/PID/status\`, summed over the process tree, right after the
  proxy serves its first request (idle) and after the load, in each round.
- **Configuration.** HAProxy and nginx use the team's fixed peer configs
  (\`bench/peers/\`): one thread/worker, keep-alive pooling to the backend. Sinew uses
  \`bench/sinew.yaml\`: one worker, a Route for host \`be\` with a path-prefix rule, a Service
  with least-request balancing, and the api listener serving metrics.
- **Ratios, not absolute figures.** Absolute figures drift between runs and between rounds
  on a shared machine (other builds, noisy neighbours, frequency scaling); ratios between
  proxies measured in the same round hold better, and their median over rounds better still.
  For reference, a minimal hyper 1.x reverse proxy (current-thread runtime, no routing or
  metrics) measured about 0.94× HAProxy and 1.05× nginx on this kind of machine: beating
  the peers needs a leaner request path than a stock hyper proxy.
- Raw outputs (wrk text, oha JSON, process logs, Sinew's /metrics after each round) are kept
  in \`bench/out/run-*/\` as \`r<round>.<target>.*\` (not committed).
MD
}


mkdir -p "$(dirname "$REPORT")"
report | cat -s >"$RUN/report.md"
# Keep the sections the other scripts maintain in the same file (failover, control, mtls,
# events, profile: whatever sits between <!-- NAME:begin --> and <!-- NAME:end --> lines).
for section in $(sed -n 's/^<!-- \([a-z]*\):begin -->$/\1/p' "$REPORT" 2>/dev/null); do
  if grep -q "^<!-- $section:end -->\$" "$REPORT"; then
    { echo; awk "/^<!-- $section:begin -->\$/,/^<!-- $section:end -->\$/" "$REPORT"; } >>"$RUN/report.md"
  fi
done
cp "$RUN/report.md" "$REPORT"
cat "$RUN/report.md"
log "report written to $REPORT (raw outputs in $RUN)"
