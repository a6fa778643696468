#!/usr/bin/env bash
# bench/control.sh — the control plane: push latency to many watch streams, memory for 10,000 services.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash bench/control.sh [--no-build] [--release] [--update-docs] [--streams N] [--rounds R]
                             [--services S] [--endpoints E] [--batch B] [--mem-streams M] [--help]

Runs `sinew control --store embedded:DIR` (a fresh store per scenario, under the run
directory; REST and gRPC on free ports, bound as 127.0.0.1:0) pinned to CPU 1, and the load
tool crates/sinew-control/examples/fanout.rs (one thread) pinned to CPU 0.

Scenario A, fan-out: N simulated proxies (default 1,000) open their Control.Stream at once,
each over its own HTTP/2 connection, and receive their full update. Then R rounds (default
20): a registry PUT moves the external endpoint `fanout` of service `target` to a new
address; per stream, latency runs from just before the PUT is sent to the receipt of the
Update whose Service document carries the new address. Reports p50/p90/p99/max over all
stream × round samples, the time to connect every stream and get its full update, and the
control plane's VmRSS/VmHWM idle and with the streams connected.

Scenario B, memory: on a fresh control plane, VmRSS idle; S Services (default 10,000) with E
static endpoints each (default 10) applied with POST /v1/apply, B per request (default 500),
timed; VmRSS after the load; then M streams (default 100) connect, get the full update of
every Service and R endpoint changes of `target`; VmRSS and VmHWM with them connected.

Bars (design): an endpoint change reaches 1,000 streams with p50 and p99 ≤ 250 ms; 10,000
services × 10 endpoints held in ≤ 300 MB (VmRSS with the streams connected; 1 MB = 10^6 bytes).

Prints a markdown section and writes it to bench/out/control-<UTC time>.md; raw outputs
(fanout JSON, logs) stay in bench/out/control-<UTC time>/.

Options:
  --no-build     use the existing target/release/sinew and target/release/examples/fanout
  --release      build with `cargo build --release` (fat LTO, slow link) instead of the
                 default `cargo build --profile bench` (thin LTO; same output directory)
  --update-docs  also put the section into docs/benchmarks.md, between the markers
                 <!-- control:begin --> and <!-- control:end --> (appended when absent)
  --streams N    scenario A streams (default 1000)
  --rounds R     endpoint changes in each scenario (default 20)
  --services S   scenario B Services (default 10000)
  --endpoints E  static endpoints per Service (default 10)
  --batch B      Services per POST /v1/apply (default 500)
  --mem-streams M  scenario B streams (default 100)
  --help         this text

Environment:
  SINEW_BIN      the Sinew binary (default target/release/sinew)
  FANOUT_BIN     the load tool (default target/release/examples/fanout)

Tools: jq (installed with apt-get when missing and run as root), taskset. Every process
the script starts is stopped on exit, on failure or Ctrl-C too.
EOF
}

# ---------------------------------------------------------------- arguments
BUILD=1
PROFILE=bench
UPDATE_DOCS=0
STREAMS=1000
ROUNDS=20
SERVICES=10000
ENDPOINTS=10
BATCH=500
MEM_STREAMS=100
ARGS=("$@")
number() { [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "control.sh: $1 needs a whole number of 1 or more" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --release) PROFILE=release ;;
    --update-docs) UPDATE_DOCS=1 ;;
    --streams | --rounds | --services | --endpoints | --batch | --mem-streams)
      number "$1" "${2:-}"
      case "$1" in
        --streams) STREAMS=$2 ;;
        --rounds) ROUNDS=$2 ;;
        --services) SERVICES=$2 ;;
        --endpoints) ENDPOINTS=$2 ;;
        --batch) BATCH=$2 ;;
        --mem-streams) MEM_STREAMS=$2 ;;
      esac
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "control.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# ---------------------------------------------------------------- settings
LATENCY_BAR_MS=250
MEMORY_BAR_MB=300
SINEW_BIN="${SINEW_BIN:-target/release/sinew}"
FANOUT_BIN="${FANOUT_BIN:-target/release/examples/fanout}"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD -- crates Cargo.toml 2>/dev/null; then
  COMMIT="$COMMIT (with uncommitted changes in crates/)"
fi
STAMP="$(date -u +%Y%m%d-%H%M%S)"
RUN="bench/out/control-$STAMP"
REPORT="bench/out/control-$STAMP.md"
DOCS=docs/benchmarks.md
BEGIN_MARK='<!-- control:begin -->'
END_MARK='<!-- control:end -->'
if [[ $PROFILE == release ]]; then
  BUILD_CMD=(cargo build --release -p sinew -p sinew-control --bins --examples)
  PROFILE_NOTE="\`--release\` (fat LTO, 1 codegen unit)"
else
  BUILD_CMD=(cargo build --profile bench -p sinew -p sinew-control --bins --examples)
  PROFILE_NOTE="\`--profile bench\` (the release profile with thin LTO and 16 codegen units; release speed, faster link)"
fi

BENCH_NAME=control.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

# ---------------------------------------------------------------- tools
need_apt jq jq
need_apt taskset util-linux
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (the control plane on CPU 1, the load tool on CPU 0)"
# Each stream is a connection, counted on both sides.
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt $((STREAMS + 256)) ]]; then
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  [[ $(ulimit -n) == unlimited || $(ulimit -n) -ge $((STREAMS + 256)) ]] ||
    die "open files limit $(ulimit -n) is too low for $STREAMS streams (raise ulimit -n)"
fi

# ---------------------------------------------------------------- helpers
# status_kb PID FIELD: a /proc/PID/status figure in kB (VmRSS, VmHWM).
status_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
# mb KB: kB as MB (10^6 bytes), one decimal.
mb() { awk -v k="$1" 'BEGIN { printf "%.1f\n", k * 1024 / 1e6 }'; }
# cpu_ms PID: utime + stime of PID in ms.
cpu_ms() {
  local line
  line="$(cat "/proc/$1/stat")"
  awk -v hz="$(getconf CLK_TCK)" '{ print ($12 + $13) * 1000 / hz }' <<<"${line##*) }"
}
# listen_overflows: the machine's TcpExt ListenOverflows counter (SYNs dropped, full accept queue).
listen_overflows() {
  awk '$1 == "TcpExt:" { if (!n) { for (i = 2; i <= NF; i++) if ($i == "ListenOverflows") c = i; n = 1 } else print $c }' /proc/net/netstat
}
fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { if (v == "" || v == "null") print "—"; else printf "%.*f\n", d, v }'; }
verdict() { if [[ $1 -eq 1 ]]; then echo pass; else echo "**FAIL**"; fi; }

# start_control NAME: a fresh control plane with its store in $RUN/NAME.store, on CPU 1;
# sets CONTROL_PID, HTTP, GRPC, TOKEN_FILE.
start_control() {
  local name=$1 i line
  start "$name" 1 "$SINEW_BIN" control --store "embedded:$RUN/$name.store" \
    --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0
  CONTROL_PID=$STARTED_PID
  for ((i = 0; i < 300; i++)); do
    alive "$CONTROL_PID" || die "sinew control exited (see $RUN/$name.log)"
    line="$(grep -m1 '^sinew control: REST on' "$RUN/$name.log" || true)"
    [[ -n $line ]] && break
    sleep 0.05
  done
  [[ -n $line ]] || die "sinew control did not start within 15 s (see $RUN/$name.log)"
  HTTP="$(sed -E 's|.*REST on http://([^,]+),.*|\1|' <<<"$line")"
  GRPC="$(sed -E 's|.*gRPC on ([^,]+),.*|\1|' <<<"$line")"
  TOKEN_FILE="$RUN/$name.store/admin.token"
  [[ -s $TOKEN_FILE ]] || die "no admin token at $TOKEN_FILE"
  # Let it settle (leadership, first view) before the idle figure.
  sleep 1
  log "$name: sinew control pid $CONTROL_PID, REST $HTTP, gRPC $GRPC"
}

# hold_fanout NAME ARGS...: runs `fanout watch ARGS --hold` on CPU 0 until it prints its
# summary to $RUN/NAME.json; the streams stay open until stop_started "$FANOUT_PID".
hold_fanout() {
  local name=$1 i
  shift
  start "$name" 0 "$FANOUT_BIN" watch --http "$HTTP" --grpc "$GRPC" --token-file "$TOKEN_FILE" --hold "$@"
  FANOUT_PID=$STARTED_PID
  # start sends stdout and stderr to one log; the summary is its only line starting with '{'.
  for ((i = 0; i < 6000; i++)); do
    if grep -m1 '^{' "$RUN/$name.log" >"$RUN/$name.json" && jq -e . "$RUN/$name.json" >/dev/null 2>&1; then
      return 0
    fi
    alive "$FANOUT_PID" || die "fanout exited without a summary (see $RUN/$name.log)"
    sleep 0.1
  done
  die "fanout gave no summary within 10 minutes (see $RUN/$name.log)"
}

# ---------------------------------------------------------------- build
mkdir -p "$RUN"
log "run directory: $RUN"
if [[ $BUILD -eq 1 ]]; then
  log "building: ${BUILD_CMD[*]}"
  "${BUILD_CMD[@]}" >"$RUN/cargo-build.log" 2>&1 || die "${BUILD_CMD[*]} failed (see $RUN/cargo-build.log)"
  BINARY_NOTE="built for this run with $PROFILE_NOTE"
else
  BINARY_NOTE="--no-build: binaries built $(date -u -r "$SINEW_BIN" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo '?'), possibly before this commit, with an unrecorded profile"
fi
[[ -x $SINEW_BIN ]] || die "$SINEW_BIN does not exist"
[[ -x $FANOUT_BIN ]] || die "$FANOUT_BIN does not exist"

# ---------------------------------------------------------------- scenario A: fan-out
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
log "scenario A: $STREAMS streams, $ROUNDS endpoint changes"
start_control a-control
A_IDLE_RSS=$(status_kb "$CONTROL_PID" VmRSS)
A_CPU0=$(cpu_ms "$CONTROL_PID")
A_OVF0=$(listen_overflows)
hold_fanout a-fanout --streams "$STREAMS" --rounds "$ROUNDS"
A_OVF1=$(listen_overflows)
A_CPU1=$(cpu_ms "$CONTROL_PID")
A_RSS=$(status_kb "$CONTROL_PID" VmRSS)
A_HWM=$(status_kb "$CONTROL_PID" VmHWM)
stop_started "$FANOUT_PID"
stop_started "$CONTROL_PID"
J="$RUN/a-fanout.json"
A_CONNECTED=$(jq -r '.connect.streams_with_full_update' "$J")
A_CONNECT_MS=$(jq -r '.connect.all_full_ms' "$J")
A_FULL_P50=$(jq -r '.connect.per_stream_full_ms.p50' "$J")
A_FULL_P99=$(jq -r '.connect.per_stream_full_ms.p99' "$J")
A_N=$(jq -r '.latency_ms.n' "$J")
A_P50=$(jq -r '.latency_ms.p50 // empty' "$J")
A_P90=$(jq -r '.latency_ms.p90 // empty' "$J")
A_P99=$(jq -r '.latency_ms.p99 // empty' "$J")
A_MAX=$(jq -r '.latency_ms.max // empty' "$J")
A_MISSING=$(jq -r '.missing_samples' "$J")
A_FAILED=$(jq -r '.failed_streams' "$J")
A_FAILURES=$(jq -r '[.failures | to_entries[] | "\(.value)× \(.key)"] | join("; ")' "$J")
A_RETRIES=$(jq -r '[.connect_retries | to_entries[] | .value] | add // 0' "$J")
A_RETRY_KINDS=$(jq -r '[.connect_retries | to_entries[] | "\(.value)× \(.key)"] | join("; ")' "$J")
A_PUT_P50=$(jq -r '.put_ms.p50 // empty' "$J")
A_PUT_MAX=$(jq -r '.put_ms.max // empty' "$J")
A_ROUND_P50S=$(jq -r '[.per_round[].latency_ms.p50 // empty | round | tostring] | join(" · ")' "$J")
A_ROUND_MAXS=$(jq -r '[.per_round[].latency_ms.max // empty | round | tostring] | join(" · ")' "$J")
A_OK=0
if [[ -n $A_P50 && $A_CONNECTED -eq $STREAMS && $A_MISSING -eq 0 ]] &&
  awk -v a="$A_P50" -v b="$A_P99" -v bar="$LATENCY_BAR_MS" 'BEGIN { exit !(a <= bar && b <= bar) }'; then
  A_OK=1
fi
log "scenario A: p50 $A_P50 ms, p99 $A_P99 ms, max $A_MAX ms over $A_N samples; connect $A_CONNECT_MS ms"

# ---------------------------------------------------------------- scenario B: memory
log "scenario B: $SERVICES Services × $ENDPOINTS endpoints, then $MEM_STREAMS streams"
start_control b-control
B_IDLE_RSS=$(status_kb "$CONTROL_PID" VmRSS)
taskset -c 0 "$FANOUT_BIN" load --http "$HTTP" --token-file "$TOKEN_FILE" \
  --services "$SERVICES" --endpoints "$ENDPOINTS" --batch "$BATCH" >"$RUN/b-load.json" 2>"$RUN/b-load.log" ||
  die "fanout load failed (see $RUN/b-load.log)"
# The view is rebuilt from the store's watch after each apply; give it a moment.
sleep 2
B_LOAD_RSS=$(status_kb "$CONTROL_PID" VmRSS)
B_LOAD_HWM=$(status_kb "$CONTROL_PID" VmHWM)
hold_fanout b-fanout --streams "$MEM_STREAMS" --rounds "$ROUNDS"
B_RSS=$(status_kb "$CONTROL_PID" VmRSS)
B_HWM=$(status_kb "$CONTROL_PID" VmHWM)
stop_started "$FANOUT_PID"
stop_started "$CONTROL_PID"
B_STORE_BYTES=$(du -sb "$RUN/b-control.store" | awk '{ print $1 }')
L="$RUN/b-load.json"
J="$RUN/b-fanout.json"
B_LOAD_MS=$(jq -r '.total_ms' "$L")
B_BATCHES=$(jq -r '.batches' "$L")
B_FIRST_MS=$(jq -r '.first_batch_ms' "$L")
B_LAST_MS=$(jq -r '.last_batch_ms' "$L")
B_YAML=$(jq -r '.yaml_bytes' "$L")
B_CONNECTED=$(jq -r '.connect.streams_with_full_update' "$J")
B_CONNECT_MS=$(jq -r '.connect.all_full_ms' "$J")
B_DOCS=$(jq -r '.connect.full_update_documents[1]' "$J")
B_FULL_BYTES=$(jq -r '.connect.full_update_json_bytes[1]' "$J")
B_N=$(jq -r '.latency_ms.n' "$J")
B_P50=$(jq -r '.latency_ms.p50 // empty' "$J")
B_P99=$(jq -r '.latency_ms.p99 // empty' "$J")
B_MAX=$(jq -r '.latency_ms.max // empty' "$J")
B_FAILED=$(jq -r '.failed_streams' "$J")
B_FAILURES=$(jq -r '[.failures | to_entries[] | "\(.value)× \(.key)"] | join("; ")' "$J")
B_OK=0
if [[ $B_CONNECTED -eq $MEM_STREAMS && $B_DOCS -gt $SERVICES ]] &&
  awk -v k="$B_RSS" -v bar="$MEMORY_BAR_MB" 'BEGIN { exit !(k * 1024 / 1e6 <= bar) }'; then
  B_OK=1
fi
log "scenario B: load $B_LOAD_MS ms; RSS idle $(mb "$B_IDLE_RSS") MB, loaded $(mb "$B_LOAD_RSS") MB, with $MEM_STREAMS streams $(mb "$B_RSS") MB (peak $(mb "$B_HWM") MB)"

LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report
section() {
  cat <<MD
## Control plane

Generated by \`bash bench/control.sh${ARGS[*]:+ ${ARGS[*]}}\` — do not edit by hand; rerun the script.

- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $COMMIT; binaries: $BINARY_NOTE
- Machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r); load average $LOAD_START at the start, $LOAD_END at the end (the machine is shared: other work on CPU 1 shows up as latency)
- Placement: \`sinew control\` (default 2 worker threads, embedded redb store in the run
  directory, a fresh one per scenario) pinned to CPU 1; the load tool \`fanout\`
  (crates/sinew-control/examples/fanout.rs, one thread) pinned to CPU 0. Each simulated proxy
  has **its own HTTP/2 connection** (a tonic channel per stream), sends \`Hello\` with a
  distinct name and no endpoint of its own, and ACKs every update.

### A. An endpoint change to $STREAMS watch streams

| figure | result |
|---|---|
| streams with their full update | $A_CONNECTED of $STREAMS$( ((A_FAILED > 0)) && echo " ($A_FAILED failed: $A_FAILURES)") |
| time to connect all and receive their full updates | $(fmt "$A_CONNECT_MS" 0) ms (per stream: p50 $(fmt "$A_FULL_P50" 0) ms, p99 $(fmt "$A_FULL_P99" 0) ms); retried connects: $A_RETRIES${A_RETRY_KINDS:+ ($A_RETRY_KINDS)}; listen-queue overflows on the machine meanwhile: $((A_OVF1 - A_OVF0)) |
| **change latency**, $ROUNDS rounds × $A_CONNECTED streams = $A_N samples | **p50 $(fmt "$A_P50" 1) ms · p90 $(fmt "$A_P90" 1) ms · p99 $(fmt "$A_P99" 1) ms · max $(fmt "$A_MAX" 1) ms**; samples missing: $A_MISSING |
| per-round p50, ms (rounded) | $A_ROUND_P50S |
| per-round max, ms (rounded) | $A_ROUND_MAXS |
| registry PUT response time | p50 $(fmt "$A_PUT_P50" 1) ms, max $(fmt "$A_PUT_MAX" 1) ms |
| control plane CPU time over scenario A (connect + $ROUNDS rounds) | $(fmt "$(awk -v a="$A_CPU0" -v b="$A_CPU1" 'BEGIN { print b - a }')" 0) ms |
| control plane VmRSS idle → with $STREAMS streams (VmHWM) | $(mb "$A_IDLE_RSS") → $(mb "$A_RSS") MB ($(mb "$A_HWM") MB) |

### B. $SERVICES Services × $ENDPOINTS endpoints

| figure | result |
|---|---|
| control plane VmRSS idle (fresh, empty store) | $(mb "$B_IDLE_RSS") MB |
| **load**: $SERVICES Services, $B_BATCHES × \`POST /v1/apply\` of $BATCH ($(mb $((B_YAML / 1024))) MB of YAML) | **$(fmt "$(awk -v m="$B_LOAD_MS" 'BEGIN { print m / 1000 }')" 1) s** (first request $(fmt "$B_FIRST_MS" 0) ms, last $(fmt "$B_LAST_MS" 0) ms: each apply validates against every stored resource) |
| control plane VmRSS after the load, no streams (VmHWM) | $(mb "$B_LOAD_RSS") MB ($(mb "$B_LOAD_HWM") MB) |
| $MEM_STREAMS streams: full update | $B_CONNECTED of $MEM_STREAMS got it$( ((B_FAILED > 0)) && echo " ($B_FAILED failed: $B_FAILURES)"), all within $(fmt "$B_CONNECT_MS" 0) ms; $B_DOCS documents, $(mb $((B_FULL_BYTES / 1024))) MB of JSON each |
| **control plane VmRSS with $MEM_STREAMS streams** (VmHWM: the peak of the whole scenario) | **$(mb "$B_RSS") MB** ($(mb "$B_HWM") MB) |
| change latency to the $MEM_STREAMS streams, $ROUNDS rounds ($B_N samples) | p50 $(fmt "$B_P50" 1) ms · p99 $(fmt "$B_P99" 1) ms · max $(fmt "$B_MAX" 1) ms |
| store directory on disk | $(mb $((B_STORE_BYTES / 1024))) MB |

### Bars

| bar | measured | required | verdict |
|---|---|---:|---|
| endpoint change to $STREAMS streams, p50 and p99 | p50 $(fmt "$A_P50" 1) ms, p99 $(fmt "$A_P99" 1) ms ($A_N samples, $A_MISSING missing) | ≤ $LATENCY_BAR_MS ms | $(verdict $A_OK) |
| $SERVICES services × $ENDPOINTS endpoints held by the control plane | VmRSS $(mb "$B_RSS") MB with $MEM_STREAMS streams ($(mb "$B_LOAD_RSS") MB with none; peak VmHWM $(mb "$B_HWM") MB) | ≤ $MEMORY_BAR_MB MB | $(verdict $B_OK) |

### Commands

\`\`\`sh
${BUILD_CMD[*]}   # both binaries land in target/release/
# per scenario, a fresh store; the addresses are read from its first lines:
taskset -c 1 $SINEW_BIN control --store embedded:\$RUN/<scenario>.store --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0
# A (the streams are held open while VmRSS is read, then SIGTERMed):
taskset -c 0 $FANOUT_BIN watch --http \$HTTP --grpc \$GRPC --token-file \$RUN/a-control.store/admin.token --hold --streams $STREAMS --rounds $ROUNDS
# B:
taskset -c 0 $FANOUT_BIN load --http \$HTTP --token-file \$RUN/b-control.store/admin.token --services $SERVICES --endpoints $ENDPOINTS --batch $BATCH
taskset -c 0 $FANOUT_BIN watch --http \$HTTP --grpc \$GRPC --token-file \$RUN/b-control.store/admin.token --hold --streams $MEM_STREAMS --rounds $ROUNDS
\`\`\`

How: latency is measured in the load tool, from \`Instant::now()\` just before the
\`PUT /v1/registry/default/target/fanout\` request is written (on a keep-alive connection
opened beforehand) to the moment a stream's \`message()\` returns the \`Update\` whose
\`Service default/target\` document lists the round's address; the next round starts 200 ms
after every stream has it. All streams of a round are timed against the same PUT, so the
samples include the store commit, the view rebuild, each session's diff and encoding, and
the load tool's own queueing on its one thread. "Time to connect" runs from the first
connect to the last full update; a stream whose attempt fails before its full update tries
again after 200 ms, then 400 ms (retried connects). Listen-queue overflows are the kernel's
\`TcpExt ListenOverflows\` counter (the whole machine), read around scenario A: a dropped
SYN costs its client the 1 s SYN retransmission. VmRSS and VmHWM come from
\`/proc/PID/status\` of the \`sinew control\` process; MB are 10^6 bytes. Raw outputs (the
load tool's JSON with per-round figures, logs) stay in \`bench/out/control-*/\`.
MD
}

section | cat -s >"$REPORT"
cat "$REPORT"
log "section written to $REPORT (raw outputs in $RUN)"

if [[ $UPDATE_DOCS -eq 1 ]]; then
  put_section "$DOCS" "$REPORT" control-plane
fi
