#!/usr/bin/env bash
# Remakes crates/sinew/link/text-order.txt: the functions the sidecar and the control plane
# run, in the order they first run them, which the build places first and together in the
# binary's code (see crates/sinew/build.rs). Run it when bench/proxy.sh's idle RSS grows or its report says
# that little of the list matches the binary any more.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bash bench/orderfile.sh [--no-build] [--help]

Two runs under valgrind's callgrind, then a list:

  1. the sidecar of bench/proxy.sh (bench/sinew.yaml), driven the way a sidecar works:
     HTTP/1.1 keep-alive and HTTP/2 to the backend nginx, a 404, the api listener's
     /live /ready /config /metrics, a reload on SIGHUP, a graceful shutdown;
  2. `sinew up` for 150 s with its sidecars (not its demo apps) also under callgrind: the
     control plane, mTLS between sidecars, config pushes, events published and delivered,
     the gateway.

Every function of the sinew binary that ran is written to crates/sinew/link/text-order.txt
in first-run order: the static sidecar's first, then those the sidecars under `sinew up`
added, then the control plane's (the `up` process).

Names are written without their mangling hashes (a `*` instead), so the list survives code
changes and toolchain updates, except where the pattern would also match more than 64 KiB
of other instances of a generic function: then the exact name is kept.

  --no-build   use the existing target/release/sinew
USAGE
}
BUILD=1
for arg in "$@"; do
  case $arg in
    --no-build) BUILD=0 ;;
    --help | -h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
STAMP="$(date -u +%Y%m%d-%H%M%S)"
RUN="bench/out/orderfile-$STAMP"
mkdir -p "$RUN/logs"
BENCH_NAME=orderfile.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_apt valgrind valgrind
need_apt nginx nginx
need_apt wrk wrk
need_apt curl curl
need_apt python3 python3
BIN=target/release/sinew
if [[ $BUILD -eq 1 ]]; then
  log "building: cargo build --release -p sinew"
  cargo build --release -p sinew >&2
fi
[[ -x $BIN ]] || die "$BIN is missing (build it, or drop --no-build)"

cp bench/peers/backend-nginx.conf "$RUN/"
start backend 0 nginx -e stderr -p "$PWD/$RUN" -c backend-nginx.conf
BACKEND=$STARTED_PID
for _ in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:18080/ && break; sleep 0.1; done

cp bench/sinew.yaml "$RUN/sinew.yaml"
log "starting the sidecar under callgrind"
start sidecar 1 valgrind --tool=callgrind --demangle=no --dump-instr=no \
  --callgrind-out-file="$RUN/callgrind.out" "$BIN" proxy --config "$RUN/sinew.yaml"
SIDECAR=$STARTED_PID
for _ in $(seq 300); do curl -fs -o /dev/null -H 'Host: be' http://127.0.0.1:18083/ && break; sleep 0.2; done
curl -fs -o /dev/null -H 'Host: be' http://127.0.0.1:18083/ || die "the sidecar did not serve (see $RUN/sidecar.log)"

log "driving it"
api=http://127.0.0.1:18091
for path in /live /ready /config /metrics; do curl -fs -o /dev/null "$api$path"; done
curl -s -o /dev/null -H 'Host: nowhere' http://127.0.0.1:18083/
# h2 in is h2 out: the HTTP/1.1-only backend makes this a 502, after the HTTP/2 paths ran.
curl -s -o /dev/null --http2-prior-knowledge -H 'Host: be' http://127.0.0.1:18083/
wrk -t1 -c8 -d3s -H 'Host: be' http://127.0.0.1:18083/ >"$RUN/wrk.txt"
kill -HUP "$SIDECAR"
sleep 3
curl -fs -o /dev/null -H 'Host: be' http://127.0.0.1:18083/
curl -fs -o /dev/null "$api/metrics"
curl -fs -o /dev/null -X POST "$api/shutdown"
for _ in $(seq 100); do alive "$SIDECAR" || break; sleep 0.2; done
wait "$SIDECAR" 2>/dev/null || true
forget "$SIDECAR"
[[ -s $RUN/callgrind.out ]] || die "callgrind wrote nothing (see $RUN/sidecar.log)"

stop_started "$BACKEND"
log "running sinew up under callgrind for 150 s"
mkdir -p "$RUN/up"
UP_DIR="$(cd "$RUN/up" && pwd)"
start up 0,1 timeout -s INT 150 valgrind --tool=callgrind --demangle=no --dump-instr=no \
  --trace-children=yes --trace-children-skip-by-arg=demo-app --trace-children-skip='*/kill' \
  --callgrind-out-file="$UP_DIR/callgrind.%p" "$BIN" up
UP=$STARTED_PID
wait "$UP" 2>/dev/null || true
forget "$UP"
sidecars=() control=()
for f in "$RUN"/up/callgrind.*; do
  case "$(grep -m1 '^cmd:' "$f")" in
    *" proxy "*) sidecars+=("$f") ;;
    *" up") control+=("$f") ;;
  esac
done
[[ ${#sidecars[@]} -gt 0 && ${#control[@]} -gt 0 ]] || die "sinew up left no sidecar or control-plane profile (see $RUN/up.log)"
log "profiles: ${#sidecars[@]} sidecars and the control plane under sinew up"

nm -S --defined-only "$BIN" >"$RUN/symbols.txt"
python3 - "$RUN/symbols.txt" crates/sinew/link/text-order.txt "$RUN/callgrind.out" "${sidecars[@]}" "${control[@]}" <<'PY'
import fnmatch, re, sys
symbols, out, *profiles = sys.argv[1:]
size = {}
for line in open(symbols):
    f = line.split()
    if len(f) == 4 and f[2] in "tTwW":
        size[f[3]] = int(f[1], 16)
ran, seen = [], set()
for profile in profiles:
    for line in open(profile):
        m = re.match(r"c?fn=\(\d+\) (\S+)", line)
        if m and m.group(1) in size and m.group(1) not in seen:
            seen.add(m.group(1))
            ran.append(m.group(1))

def pattern(name):
    name = re.sub(r"17h[0-9a-f]{16}E(\.\d+)?$", "17h*", name)
    return re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", name)

by_prefix = {}
for name in size:
    by_prefix.setdefault(name[:12], []).append(name)
lines, kept = [], set()
for name in ran:
    p = pattern(name)
    if p != name:
        rx = re.compile(fnmatch.translate(p))
        matched = sum(size[s] for s in by_prefix.get(name[:12], []) if rx.match(s))
        if matched > 64 * 1024:
            p = re.sub(r"\.\d+$", "*", name)
    if p not in kept:
        kept.add(p)
        lines.append(p)
with open(out, "w") as f:
    f.write("# Made by bench/orderfile.sh: the functions that ran, in first-run order.\n")
    f.write("\n".join(lines) + "\n")
print(f"{len(ran)} functions ran ({sum(size[n] for n in ran) // 1024} KiB); {len(lines)} lines written to {out}")
PY
log "done; the run is in $RUN"
