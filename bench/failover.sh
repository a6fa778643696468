#!/usr/bin/env bash
# bench/failover.sh — failover under a fixed rate: SIGKILL one of three backends behind Sinew.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash bench/failover.sh [--no-build] [--update-docs] [--netns] [--help]

Three demo-app backends (127.0.0.1:18180, :18181, :18182) behind Sinew
(bench/failover.yaml: outbound 127.0.0.1:18183, api :18191; retries to another endpoint
and HTTP health checks every 100 ms). oha sends a fixed 2,000 requests/s for 10 s over
32 connections with `Host: be`; 3 s in, the backend on :18182 is SIGKILLed.
Sinew is pinned to CPU 1; the backends, oha and the /metrics poller to CPU 0.

Measures:
  client errors   non-2xx responses and connection errors oha saw, out of all requests
  traffic off     from the kill, /metrics is polled every 50 ms; the last moment
                  sinew_upstream_connect_errors_total for the dead endpoint (the proxy's
                  attempts on it) increased, in ms after the kill
  rejoin          after the run, the backend is restarted under a short 1,000 requests/s
                  load; the time from its first /healthz answer until
                  sinew_upstream_connections_total for it increases

Prints a markdown section and writes it to bench/out/failover-<UTC time>.md; raw outputs
(oha JSON, the /metrics timeline, logs) stay in bench/out/failover-<UTC time>/.

Options:
  --no-build     do not run `cargo build --release -p sinew`; use the existing binary
  --update-docs  also put the section into docs/benchmarks.md, between the markers
                 <!-- failover:begin --> and <!-- failover:end --> (appended when absent)
  --netns        run inside a private network namespace (root; needs unshare and ip), so
                 the fixed ports cannot clash with another benchmark on the machine
  --help         this text

Environment:
  SINEW_BIN      the Sinew binary to measure (default: target/release/sinew)

Tools: jq, curl (installed with apt-get when missing and run as root), oha (installed
with `cargo install oha --locked` when missing), taskset. Every process the script
starts is stopped on exit, on failure or Ctrl-C too.
EOF
}

# ---------------------------------------------------------------- arguments
BUILD=1
UPDATE_DOCS=0
NETNS=0
ARGS=("$@")
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --update-docs) UPDATE_DOCS=1 ;;
    --netns) NETNS=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "failover.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ $NETNS -eq 1 && -z ${FAILOVER_SH_NETNS:-} ]]; then
  [[ $(id -u) -eq 0 ]] || { echo "failover.sh: --netns needs root" >&2; exit 2; }
  # A fresh namespace has only a loopback interface, down: bring it up, then rerun.
  # shellcheck disable=SC2016 # $0 and $@ belong to the inner bash
  exec unshare -n env FAILOVER_SH_NETNS=1 bash -c 'ip link set lo up && exec bash "$0" "$@"' \
    "${BASH_SOURCE[0]}" "${ARGS[@]}"
fi

# ---------------------------------------------------------------- settings
BACKEND_PORTS=(18180 18181 18182)
DEAD_INDEX=2
DEAD_PORT=${BACKEND_PORTS[$DEAD_INDEX]}
DEAD="127.0.0.1:$DEAD_PORT"
SINEW_PORT=18183
SINEW_API_PORT=18191
SINEW_INBOUND_PORT=18193
CONFIG=bench/failover.yaml
RATE=2000
CONNS=32
DUR=10
KILL_AT_MS=3000
POLL_MS=50
REJOIN_RATE=1000
REJOIN_CONNS=8
REJOIN_DUR=5
REJOIN_WAIT_MS=3000
SINEW_BIN="${SINEW_BIN:-target/release/sinew}"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD -- crates Cargo.toml 2>/dev/null; then
  COMMIT="$COMMIT (with uncommitted changes in crates/)"
fi
STAMP="$(date -u +%Y%m%d-%H%M%S)"
RUN="bench/out/failover-$STAMP"
REPORT="bench/out/failover-$STAMP.md"
DOCS=docs/benchmarks.md
BEGIN_MARK='<!-- failover:begin -->'
END_MARK='<!-- failover:end -->'

BENCH_NAME=failover.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

# ---------------------------------------------------------------- tools
need_apt jq jq
need_apt curl curl
need_apt taskset util-linux
need_oha
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (Sinew on CPU 1, backends and load on CPU 0)"
[[ -n ${EPOCHREALTIME:-} ]] || die "needs bash 5 or later (EPOCHREALTIME)"

OHA_JSON=(-j)
if oha --help 2>&1 | grep -q -- '--output-format'; then OHA_JSON=(--output-format json); fi

# ---------------------------------------------------------------- helpers
# Sets NOW to the wall clock in microseconds (no fork).
now_us() {
  local t=$EPOCHREALTIME
  NOW=$((10#${t//[.,]/}))
}
# ms A_US B_US: B − A in milliseconds, one decimal.
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", (b - a) / 1000 }'; }
# sleep_until US: sleeps until the wall clock reaches US microseconds (at once if past).
sleep_until() {
  now_us
  local left=$(($1 - NOW))
  ((left > 0)) || return 0
  sleep "$(printf '%d.%06d' $((left / 1000000)) $((left % 1000000)))"
}
# wait_status URL HOST PID : waits up to 15 s until URL (with Host: HOST) answers 200; fails
# if PID exits first.
wait_status() {
  local url=$1 host=$2 pid=$3 i
  for ((i = 0; i < 1500; i++)); do
    alive "$pid" || return 1
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -H "Host: $host" "$url" 2>/dev/null || true) == 200 ]] && return 0
    sleep 0.01
  done
  return 1
}
start_backend() {
  local i=$1 name=$2
  start "$name" 0 "$SINEW_BIN" demo-app --name be --listen "127.0.0.1:${BACKEND_PORTS[$i]}"
  BACKEND_PIDS[i]=$STARTED_PID
}
# Sets ERRS and CONNS_OPENED to the dead endpoint's sinew_upstream_connect_errors_total and
# sinew_upstream_connections_total ("" when /metrics does not answer); keeps the scrape in
# $RUN/metrics.last.txt.
scrape() {
  local pair
  if taskset -c 0 curl -s --max-time 1 "http://127.0.0.1:$SINEW_API_PORT/metrics" >"$RUN/metrics.last.txt" 2>/dev/null; then
    pair=$(awk -v ep="endpoint=\"$DEAD\"" '
      index($0, ep) && /^sinew_upstream_connect_errors_total\{/ { e += $NF }
      index($0, ep) && /^sinew_upstream_connections_total\{/ { c += $NF }
      END { printf "%d %d\n", e, c }' "$RUN/metrics.last.txt")
    ERRS=${pair% *}
    CONNS_OPENED=${pair#* }
  else
    ERRS="" CONNS_OPENED=""
  fi
}
# oha_figures FILE PREFIX: reads oha's JSON into PREFIX_{OK,NON2XX,CONNERR,TOTAL,RPS,P50,P99,P999,MAX,ERRKINDS}.
oha_figures() {
  local f=$1 p=$2
  # Requests cut off when the -z duration ends are not failures.
  printf -v "${p}_OK" '%s' "$(jq -r '[(.statusCodeDistribution // {}) | to_entries[] | select(.key | startswith("2")) | .value] | add // 0' "$f")"
  printf -v "${p}_NON2XX" '%s' "$(jq -r '[(.statusCodeDistribution // {}) | to_entries[] | select(.key | startswith("2") | not) | .value] | add // 0' "$f")"
  printf -v "${p}_CONNERR" '%s' "$(jq -r '[(.errorDistribution // {}) | to_entries[] | select(.key != "aborted due to deadline") | .value] | add // 0' "$f")"
  printf -v "${p}_ABORTED" '%s' "$(jq -r '(.errorDistribution // {})["aborted due to deadline"] // 0' "$f")"
  printf -v "${p}_ERRKINDS" '%s' "$(jq -r '[(.errorDistribution // {}) | to_entries[] | select(.key != "aborted due to deadline") | "\(.key): \(.value)"] | join("; ")' "$f")"
  printf -v "${p}_RPS" '%s' "$(jq -r '.summary.requestsPerSec' "$f")"
  printf -v "${p}_P50" '%s' "$(jq -r '.latencyPercentiles.p50 * 1e3' "$f")"
  printf -v "${p}_P99" '%s' "$(jq -r '.latencyPercentiles.p99 * 1e3' "$f")"
  printf -v "${p}_P999" '%s' "$(jq -r '.latencyPercentiles["p99.9"] * 1e3' "$f")"
  printf -v "${p}_MAX" '%s' "$(jq -r '.summary.slowest * 1e3' "$f")"
  local ok="${p}_OK" non="${p}_NON2XX" err="${p}_CONNERR"
  printf -v "${p}_TOTAL" '%s' $((${!ok} + ${!non} + ${!err}))
}
fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { if (v == "" || v == "null") print "—"; else printf "%.*f\n", d, v }'; }

# ---------------------------------------------------------------- preparation
mkdir -p "$RUN"
cp "$CONFIG" "$RUN/"
log "run directory: $RUN"

for port in "${BACKEND_PORTS[@]}" $SINEW_PORT $SINEW_API_PORT $SINEW_INBOUND_PORT; do
  port_busy "$port" && die "127.0.0.1:$port is already in use; stop what listens there first"
done

if [[ $BUILD -eq 1 ]]; then
  log "building Sinew: cargo build --release -p sinew"
  cargo build --release -p sinew >"$RUN/cargo-build.log" 2>&1 ||
    die "cargo build --release -p sinew failed (see $RUN/cargo-build.log)"
  BINARY_NOTE="built for this run"
else
  BINARY_NOTE="--no-build: binary built $(date -u -r "$SINEW_BIN" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo '?'), possibly before this commit"
fi
[[ -x $SINEW_BIN ]] || die "$SINEW_BIN does not exist"
"$SINEW_BIN" validate -f "$CONFIG" >"$RUN/validate.log" 2>&1 ||
  die "$CONFIG does not validate: $(cat "$RUN/validate.log")"

# ---------------------------------------------------------------- start
declare -a BACKEND_PIDS
for i in "${!BACKEND_PORTS[@]}"; do
  log "starting backend be-$i on 127.0.0.1:${BACKEND_PORTS[$i]}, CPU 0"
  start_backend "$i" "backend-$i"
done
for i in "${!BACKEND_PORTS[@]}"; do
  wait_status "http://127.0.0.1:${BACKEND_PORTS[$i]}/healthz" be "${BACKEND_PIDS[$i]}" ||
    die "backend on ${BACKEND_PORTS[$i]} did not answer /healthz (see $RUN/backend-$i.log)"
done

log "starting Sinew on CPU 1"
start sinew 1 "$SINEW_BIN" proxy --config "$CONFIG"
SINEW_PID=$STARTED_PID
wait_status "http://127.0.0.1:$SINEW_PORT/" be "$SINEW_PID" ||
  die "Sinew did not serve Host: be on 127.0.0.1:$SINEW_PORT (see $RUN/sinew.log)"

# ---------------------------------------------------------------- failover run
log "oha: $RATE requests/s for ${DUR}s over $CONNS connections; SIGKILL of $DEAD at $((KILL_AT_MS / 1000)) s"
now_us
LOAD_START=$NOW
taskset -c 0 oha --no-tui -z "${DUR}s" -q "$RATE" -c "$CONNS" --latency-correction \
  "${OHA_JSON[@]}" -H 'Host: be' "http://127.0.0.1:$SINEW_PORT/" >"$RUN/oha.json" 2>"$RUN/oha.log" &
OHA_PID=$!
STARTED+=("$OHA_PID")

# Baseline just before the kill, then the kill itself.
sleep_until $((LOAD_START + KILL_AT_MS * 1000 - 100000))
scrape
ERRS_BEFORE=${ERRS:-0}
sleep_until $((LOAD_START + KILL_AT_MS * 1000))
alive "$OHA_PID" || die "oha stopped before the kill (see $RUN/oha.log)"
now_us
KILLED_AT=$NOW
# (Braced so that bash's "Killed" job notice does not reach the terminal.)
{
  kill -KILL "${BACKEND_PIDS[$DEAD_INDEX]}"
  wait "${BACKEND_PIDS[$DEAD_INDEX]}"
} 2>/dev/null || true
forget "${BACKEND_PIDS[$DEAD_INDEX]}"
log "killed the backend on $DEAD at $(ms "$LOAD_START" "$KILLED_AT") ms"

# Poll /metrics every POLL_MS until oha is done. Timeline: ms since the kill when the scrape
# was sent and when it returned, the dead endpoint's connect errors and connections.
printf 'sent_ms\treturned_ms\tconnect_errors\tconnections\n' >"$RUN/timeline.tsv"
LAST_VALUE=$ERRS_BEFORE
LAST_INCREASE_LO="" LAST_INCREASE_HI="" PREV_SENT=$KILLED_AT
POLLS=0 FAILED_POLLS=0
ERRS_1S=""
tick=$KILLED_AT
while alive "$OHA_PID"; do
  now_us
  sent=$NOW
  scrape
  now_us
  returned=$NOW
  POLLS=$((POLLS + 1))
  if [[ -z $ERRS ]]; then
    FAILED_POLLS=$((FAILED_POLLS + 1))
  else
    printf '%s\t%s\t%s\t%s\n' "$(ms "$KILLED_AT" "$sent")" "$(ms "$KILLED_AT" "$returned")" "$ERRS" "$CONNS_OPENED" >>"$RUN/timeline.tsv"
    if ((ERRS > LAST_VALUE)); then
      # The counter rose after the previous scrape was sent and before this one returned.
      LAST_INCREASE_LO=$PREV_SENT LAST_INCREASE_HI=$returned LAST_VALUE=$ERRS
    fi
    ((returned - KILLED_AT <= 1000000)) && ERRS_1S=$ERRS
    PREV_SENT=$sent
  fi
  tick=$((tick + POLL_MS * 1000))
  sleep_until "$tick"
done
wait "$OHA_PID" || die "oha failed (see $RUN/oha.log)"
forget "$OHA_PID"
now_us
LOAD_END=$NOW
scrape
cp "$RUN/metrics.last.txt" "$RUN/metrics.after-failover.txt"
ERRS_END=${ERRS:-$LAST_VALUE}
oha_figures "$RUN/oha.json" RUNF
FAILED=$((RUNF_NON2XX + RUNF_CONNERR))

# Verdict on "traffic off": the last attempt must leave at least 1 s of load without any.
if [[ -z $LAST_INCREASE_HI ]]; then
  OFF_MS=0
  OFF_TEXT="no attempt on the dead endpoint was counted after the kill"
elif ((LOAD_END - LAST_INCREASE_HI >= 1000000)); then
  OFF_MS=$(ms "$KILLED_AT" "$LAST_INCREASE_HI")
  OFF_TEXT="after $OFF_MS ms (the last attempt happened between $(ms "$KILLED_AT" "$LAST_INCREASE_LO") and $OFF_MS ms after the kill)"
else
  OFF_MS=""
  OFF_TEXT="**not off**: attempts on it still counted $(ms "$KILLED_AT" "$LAST_INCREASE_HI") ms after the kill, less than 1 s before the load ended"
fi
log "client errors: $FAILED of $RUNF_TOTAL; traffic off the dead endpoint: $OFF_TEXT"

# ---------------------------------------------------------------- rejoin
log "rejoin: oha at $REJOIN_RATE requests/s for ${REJOIN_DUR}s, then restart the backend on $DEAD"
taskset -c 0 oha --no-tui -z "${REJOIN_DUR}s" -q "$REJOIN_RATE" -c "$REJOIN_CONNS" --latency-correction \
  "${OHA_JSON[@]}" -H 'Host: be' "http://127.0.0.1:$SINEW_PORT/" >"$RUN/oha.rejoin.json" 2>"$RUN/oha.rejoin.log" &
OHA_PID=$!
STARTED+=("$OHA_PID")
sleep 0.5
scrape
CONNS_BEFORE=${CONNS_OPENED:-0}
now_us
RESTARTED_AT=$NOW
start_backend "$DEAD_INDEX" backend-$DEAD_INDEX.restarted
wait_status "http://$DEAD/healthz" be "${BACKEND_PIDS[$DEAD_INDEX]}" ||
  die "the restarted backend did not answer /healthz (see $RUN/backend-$DEAD_INDEX.restarted.log)"
now_us
UP_AT=$NOW
REJOIN_MS="" REJOIN_LO=""
printf 'sent_ms_since_up\treturned_ms_since_up\tconnections\n' >"$RUN/rejoin.tsv"
PREV_SENT=$UP_AT
tick=$UP_AT
while ((tick - UP_AT <= REJOIN_WAIT_MS * 1000)) && alive "$OHA_PID"; do
  now_us
  sent=$NOW
  scrape
  now_us
  returned=$NOW
  if [[ -n $CONNS_OPENED ]]; then
    printf '%s\t%s\t%s\n' "$(ms "$UP_AT" "$sent")" "$(ms "$UP_AT" "$returned")" "$CONNS_OPENED" >>"$RUN/rejoin.tsv"
    if ((CONNS_OPENED > CONNS_BEFORE)); then
      REJOIN_MS=$(ms "$UP_AT" "$returned")
      REJOIN_LO=$(ms "$UP_AT" "$PREV_SENT")
      break
    fi
    PREV_SENT=$sent
  fi
  tick=$((tick + POLL_MS * 1000))
  sleep_until "$tick"
done
wait "$OHA_PID" || die "oha (rejoin) failed (see $RUN/oha.rejoin.log)"
forget "$OHA_PID"
scrape
cp "$RUN/metrics.last.txt" "$RUN/metrics.after-rejoin.txt"
oha_figures "$RUN/oha.rejoin.json" REJ
REJ_FAILED=$((REJ_NON2XX + REJ_CONNERR))
if [[ -n $REJOIN_MS ]]; then
  REJOIN_TEXT="after $REJOIN_MS ms (the first new connection opened between $REJOIN_LO and $REJOIN_MS ms after its first /healthz answer; $(ms "$RESTARTED_AT" "$UP_AT") ms from spawn to that answer)"
else
  REJOIN_TEXT="**no new connection** to it within $((REJOIN_WAIT_MS / 1000)) s of its first /healthz answer"
fi
log "rejoin: $REJOIN_TEXT"

# ---------------------------------------------------------------- report
retries_note() {
  local f=$1 n
  n=$(awk '/^sinew_retries_total\{/ && /service="be"/ { s += $NF; seen = 1 } END { if (seen) printf "%d", s }' "$f")
  if [[ -n $n ]]; then echo "$n"; else echo "not exported"; fi
}

section() {
  cat <<MD
## Failover

Generated by \`bash bench/failover.sh${ARGS[*]:+ ${ARGS[*]}}\` — do not edit by hand; rerun the script.

- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $COMMIT; Sinew binary: $BINARY_NOTE
- Machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r); $(oha --version 2>/dev/null | head -1)
- Scenario: three \`sinew demo-app\` backends (127.0.0.1:18180–18182) behind Sinew
  (\`bench/failover.yaml\`: one worker, least-request, retries \`attempts: 2\` on
  connect-failure, reset and gateway-error with a 1 s per-try timeout, HTTP health checks on
  \`/healthz\` every 100 ms, unhealthy after 1 failed probe, healthy after 2 passed).
  oha at a fixed $RATE requests/s, $CONNS connections, ${DUR} s, latency-corrected; the
  backend on $DEAD SIGKILLed $(ms "$LOAD_START" "$KILLED_AT") ms into the load.

| figure | result |
|---|---|
| requests sent by the client | $RUNF_TOTAL ($(fmt "$RUNF_RPS" 0)/s achieved) |
| **failed client requests** | **$FAILED** (non-2xx: $RUNF_NON2XX; connection errors: $RUNF_CONNERR${RUNF_ERRKINDS:+ — $RUNF_ERRKINDS}) |
| latency over the whole run, ms | p50 $(fmt "$RUNF_P50" 2) · p99 $(fmt "$RUNF_P99" 2) · p99.9 $(fmt "$RUNF_P999" 2) · max $(fmt "$RUNF_MAX" 2) |
| proxy's attempts on the dead endpoint after the kill (connect errors) | $((ERRS_END - ERRS_BEFORE)) ($((${ERRS_1S:-$ERRS_BEFORE} - ERRS_BEFORE)) within 1 s of the kill) |
| **traffic off the dead endpoint** | $OFF_TEXT |
| **rejoin after restart** (load $REJOIN_RATE requests/s) | $REJOIN_TEXT |
| failed client requests during the rejoin load | $REJ_FAILED of $REJ_TOTAL |
| retries counted by Sinew (\`sinew_retries_total\`, both loads) | $(retries_note "$RUN/metrics.after-rejoin.txt") |

How: "traffic off" polls Sinew's \`/metrics\` every $POLL_MS ms from the kill ($POLLS scrapes, $FAILED_POLLS unanswered)
and takes the last scrape in which \`sinew_upstream_connect_errors_total{endpoint="$DEAD"}\` —
the proxy's attempts to connect to the dead address — had risen; the attempt itself fell
between the previous scrape and that one. Requests in flight on pooled connections to the
killed process fail at the kill (retried as resets) and open no new connection, so they are
not counted there. It counts as off only with at least 1 s of load after the last attempt.
"Rejoin" restarts the backend on the same address under a fresh $REJOIN_RATE requests/s load and
polls until \`sinew_upstream_connections_total{endpoint="$DEAD"}\` rises, from the backend's
first \`/healthz\` answer (health probes themselves are not counted in either metric). Sinew
runs on CPU 1; the backends, oha and the poller on CPU 0. Raw outputs (oha JSON, the scrape
timelines, logs) stay in \`bench/out/failover-*/\`.
MD
}

section | cat -s >"$REPORT"
cat "$REPORT"
log "section written to $REPORT (raw outputs in $RUN)"

if [[ $UPDATE_DOCS -eq 1 ]]; then
  put_section "$DOCS" "$REPORT" failover
fi
