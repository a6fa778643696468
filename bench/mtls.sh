#!/usr/bin/env bash
# bench/mtls.sh — what mutual TLS between sidecars costs: sidecar-to-sidecar throughput with mTLS
# vs plaintext, and mTLS handshakes per second on a sidecar's inbound listener vs nginx.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash bench/mtls.sh [--quick] [--rounds N] [--no-build] [--report FILE] [--netns] [--help]

Two measurements in one run, interleaved over N rounds:

  throughput  wrk (CPU 0) -> client sidecar "web" (outbound 127.0.0.1:18183) -> server sidecar
              "be" (inbound 127.0.0.1:18193) -> backend nginx (127.0.0.1:18080, CPU 0), once
              with the hop web -> be in plaintext (Mesh mtls: disabled) and once over mTLS
              (Mesh mtls: strict, TLS 1.3, ECDSA P-256 certificates with SPIFFE URI SANs).
              Both sidecars are started afresh in every round, both pinned to CPU 1.
              wrk -t1 -c32 (2 s warm-up, then 10 s) with `Host: be`: requests/s, p50/p99,
              and the sidecars' CPU time per request from /proc/PID/stat (utime + stime).
              Bar: mTLS requests/s >= 0.75 x plaintext requests/s (median of the per-round
              ratios).
  handshakes  openssl s_time -new (CPU 0) against the mTLS server sidecar's inbound listener
              (127.0.0.1:18193) and against nginx terminating the same mTLS
              (bench/peers/nginx-mtls.conf, 127.0.0.1:18194, ssl_verify_client on, one
              worker, no session resumption), each pinned to CPU 1 and started afresh:
              full handshakes per second (s_time's connections / measured wall time) and
              the server's CPU time per handshake.

Before round 1 it checks that the client certificate is really required and verified: with
the certificate both servers answer a request, without it (and with one from another CA)
Sinew refuses the handshake and nginx answers 400.

Prints a markdown section "## mTLS" and writes it to docs/benchmarks.md between the lines
<!-- mtls:begin --> and <!-- mtls:end --> (appended with them when absent; the rest of the
file is left as it is).

Options:
  --quick        short runs (1 s warm-ups, 3 s measurements, 1 round unless --rounds is
                 given) for smoke tests; the report goes to the run directory under
                 bench/out/ instead of docs/benchmarks.md
  --rounds N     repeat the whole sequence N times, interleaved (default 3; --quick: 1)
  --no-build     do not run `cargo build --release -p sinew`; use the existing binary
  --report FILE  write the section to FILE (between the same markers) instead
  --netns        run inside a private network namespace (root; needs unshare and ip), so
                 the fixed ports cannot clash with another benchmark on the machine; CPU
                 contention with it remains (see "other work" in the report)
  --help         this text

Environment:
  SINEW_BIN      the Sinew binary to measure (default: target/release/sinew)

Tools: nginx, wrk, curl, openssl, taskset (installed with apt-get when missing and run as
root). Run it as root: the Debian nginx build keeps its temporary directories under
/var/lib/nginx. Certificates, configs, raw outputs and logs stay in bench/out/mtls-*/.
Every process the script starts is stopped on exit, on failure too.
EOF
}

# ---------------------------------------------------------------- arguments
QUICK=0
BUILD=1
REPORT=""
NETNS=0
ROUNDS=""
ARGS=("$@")
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --report)
      [[ $# -ge 2 ]] || { echo "mtls.sh: --report needs a file" >&2; exit 2; }
      REPORT="$2"
      shift
      ;;
    --rounds)
      [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || { echo "mtls.sh: --rounds needs a whole number of 1 or more" >&2; exit 2; }
      ROUNDS="$2"
      shift
      ;;
    --netns) NETNS=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "mtls.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ $NETNS -eq 1 && -z ${MTLS_SH_NETNS:-} ]]; then
  [[ $(id -u) -eq 0 ]] || { echo "mtls.sh: --netns needs root" >&2; exit 2; }
  # A fresh namespace has only a loopback interface, down: bring it up, then rerun.
  # shellcheck disable=SC2016 # $0 and $@ belong to the inner bash
  exec unshare -n env MTLS_SH_NETNS=1 bash -c 'ip link set lo up && exec bash "$0" "$@"' \
    "${BASH_SOURCE[0]}" "${ARGS[@]}"
fi

# ---------------------------------------------------------------- settings
BACKEND_PORT=18080
WEB_OUT=18183 WEB_IN=18184 WEB_API=18185       # client sidecar "web"
BE_OUT=18192 BE_IN=18193 BE_API=18195          # server sidecar "be"
NGINX_PORT=18194                               # nginx terminating mTLS
CONNS=32
BAR=0.75
TRUST_DOMAIN=sinew.local
if [[ $QUICK -eq 1 ]]; then
  WARM=1 DUR=3 HS_WARM=1 HS_TIME=3
  ROUNDS="${ROUNDS:-1}"
else
  WARM=2 DUR=10 HS_WARM=2 HS_TIME=10
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
RUN="bench/out/mtls-$STAMP"
if [[ -z "$REPORT" ]]; then
  if [[ $QUICK -eq 1 ]]; then REPORT="$RUN/mtls.md"; else REPORT="docs/benchmarks.md"; fi
fi
BEGIN_MARK='<!-- mtls:begin -->'
END_MARK='<!-- mtls:end -->'

BENCH_NAME=mtls.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

# ---------------------------------------------------------------- tools
need_apt nginx nginx
need_apt wrk wrk
need_apt curl curl
need_apt openssl openssl
need_apt taskset util-linux
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (the servers under test on CPU 1, load and backend on CPU 0)"
[[ -n ${EPOCHREALTIME:-} ]] || die "needs bash 5 or later (EPOCHREALTIME)"

# ---------------------------------------------------------------- helpers
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
# utime + stime + cutime + cstime of this script: itself and the load generators it reaped.
self_ticks() {
  local line
  line="$(cat "/proc/$$/stat")"
  awk '{ print $12 + $13 + $14 + $15 }' <<<"${line##*) }"
}
# CPU counters from /proc/stat: "busy total" for the whole machine, cpu0 and cpu1
# (busy = user + nice + system + irq + softirq + steal; total adds idle and iowait).
cpu_snapshot() {
  awk '$1 == "cpu" || $1 == "cpu0" || $1 == "cpu1" {
    printf "%s %s ", $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 } END { print "" }' /proc/stat
}
# busy_pct A B INDEX: percent busy between two cpu_snapshot readings (INDEX 0: machine, 1: cpu0, 2: cpu1).
busy_pct() {
  awk -v a="$1" -v b="$2" -v i="$3" 'BEGIN { split(a, x, " "); split(b, y, " ")
    t = y[2 * i + 2] - x[2 * i + 2]; printf "%.0f\n", (t > 0) ? 100 * (y[2 * i + 1] - x[2 * i + 1]) / t : 0 }'
}
# other_pct A B OURS: share of the machine's capacity used by other work, OURS ticks excepted.
other_pct() {
  awk -v a="$1" -v b="$2" -v ours="$3" 'BEGIN { split(a, x, " "); split(b, y, " ")
    cap = y[2] - x[2]; o = y[1] - x[1] - ours; if (o < 0) o = 0
    printf "%.0f\n", (cap > 0) ? 100 * o / cap : 0 }'
}
# us_per TICKS N: ticks as µs per item.
us_per() { awk -v d="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { if (n + 0 == 0) print ""; else printf "%.3f\n", d * 1e6 / hz / n }'; }
fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { if (v == "" || v == "-") print "—"; else printf "%.*f\n", d, v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print ""; else printf "%.6f\n", a / b }'; }
# metric FILE REGEX: the sum of the values of the lines of a Prometheus text FILE matching REGEX.
metric() { awk -v re="$2" '!/^#/ && $0 ~ re { s += $NF } END { printf "%d\n", s }' "$1" 2>/dev/null || echo 0; }
# wrk_latency_us FILE PCT: wrk's --latency percentile (50%, 99%) in µs.
wrk_latency_us() {
  awk -v p="$2" '$1 == p && NF == 2 { v = $2
    if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000; else if (v ~ /s$/) m = 1e6; else m = 1
    sub(/[a-z]+$/, "", v); printf "%.0f\n", v * m; exit }' "$1"
}
# problems LOG: the log's warning and error lines (Sinew's WARN/ERROR, nginx's [warn] and worse), counted.
problems() { awk '/ (WARN|ERROR) |\[(warn|error|crit|alert|emerg)\]/ { n++ } END { printf "%d\n", n }' "$1" 2>/dev/null || echo 0; }

# Waits until the api listener on PORT answers /ready with 200; fails if PID exits first.
wait_ready() {
  local port=$1 pid=$2 i
  for ((i = 0; i < 150; i++)); do
    alive "$pid" || return 1
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/ready" 2>/dev/null || true) == 200 ]] && return 0
    sleep 0.1
  done
  return 1
}
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
# Waits until nginx on PORT answers a request over mTLS; fails if PID exits first.
wait_nginx_tls() {
  local port=$1 pid=$2 i body
  for ((i = 0; i < 150; i++)); do
    alive "$pid" || return 1
    body="$(curl -sk --http1.1 --max-time 1 --cert "$RUN/web.crt" --key "$RUN/web.key" "https://127.0.0.1:$port/" 2>/dev/null || true)"
    [[ "$body" == "hello world" ]] && return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- certificates and configs
# make_pki: an ECDSA P-256 CA and, for web and be, an ECDSA P-256 key (PKCS#8 PEM) and a
# certificate the CA signed with the SPIFFE ID as the only URI SAN; plus a second CA and a
# certificate for web from it ("rogue"), which the servers must refuse.
make_pki() {
  local d=$RUN n ca
  (
    set -e
    cd "$d"
    for ca in ca rogue-ca; do
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$ca.key"
      openssl req -x509 -new -key "$ca.key" -sha256 -days 2 -subj "/O=Sinew bench/CN=$ca" -out "$ca.crt" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    done
    for n in web be rogue-web; do
      ca=ca
      [[ $n == rogue-web ]] && ca=rogue-ca
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$n.key"
      openssl req -new -key "$n.key" -subj "/O=Sinew bench/CN=${n#rogue-}" -out "$n.csr"
      cat >"$n.ext" <<EXT
subjectAltName=URI:spiffe://$TRUST_DOMAIN/ns/default/svc/${n#rogue-}
extendedKeyUsage=serverAuth,clientAuth
keyUsage=critical,digitalSignature
basicConstraints=critical,CA:FALSE
EXT
      openssl x509 -req -in "$n.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -sha256 -days 2 \
        -extfile "$n.ext" -out "$n.crt"
    done
    openssl verify -CAfile ca.crt web.crt be.crt
  ) >"$RUN/pki.log" 2>&1 || die "making the certificates failed (see $RUN/pki.log)"
}

# write_configs: web-plain.yaml, be-plain.yaml, web-mtls.yaml, be-mtls.yaml in the run directory.
write_configs() {
  local v mesh web_tls be_tls identity dir="$ROOT/$RUN"
  for v in plain mtls; do
    if [[ $v == mtls ]]; then
      mesh=strict
      web_tls="  tls: {cert: \"$dir/web.crt\", key: \"$dir/web.key\", trust_bundle: \"$dir/ca.crt\"}"
      be_tls="  tls: {cert: \"$dir/be.crt\", key: \"$dir/be.key\", trust_bundle: \"$dir/ca.crt\"}"
      identity=", identity: \"spiffe://$TRUST_DOMAIN/ns/default/svc/be\""
    else
      mesh=disabled web_tls="" be_tls="" identity=""
    fi
    cat >"$RUN/web-$v.yaml" <<YAML
# bench/mtls.sh: client sidecar "web" ($v); Service be is the server sidecar's inbound listener.
apiVersion: sinew.dev/v1alpha1
kind: Proxy
metadata: {name: web}
spec:
  service: web
  workers: 1
  listen: {outbound: "127.0.0.1:$WEB_OUT", inbound: "127.0.0.1:$WEB_IN", api: "127.0.0.1:$WEB_API"}
$web_tls
---
apiVersion: sinew.dev/v1alpha1
kind: Mesh
metadata: {name: mesh}
spec: {mtls: $mesh}
---
apiVersion: sinew.dev/v1alpha1
kind: Service
metadata: {name: be}
spec:
  endpoints: [{address: "127.0.0.1:$BE_IN"$identity}]
YAML
    cat >"$RUN/be-$v.yaml" <<YAML
# bench/mtls.sh: server sidecar "be" ($v) in front of the backend nginx.
apiVersion: sinew.dev/v1alpha1
kind: Proxy
metadata: {name: be}
spec:
  service: be
  app: "127.0.0.1:$BACKEND_PORT"
  workers: 1
  listen: {outbound: "127.0.0.1:$BE_OUT", inbound: "127.0.0.1:$BE_IN", api: "127.0.0.1:$BE_API"}
$be_tls
---
apiVersion: sinew.dev/v1alpha1
kind: Mesh
metadata: {name: mesh}
spec: {mtls: $mesh}
YAML
  done
}

# ---------------------------------------------------------------- results
# Figures per variant (plain, mtls) or server (sinew, nginx) and round, keyed NAME.ROUND.
declare -A RPS REQS P50 P99 NON2XX SOCKERR WEB_US BE_US BOTH_US CPU0 CPU1 OTHER UPCONNS TLSCONNS LOGPROBS
declare -A HS_N HS_WALL HS_RATE HS_SRV_US HS_BUSY HS_CLI_US HS_OTHER HS_OK HS_REFUSED HS_LOGPROBS
declare -A CMP

# start_sidecar NAME VARIANT ROUND API: starts sidecar NAME with NAME-VARIANT.yaml on CPU 1 and
# waits for its /ready; sets STARTED_PID.
start_sidecar() {
  local name=$1 v=$2 r=$3 api=$4
  start "r$r.$v.$name" 1 "$SINEW_BIN" proxy --config "$RUN/$name-$v.yaml"
  wait_ready "$api" "$STARTED_PID" || die "round $r, $v: sidecar $name did not become ready on 127.0.0.1:$api (see $RUN/r$r.$v.$name.log)"
}

# throughput VARIANT ROUND: both sidecars afresh, warm-up, wrk, CPU readings, stop.
throughput() {
  local v=$1 r=$2 k="$1.$2" f="$RUN/r$2.$1" be_pid web_pid url="http://127.0.0.1:$WEB_OUT/"
  local s0 s1 m0 m1 w0 w1 b0 b1 k0 k1 reqs
  log "round $r, $v: starting sidecars be and web on CPU 1"
  start_sidecar be "$v" "$r" "$BE_API"
  be_pid=$STARTED_PID
  start_sidecar web "$v" "$r" "$WEB_API"
  web_pid=$STARTED_PID
  wait_serving "$WEB_OUT" "$web_pid" || die "round $r, $v: Host: be through 127.0.0.1:$WEB_OUT did not answer the backend's body (see $f.*.log)"
  log "round $r, $v: warm-up ${WARM}s"
  taskset -c 0 wrk -t1 -c"$CONNS" -d"${WARM}s" -H 'Host: be' "$url" >"$f.warmup.txt"
  log "round $r, $v: wrk ${DUR}s"
  m0=$(cpu_snapshot)
  s0=$(self_ticks)
  k0=$(cpu_ticks "$BACKEND_PID")
  w0=$(cpu_ticks "$web_pid")
  b0=$(cpu_ticks "$be_pid")
  taskset -c 0 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -H 'Host: be' "$url" >"$f.wrk.txt"
  w1=$(cpu_ticks "$web_pid")
  b1=$(cpu_ticks "$be_pid")
  k1=$(cpu_ticks "$BACKEND_PID")
  s1=$(self_ticks)
  m1=$(cpu_snapshot)
  reqs=$(awk '/ requests in / { print $1 }' "$f.wrk.txt")
  [[ -n $reqs && $reqs -gt 0 ]] || die "round $r, $v: wrk completed no requests (see $f.wrk.txt)"
  REQS[$k]=$reqs
  RPS[$k]=$(awk '/^Requests\/sec:/ { print $2 }' "$f.wrk.txt")
  NON2XX[$k]=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$f.wrk.txt")
  SOCKERR[$k]=$(awk '/Socket errors:/ { sub(/.*Socket errors: /, ""); print }' "$f.wrk.txt")
  P50[$k]=$(wrk_latency_us "$f.wrk.txt" 50%)
  P99[$k]=$(wrk_latency_us "$f.wrk.txt" 99%)
  WEB_US[$k]=$(us_per $((w1 - w0)) "$reqs")
  BE_US[$k]=$(us_per $((b1 - b0)) "$reqs")
  BOTH_US[$k]=$(us_per $((w1 - w0 + b1 - b0)) "$reqs")
  CPU0[$k]=$(busy_pct "$m0" "$m1" 1)
  CPU1[$k]=$(busy_pct "$m0" "$m1" 2)
  OTHER[$k]=$(other_pct "$m0" "$m1" $((s1 - s0 + k1 - k0 + w1 - w0 + b1 - b0)))
  curl -s --max-time 2 "http://127.0.0.1:$WEB_API/metrics" >"$f.web.metrics.txt" || true
  curl -s --max-time 2 "http://127.0.0.1:$BE_API/metrics" >"$f.be.metrics.txt" || true
  # Connections web opened to be's inbound (pooled: a handshake each, not one per request), and
  # the mTLS connections be accepted from web's SPIFFE ID (0 in plaintext).
  UPCONNS[$k]=$(metric "$f.web.metrics.txt" "^sinew_upstream_connections_total\\{.*endpoint=\"127.0.0.1:$BE_IN\"")
  TLSCONNS[$k]=$(metric "$f.be.metrics.txt" "^sinew_inbound_tls_connections_total\\{client_id=\"spiffe://$TRUST_DOMAIN/ns/default/svc/web\"")
  stop_started "$web_pid"
  stop_started "$be_pid"
  LOGPROBS[$k]=$(($(problems "$f.web.log") + $(problems "$f.be.log")))
  log "round $r, $v: $(fmt "${RPS[$k]}" 0) req/s, p99 $(fmt "${P99[$k]}" 0) µs, sidecars $(fmt "${BOTH_US[$k]}" 2) µs/req, CPU0 ${CPU0[$k]}% CPU1 ${CPU1[$k]}%, other work ${OTHER[$k]}%"
}

# handshakes SERVER ROUND: the server afresh on CPU 1, s_time warm-up, s_time, CPU readings, stop.
handshakes() {
  local srv=$1 r=$2 k="$1.$2" f="$RUN/r$2.hs.$1" pid port s0 s1 m0 m1 k0 k1 p0 p1 t0 t1 n user
  local ok0=0 ok1=0 bad0=0 bad1=0
  if [[ $srv == sinew ]]; then
    port=$BE_IN
    log "round $r, handshakes: starting the mTLS server sidecar be on CPU 1"
    start "r$r.hs.sinew" 1 "$SINEW_BIN" proxy --config "$RUN/be-mtls.yaml"
    pid=$STARTED_PID
    wait_ready "$BE_API" "$pid" || die "round $r: sidecar be did not become ready (see $f.log)"
  else
    port=$NGINX_PORT
    log "round $r, handshakes: starting nginx (mTLS) on CPU 1"
    start "r$r.hs.nginx" 1 nginx -e stderr -p "$ROOT/$RUN" -c nginx-mtls.conf
    pid=$STARTED_PID
    wait_nginx_tls "$port" "$pid" || die "round $r: nginx did not answer over mTLS on $port (see $f.log)"
  fi
  local cmd=(openssl s_time -connect "127.0.0.1:$port" -new -cert "$RUN/web.crt" -key "$RUN/web.key" -CAfile "$RUN/ca.crt")
  log "round $r, $srv: s_time warm-up ${HS_WARM}s"
  taskset -c 0 "${cmd[@]}" -time "$HS_WARM" >"$f.warmup.txt" 2>&1 || die "round $r, $srv: s_time failed (see $f.warmup.txt)"
  log "round $r, $srv: s_time ${HS_TIME}s"
  if [[ $srv == sinew ]]; then
    curl -s --max-time 2 "http://127.0.0.1:$BE_API/metrics" >"$f.metrics0.txt" || true
    ok0=$(metric "$f.metrics0.txt" '^sinew_inbound_tls_connections_total\{')
    bad0=$(metric "$f.metrics0.txt" '^sinew_inbound_tls_refused_total\{')
  fi
  m0=$(cpu_snapshot)
  s0=$(self_ticks)
  k0=$(cpu_ticks "$BACKEND_PID")
  p0=$(cpu_ticks "$pid")
  t0=$EPOCHREALTIME
  taskset -c 0 "${cmd[@]}" -time "$HS_TIME" >"$f.s_time.txt" 2>&1 || die "round $r, $srv: s_time failed (see $f.s_time.txt)"
  t1=$EPOCHREALTIME
  p1=$(cpu_ticks "$pid")
  k1=$(cpu_ticks "$BACKEND_PID")
  s1=$(self_ticks)
  m1=$(cpu_snapshot)
  if [[ $srv == sinew ]]; then
    curl -s --max-time 2 "http://127.0.0.1:$BE_API/metrics" >"$f.metrics1.txt" || true
    ok1=$(metric "$f.metrics1.txt" '^sinew_inbound_tls_connections_total\{')
    bad1=$(metric "$f.metrics1.txt" '^sinew_inbound_tls_refused_total\{')
    HS_OK[$k]=$((ok1 - ok0))
    HS_REFUSED[$k]=$((bad1 - bad0))
  fi
  stop_started "$pid"
  HS_LOGPROBS[$k]=$(problems "$f.log")
  # "N connections in T real seconds": T is whole seconds, so the rate uses the wall time
  # measured around s_time; "N connections in Xs; ... connections/user sec": X is s_time's
  # own user CPU time.
  n=$(awk '/connections in .* real seconds/ { print $1 }' "$f.s_time.txt")
  user=$(awk '/connections\/user sec/ { v = $4; sub(/s;$/, "", v); print v }' "$f.s_time.txt")
  [[ -n $n && $n -gt 0 ]] || die "round $r, $srv: s_time completed no handshakes (see $f.s_time.txt)"
  HS_N[$k]=$n
  HS_WALL[$k]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }')
  HS_RATE[$k]=$(awk -v n="$n" -v w="${HS_WALL[$k]}" 'BEGIN { printf "%.1f\n", n / w }')
  HS_SRV_US[$k]=$(us_per $((p1 - p0)) "$n")
  HS_BUSY[$k]=$(awk -v d=$((p1 - p0)) -v hz="$CLK_TCK" -v w="${HS_WALL[$k]}" 'BEGIN { printf "%.0f\n", 100 * d / hz / w }')
  HS_CLI_US[$k]=$(awk -v u="$user" -v n="$n" 'BEGIN { if (u == "") print ""; else printf "%.1f\n", u * 1e6 / n }')
  HS_OTHER[$k]=$(other_pct "$m0" "$m1" $((s1 - s0 + k1 - k0 + p1 - p0)))
  log "round $r, $srv: $n handshakes in ${HS_WALL[$k]} s = ${HS_RATE[$k]}/s, server $(fmt "${HS_SRV_US[$k]}" 0) µs/handshake (${HS_BUSY[$k]}% of CPU 1), other work ${HS_OTHER[$k]}%"
}

# ---------------------------------------------------------------- checks
# Each check: a line "what | expected | observed | ok" in CHECKS; a failed one stops the run
# after all were tried (the figures would not mean what they claim).
CHECKS=()
CHECK_FAILED=0
check() {
  local what=$1 expected=$2 observed=$3 ok=$4
  CHECKS+=("| $what | $expected | $observed | $([[ $ok -eq 1 ]] && echo ok || echo '**FAILED**') |")
  if [[ $ok -eq 1 ]]; then log "check ok: $what: $observed"; else log "check FAILED: $what: $observed"; CHECK_FAILED=1; fi
}
# tls_probe NAME PORT [CERT KEY]: s_client (TLS 1.3 handshake, then waits 1 s for what the
# server sends) and curl --http1.1 (one request), with or without a client certificate.
# Leaves $RUN/check.NAME.s_client.txt and $RUN/check.NAME.curl.txt.
tls_probe() {
  local name=$1 port=$2 cert=() ccert=()
  [[ $# -ge 4 ]] && cert=(-cert "$3" -key "$4") && ccert=(--cert "$3" --key "$4")
  sleep 1 | timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$RUN/ca.crt" "${cert[@]}" \
    >"$RUN/check.$name.s_client.txt" 2>&1 || true
  # -k: the servers' certificates name a SPIFFE ID, no DNS name, so curl cannot match the host.
  curl -sk --http1.1 --max-time 5 -D - -H 'Host: be' "${ccert[@]}" "https://127.0.0.1:$port/" \
    >"$RUN/check.$name.curl.txt" 2>&1 || echo "curl exit $?" >>"$RUN/check.$name.curl.txt"
}
status_of() { awk 'NR == 1 && /^HTTP/ { print $2; found = 1 } END { if (!found) print "none" }' "$1"; }
run_checks() {
  local pid npid obs ok st
  log "checks: starting the mTLS server sidecar be and nginx (mTLS) on CPU 1"
  start check.be 1 "$SINEW_BIN" proxy --config "$RUN/be-mtls.yaml"
  pid=$STARTED_PID
  wait_ready "$BE_API" "$pid" || die "check: sidecar be did not become ready (see $RUN/check.be.log)"
  start check.nginx 1 nginx -e stderr -p "$ROOT/$RUN" -c nginx-mtls.conf
  npid=$STARTED_PID
  wait_nginx_tls "$NGINX_PORT" "$npid" || die "check: nginx did not answer over mTLS on $NGINX_PORT (see $RUN/check.nginx.log)"

  for srv in sinew nginx; do
    local port=$BE_IN label="Sinew (be inbound :$BE_IN)"
    [[ $srv == nginx ]] && port=$NGINX_PORT label="nginx (:$NGINX_PORT)"
    tls_probe "$srv.cert" "$port" "$RUN/web.crt" "$RUN/web.key"
    tls_probe "$srv.nocert" "$port"
    tls_probe "$srv.rogue" "$port" "$RUN/rogue-web.crt" "$RUN/rogue-web.key"
    local f="$RUN/check.$srv.cert.s_client.txt"
    # With web's certificate: TLS 1.3, the server's chain verified by the client, no tickets.
    obs="$(awk '/^New, / { sub(/^New, /, ""); v = $0 } /Server Temp Key:/ { sub(/.*Server Temp Key: /, ""); kx = $0 }
      END { printf "%s, key exchange %s", v, kx }' "$f")"
    obs+="; $(awk '/Verify return code:/ { sub(/^ */, ""); print; exit }' "$f")"
    obs+="; session tickets sent: $(awk '/Post-Handshake New Session Ticket/ { n++ } END { print n + 0 }' "$f")"
    ok=0
    grep -q '^New, TLSv1.3' "$f" && grep -q 'Verify return code: 0 (ok)' "$f" && ! grep -q 'Post-Handshake New Session Ticket' "$f" && ok=1
    check "$label, s_client with web's certificate" "TLS 1.3 handshake, server chain verifies against ca.crt, no session tickets (every handshake full)" "$obs" "$ok"
    st=$(status_of "$RUN/check.$srv.cert.curl.txt")
    obs="HTTP $st, body \"$(tail -n1 "$RUN/check.$srv.cert.curl.txt" | tr -d '\r\n')\""
    [[ $srv == nginx ]] && obs+=", $(awk -F': ' 'tolower($1) == "x-client-verify" { printf "X-Client-Verify: %s", $2 }' "$RUN/check.$srv.cert.curl.txt" | tr -d '\r')"
    ok=0
    [[ $st == 200 ]] && grep -q '^hello world' "$RUN/check.$srv.cert.curl.txt" && ok=1
    [[ $srv == nginx ]] && ! grep -qi '^x-client-verify: SUCCESS' "$RUN/check.$srv.cert.curl.txt" && ok=0
    check "$label, a request with web's certificate" "200 hello world$([[ $srv == nginx ]] && echo ', X-Client-Verify: SUCCESS')" "$obs" "$ok"
    for kind in nocert rogue; do
      local what="without a client certificate" cf="$RUN/check.$srv.$kind.curl.txt" sf="$RUN/check.$srv.$kind.s_client.txt"
      [[ $kind == rogue ]] && what="with a certificate for web from another CA"
      st=$(status_of "$cf")
      if [[ $srv == sinew ]]; then
        obs="s_client: $(grep -o 'alert [a-z ]*' "$sf" | head -1 || true); request: $([[ $st == none ]] && grep -o 'curl exit [0-9]*' "$cf" || echo "HTTP $st")"
        ok=0
        [[ $st == none ]] && grep -q 'alert ' "$sf" && ok=1
        check "$label, $what" "handshake refused with a TLS alert, no response" "$obs" "$ok"
      else
        # OpenSSL completes the TLS 1.3 handshake; nginx then refuses the request.
        obs="HTTP $st: $(grep -o '<title>[^<]*' "$cf" | sed 's/<title>//' | head -1 || true)"
        ok=0
        [[ $st == 400 ]] && ok=1
        check "$label, $what" "400 (nginx refuses the request; the TLS 1.3 handshake itself completes)" "$obs" "$ok"
      fi
    done
  done
  # The s_time client really sends its certificate: Sinew counts the handshakes by client ID.
  curl -s --max-time 2 "http://127.0.0.1:$BE_API/metrics" >"$RUN/check.metrics0.txt" || true
  taskset -c 0 openssl s_time -connect "127.0.0.1:$BE_IN" -new -time 1 -cert "$RUN/web.crt" -key "$RUN/web.key" \
    -CAfile "$RUN/ca.crt" >"$RUN/check.s_time.txt" 2>&1 || true
  curl -s --max-time 2 "http://127.0.0.1:$BE_API/metrics" >"$RUN/check.metrics1.txt" || true
  local n ok0 ok1 bad0 bad1
  n=$(awk '/connections in .* real seconds/ { print $1 }' "$RUN/check.s_time.txt")
  ok0=$(metric "$RUN/check.metrics0.txt" "^sinew_inbound_tls_connections_total\\{client_id=\"spiffe://$TRUST_DOMAIN/ns/default/svc/web\"")
  ok1=$(metric "$RUN/check.metrics1.txt" "^sinew_inbound_tls_connections_total\\{client_id=\"spiffe://$TRUST_DOMAIN/ns/default/svc/web\"")
  bad0=$(metric "$RUN/check.metrics0.txt" '^sinew_inbound_tls_refused_total\{')
  bad1=$(metric "$RUN/check.metrics1.txt" '^sinew_inbound_tls_refused_total\{')
  obs="s_time: ${n:-0} connections; Sinew: $((ok1 - ok0)) accepted from spiffe://$TRUST_DOMAIN/ns/default/svc/web, $((bad1 - bad0)) counted as refused"
  ok=0
  [[ -n $n && $n -gt 0 && $((ok1 - ok0)) -gt 0 ]] && ok=1
  check "Sinew, 1 s of s_time -new with web's certificate" "handshakes completed, counted under web's SPIFFE ID" "$obs" "$ok"
  stop_started "$npid"
  stop_started "$pid"
  [[ $CHECK_FAILED -eq 0 ]] || die "a check failed: the client certificate is not required and verified as the benchmark assumes (see $RUN/check.*)"
}

# ---------------------------------------------------------------- run
mkdir -p "$RUN"
log "run directory: $RUN"
for port in $BACKEND_PORT $WEB_OUT $WEB_IN $WEB_API $BE_OUT $BE_IN $BE_API $NGINX_PORT; do
  port_busy "$port" && die "127.0.0.1:$port is already in use; stop what listens there first"
done

if [[ $BUILD -eq 1 ]]; then
  log "building Sinew: cargo build --release -p sinew"
  cargo build --release -p sinew >"$RUN/cargo-build.log" 2>&1 || die "cargo build --release -p sinew failed (see $RUN/cargo-build.log)"
  BINARY_NOTE="built for this run (\`cargo build --release -p sinew\`)"
else
  [[ -x $SINEW_BIN ]] || die "$SINEW_BIN does not exist"
  # Whether the binary can be HEAD's: built after HEAD was committed, and before any change to
  # the sources still in the tree.
  BINARY_NOTE="--no-build: binary built $(date -u -r "$SINEW_BIN" '+%Y-%m-%d %H:%M UTC'); HEAD committed $(git log -1 --format=%cd --date=format-local:'%Y-%m-%d %H:%M UTC' 2>/dev/null || echo '?')"
  if [[ $(git log -1 --format=%ct 2>/dev/null || echo 0) -gt $(date -r "$SINEW_BIN" +%s) ]]; then
    BINARY_NOTE+=", after the binary: it may predate this commit"
  fi
  NEWER=$(find crates Cargo.toml Cargo.lock -type f -newer "$SINEW_BIN" 2>/dev/null | wc -l)
  if [[ $NEWER -gt 0 ]]; then
    BINARY_NOTE+="; $NEWER file(s) under crates/ or Cargo.* changed after the binary was built (not in it)"
  else
    BINARY_NOTE+="; no source file changed after it was built"
  fi
fi
[[ -x $SINEW_BIN ]] || die "$SINEW_BIN does not exist"

cp bench/peers/backend-nginx.conf bench/peers/nginx-mtls.conf "$RUN/"
make_pki
write_configs
for v in plain mtls; do
  for n in web be; do
    "$SINEW_BIN" validate -f "$RUN/$n-$v.yaml" >"$RUN/validate.$n-$v.log" 2>&1 ||
      die "$RUN/$n-$v.yaml does not validate: $(cat "$RUN/validate.$n-$v.log")"
  done
done

# Share of CPU time other work used over 2 s, before anything starts.
BUSY_BEFORE=$(a=$(cpu_snapshot); sleep 2; busy_pct "$a" "$(cpu_snapshot)" 0)
log "CPU busy with other work before the run: $BUSY_BEFORE%"

log "starting backend nginx on CPU 0 (kept up for all $ROUNDS rounds)"
start backend 0 nginx -e stderr -p "$ROOT/$RUN" -c backend-nginx.conf
BACKEND_PID=$STARTED_PID
wait_serving "$BACKEND_PORT" "$BACKEND_PID" || die "backend nginx did not serve on $BACKEND_PORT (see $RUN/backend.log)"

run_checks

# shellcheck disable=SC2034 # CMP is read through the nameref in series()
for ((round = 1; round <= ROUNDS; round++)); do
  log "round $round of $ROUNDS"
  # Alternate the order between rounds, so neither variant always runs first.
  if ((round % 2)); then
    throughput plain "$round"; throughput mtls "$round"
    handshakes sinew "$round"; handshakes nginx "$round"
  else
    throughput mtls "$round"; throughput plain "$round"
    handshakes nginx "$round"; handshakes sinew "$round"
  fi
  CMP[rps.$round]=$(ratio "${RPS[mtls.$round]}" "${RPS[plain.$round]}")
  CMP[cpu.$round]=$(ratio "${BOTH_US[mtls.$round]}" "${BOTH_US[plain.$round]}")
  CMP[hs.$round]=$(ratio "${HS_RATE[sinew.$round]}" "${HS_RATE[nginx.$round]}")
  CMP[hscpu.$round]=$(ratio "${HS_SRV_US[nginx.$round]}" "${HS_SRV_US[sinew.$round]}")
done
stop_started "$BACKEND_PID"
BACKEND_PROBLEMS=$(problems "$RUN/backend.log")

# ---------------------------------------------------------------- aggregation
series() {
  local -n values=$1
  local r
  for ((r = 1; r <= ROUNDS; r++)); do printf '%s\n' "${values[$2.$r]:-}"; done
}
median() {
  awk 'NF' | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) print ""; else if (NR % 2) printf "%.6f\n", v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
med() { series "$1" "$2" | median; }
cell() { fmt "$(med "$1" "$2")" "$3"; }
listing() {
  series "$1" "$2" | awk -v d="$3" '{ x = ($1 == "") ? "—" : sprintf("%.*f", d, $1); s = s (NR > 1 ? " · " : "") x } END { print s }'
}
highest() { series "$1" "$2" | awk 'NF && (m == "" || $1 + 0 > m + 0) { m = $1 } END { print m }'; }
held() { series "$1" "$2" | awk "NF { n++; v = \$1; if ($3) k++ } END { printf \"%d of %d round%s\", k, n, (n == 1) ? \"\" : \"s\" }"; }
plural() { if [[ $1 -eq 1 ]]; then echo "$2"; else echo "$3"; fi; }
verdict() { awk -v v="$1" "BEGIN { if (v == \"\") print \"not measured\"; else if ($2) print \"pass\"; else print \"**FAIL**\" }"; }

# notes KEY: why a throughput (variant.round) figure is suspect.
tp_notes() {
  local k=$1 out=()
  [[ -n ${NON2XX[$k]:-} ]] && out+=("${NON2XX[$k]} non-2xx")
  [[ -n ${SOCKERR[$k]:-} ]] && out+=("wrk socket errors: ${SOCKERR[$k]}")
  [[ ${OTHER[$k]:-0} -ge 5 ]] && out+=("other work ${OTHER[$k]}%")
  [[ ${LOGPROBS[$k]:-0} -gt 0 ]] && out+=("${LOGPROBS[$k]} warning/error lines in the sidecar logs")
  local j="" x
  for x in "${out[@]}"; do j+="${j:+; }$x"; done
  echo "${j:-—}"
}
hs_notes() {
  local k=$1 out=()
  [[ ${HS_OTHER[$k]:-0} -ge 5 ]] && out+=("other work ${HS_OTHER[$k]}%")
  [[ ${HS_LOGPROBS[$k]:-0} -gt 0 ]] && out+=("${HS_LOGPROBS[$k]} warning/error lines in the server log")
  if [[ $k == sinew.* && $((${HS_OK[$k]:-0} + ${HS_REFUSED[$k]:-0})) -ne ${HS_N[$k]:-0} ]]; then
    out+=("Sinew counted $((${HS_OK[$k]:-0} + ${HS_REFUSED[$k]:-0})) handshakes, s_time ${HS_N[$k]:-0}")
  fi
  local j="" x
  for x in "${out[@]}"; do j+="${j:+; }$x"; done
  echo "${j:-—}"
}
SUSPECT=0
for ((r = 1; r <= ROUNDS; r++)); do
  s=0
  for v in plain mtls; do [[ $(tp_notes "$v.$r") == "—" ]] || s=1; done
  for v in sinew nginx; do [[ $(hs_notes "$v.$r") == "—" ]] || s=1; done
  SUSPECT=$((SUSPECT + s))
done
# Without their timestamps (and nginx's pid, connection number and client address), so that
# repeated lines count as one.
LOG_LINES=$(for f in "$RUN"/r*.log "$RUN"/check.*.log; do
  [[ -f $f ]] && awk '/ (WARN|ERROR) |\[(warn|error|crit|alert|emerg)\]/' "$f"
done | sed -E 's/^[0-9T:.-]+Z +//; s/^[0-9\/]+ [0-9:]+ //; s/ [0-9]+#[0-9]+: (\*[0-9]+ )?/ /; s/, client: .*//' |
  sort | uniq -c | sort -rn | head -5 || true)

# log_summary: the warning and error lines in the logs of the measured runs, counted, and the
# most frequent ones.
log_summary() {
  local r tp=0 hs=0
  for ((r = 1; r <= ROUNDS; r++)); do
    tp=$((tp + ${LOGPROBS[plain.$r]} + ${LOGPROBS[mtls.$r]}))
    hs=$((hs + ${HS_LOGPROBS[sinew.$r]} + ${HS_LOGPROBS[nginx.$r]}))
  done
  printf 'Warning/error lines in the logs of the measured runs: sidecars (throughput) %d, servers (handshakes) %d, backend %d.' \
    "$tp" "$hs" "$BACKEND_PROBLEMS"
  if [[ -n $LOG_LINES ]]; then
    printf ' The most frequent (count, line):\n\n  ```\n'
    while IFS= read -r line; do printf '  %s\n' "$line"; done <<<"$LOG_LINES"
    printf '  ```\n'
  fi
}

# ---------------------------------------------------------------- report
report() {
  local r v label rps_m cpu_m
  rps_m=$(med CMP rps)
  cpu_m=$(med CMP cpu)
  cat <<MD
## mTLS

Generated by \`bash bench/mtls.sh${ARGS[*]:+ ${ARGS[*]}}\` — do not edit by hand; rerun the script.
$([[ $QUICK -eq 1 ]] && printf '\n**Quick run (%s s measurements): a smoke test, not figures to publish.**\n' "$DUR")
$(awk -v b="$BUSY_BEFORE" 'BEGIN { if (b + 0 >= 10) printf "\n**The machine was busy: %s%% of its CPU time was used by other work in the 2 s before the run.**\n", b }')

- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $COMMIT; Sinew binary: $BINARY_NOTE
- Machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r), load average at start $LOAD_START; CPU busy with other work in the 2 s before the run: $BUSY_BEFORE%
- Tools: $(nginx -v 2>&1 | sed 's|.*/||; s|^|nginx |') ($(nginx -V 2>&1 | grep -o 'running with OpenSSL [0-9.a-z]*' | sed 's/running with //' || echo 'OpenSSL ?')), $(wrk --version 2>&1 | awk 'NR == 1 { print "wrk " $2 }'), $(openssl version | awk '{ print $1, $2 }') (s_time, s_client, certificates)
- Certificates: ECDSA P-256 keys (PKCS#8), a self-signed P-256 CA, leaf certificates with one URI SAN \`spiffe://$TRUST_DOMAIN/ns/default/svc/<name>\`, serverAuth + clientAuth; TLS 1.3 only, no session resumption on either server
- Rounds: $ROUNDS, interleaved (each round: throughput plaintext and mTLS, then handshakes Sinew and nginx; the order within each pair alternates between rounds; every server started afresh); suspect rounds: $SUSPECT
- Clock ticks: CLK_TCK = $CLK_TCK (CPU time resolution $((1000 / CLK_TCK)) ms)

### Throughput: sidecar to sidecar, plaintext vs mTLS

\`wrk -t1 -c$CONNS -d${DUR}s --latency -H 'Host: be'\` (after a ${WARM} s warm-up) on CPU 0 → client sidecar
\`web\` (outbound :$WEB_OUT) → server sidecar \`be\` (inbound :$BE_IN) → backend nginx (:$BACKEND_PORT, CPU 0).
Both sidecars (one worker each) on CPU 1, so CPU 1 carries the whole mesh hop; "CPU µs/request"
is the sidecars' utime + stime over the wrk run ÷ requests wrk completed. "web → be connections"
is what web's \`sinew_upstream_connections_total\` counted to be's inbound (each an mTLS
handshake in the mTLS variant), "mTLS accepted" be's \`sinew_inbound_tls_connections_total\` for
web's SPIFFE ID.

| round | variant | requests | requests/s | p50 µs | p99 µs | web CPU µs/req | be CPU µs/req | both sidecars CPU µs/req | CPU 0 busy % | CPU 1 busy % | web → be connections | mTLS accepted | other work % | notes |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
MD
  for ((r = 1; r <= ROUNDS; r++)); do
    for v in plain mtls; do
      local k="$v.$r"
      label=plaintext
      [[ $v == mtls ]] && label=mTLS
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$r" "$label" \
        "${REQS[$k]}" "$(fmt "${RPS[$k]}" 0)" "$(fmt "${P50[$k]}" 0)" "$(fmt "${P99[$k]}" 0)" "$(fmt "${WEB_US[$k]}" 2)" \
        "$(fmt "${BE_US[$k]}" 2)" "$(fmt "${BOTH_US[$k]}" 2)" "${CPU0[$k]}" "${CPU1[$k]}" "${UPCONNS[$k]}" \
        "${TLSCONNS[$k]}" "${OTHER[$k]}" "$(tp_notes "$k")"
    done
  done
  cat <<MD

Medians across rounds (ratios: median of the per-round ratios mTLS ÷ plaintext):

| variant | requests/s | p50 µs | p99 µs | web CPU µs/req | be CPU µs/req | both sidecars CPU µs/req | CPU 0 busy % | CPU 1 busy % |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
MD
  for v in plain mtls; do
    label=plaintext
    [[ $v == mtls ]] && label=mTLS
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$(cell RPS "$v" 0)" "$(cell P50 "$v" 0)" \
      "$(cell P99 "$v" 0)" "$(cell WEB_US "$v" 2)" "$(cell BE_US "$v" 2)" "$(cell BOTH_US "$v" 2)" \
      "$(cell CPU0 "$v" 0)" "$(cell CPU1 "$v" 0)"
  done
  printf '| **mTLS ÷ plaintext** | **%s** (%s) | | | | | **%s** (%s) | | |\n' \
    "$(fmt "$rps_m" 3)" "$(listing CMP rps 3)" "$(fmt "$cpu_m" 3)" "$(listing CMP cpu 3)"
  cat <<MD

| bar | measured: median (per round) | required | verdict |
|---|---|---:|---|
| mTLS requests/s ÷ plaintext requests/s | $(fmt "$rps_m" 3) ($(listing CMP rps 3); ≥ $BAR in $(held CMP rps "v >= $BAR")) | ≥ $BAR | $(verdict "$rps_m" "v >= $BAR") |

For context: mTLS costs the two sidecars together $(fmt "$cpu_m" 2)× the CPU per request of plaintext
(median of the per-round ratios).

### Handshakes per second: Sinew's inbound listener vs nginx

\`openssl s_time -new -time $HS_TIME\` (after a ${HS_WARM} s warm-up) on CPU 0 with web's certificate and key,
against the mTLS server sidecar \`be\` (inbound :$BE_IN) and against nginx (\`bench/peers/nginx-mtls.conf\`,
:$NGINX_PORT), each alone on CPU 1. Every connection is a full TLS 1.3 handshake (X25519, ECDSA P-256
both ways, the client certificate verified against ca.crt; no resumption, no tickets); s_time opens
them one after another, so the server idles while the client works. "handshakes/s" is s_time's
connections ÷ the wall time measured around it (s_time's own "real seconds" is whole seconds);
"server CPU µs/handshake" is the server's utime + stime over the run ÷ connections, and
"capacity" is 10⁶ ÷ that: the handshakes one core could complete if the client kept up.
"client µs/handshake" is s_time's own user CPU time per connection (from its output).

| round | server | handshakes | wall s | handshakes/s | server CPU µs/handshake | server CPU busy % | capacity, handshakes/s per core | client (s_time) user µs/handshake | Sinew: accepted / counted refused | other work % | notes |
|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|
MD
  for ((r = 1; r <= ROUNDS; r++)); do
    for v in sinew nginx; do
      local k="$v.$r" cap acc="—"
      label="Sinew (:$BE_IN)"
      [[ $v == nginx ]] && label="nginx (:$NGINX_PORT)"
      cap=$(awk -v u="${HS_SRV_US[$k]}" 'BEGIN { if (u + 0 > 0) printf "%.0f\n", 1e6 / u }')
      [[ $v == sinew ]] && acc="${HS_OK[$k]} / ${HS_REFUSED[$k]}"
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$r" "$label" "${HS_N[$k]}" \
        "$(fmt "${HS_WALL[$k]}" 2)" "$(fmt "${HS_RATE[$k]}" 0)" "$(fmt "${HS_SRV_US[$k]}" 0)" "${HS_BUSY[$k]}" \
        "${cap:-—}" "$(fmt "${HS_CLI_US[$k]}" 0)" "$acc" "${HS_OTHER[$k]}" "$(hs_notes "$k")"
    done
  done
  cat <<MD

Medians across rounds (ratios: median of the per-round ratios):

| server | handshakes/s | server CPU µs/handshake | capacity, handshakes/s per core | server CPU busy % | client user µs/handshake |
|---|---:|---:|---:|---:|---:|
MD
  for v in sinew nginx; do
    label="Sinew (:$BE_IN)"
    [[ $v == nginx ]] && label="nginx (:$NGINX_PORT)"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "$(cell HS_RATE "$v" 0)" "$(cell HS_SRV_US "$v" 0)" \
      "$(awk -v u="$(med HS_SRV_US "$v")" 'BEGIN { if (u + 0 > 0) printf "%.0f\n", 1e6 / u; else print "—" }')" \
      "$(cell HS_BUSY "$v" 0)" "$(cell HS_CLI_US "$v" 0)"
  done
  cat <<MD
| **Sinew ÷ nginx** | **$(fmt "$(med CMP hs)" 3)** ($(listing CMP hs 3)) | nginx µs ÷ Sinew µs: **$(fmt "$(med CMP hscpu)" 3)** ($(listing CMP hscpu 3)) | | | |

(No bar is set for handshakes; above 1 Sinew is faster, below 1 slower.)

### Checks before round 1

The client certificate must really be sent and verified, or the handshake figures measure
something else. Each server was probed with \`openssl s_client\` and with one \`curl --http1.1\`
request, with web's certificate, without one, and with a certificate for web from another CA.

| check | expected | observed | |
|---|---|---|---|
$(printf '%s\n' "${CHECKS[@]}")

### Commands

\`\`\`sh
# RUN=bench/out/mtls-$STAMP holds the certificates, the sidecar configs and copies of bench/peers/*
taskset -c 0 nginx -e stderr -p "\$PWD/\$RUN" -c backend-nginx.conf        # backend :$BACKEND_PORT, up for the whole run
# throughput, per round and variant V = plain | mtls, both sidecars started afresh:
taskset -c 1 $SINEW_BIN proxy --config \$RUN/be-V.yaml              # be: inbound :$BE_IN -> app :$BACKEND_PORT
taskset -c 1 $SINEW_BIN proxy --config \$RUN/web-V.yaml             # web: outbound :$WEB_OUT -> Service be at :$BE_IN
taskset -c 0 wrk -t1 -c$CONNS -d${WARM}s -H 'Host: be' http://127.0.0.1:$WEB_OUT/             # warm-up
taskset -c 0 wrk -t1 -c$CONNS -d${DUR}s --latency -H 'Host: be' http://127.0.0.1:$WEB_OUT/   # /proc/PID/stat read before and after
# handshakes, per round, each server alone and started afresh (PORT = $BE_IN Sinew be-mtls.yaml, $NGINX_PORT nginx):
taskset -c 1 $SINEW_BIN proxy --config \$RUN/be-mtls.yaml
taskset -c 1 nginx -e stderr -p "\$PWD/\$RUN" -c nginx-mtls.conf
taskset -c 0 openssl s_time -connect 127.0.0.1:PORT -new -time $HS_WARM -cert \$RUN/web.crt -key \$RUN/web.key -CAfile \$RUN/ca.crt    # warm-up
taskset -c 0 openssl s_time -connect 127.0.0.1:PORT -new -time $HS_TIME -cert \$RUN/web.crt -key \$RUN/web.key -CAfile \$RUN/ca.crt
\`\`\`

### Notes

- **Placement.** Two CPUs, shared by everything: CPU 1 carries what is measured (both sidecars
  in the throughput runs; the one server in the handshake runs), CPU 0 the load generator and
  the backend. With both sidecars on CPU 1, requests/s is bounded by whichever core saturates
  first; the per-core busy columns say which. When CPU 1 saturates, the requests/s ratio is the
  inverse of the sidecars' CPU-per-request ratio; when CPU 0 does, requests/s understates what
  mTLS costs and "both sidecars CPU µs/req" is the figure to read.
- **Connections are pooled.** web opens a handful of connections to be's inbound (one per
  concurrent request, at most $CONNS) and reuses them, so in the throughput runs the handshakes are
  amortised over ~10⁵ requests: the mTLS cost there is record encryption (AES-GCM) and the TLS
  layer on both sidecars, not handshakes.
- **s_time is a sequential client.** One connection at a time: the rate is one client's
  handshake latency (client CPU + server CPU + scheduling), not the server's capacity, and both
  servers are measured the same way. The server CPU per handshake and the capacity derived from
  it compare the servers' efficiency independently of the client. s_time closes each connection
  with SO_LINGER 0 (a TCP reset) right after sending its Finished; the server has received the
  client's whole flight by then. Sinew's own counters, read around each run, are in the
  "accepted / counted refused" column (together they equal s_time's count unless a note says
  otherwise): a handshake whose client reset the connection right after its Finished is counted
  under \`sinew_inbound_tls_refused_total{reason="handshake"}\` when the reset arrives before the
  listener returns from the handshake, though the server had processed the client's flight.
- **nginx without a client certificate.** With \`ssl_verify_client on\` OpenSSL completes the TLS 1.3
  handshake and nginx refuses the request (400); Sinew refuses the handshake itself. Both verify
  the certificate in the handshake, so both pay for it on every connection s_time opens.
- **Other work** is the share of the machine's CPU time (\`/proc/stat\`) during a run that neither
  the backend, the servers under test nor this script and its load generators used; at 5 % or
  more the run is flagged. Absolute figures drift between runs on a shared machine; compare
  the same-round ratios.
- **Logs.** $(log_summary)
- Raw outputs (wrk and s_time text, /metrics after each run, process logs, the check probes)
  stay in \`bench/out/mtls-*/\` (not committed).
MD
}

report | cat -s >"$RUN/mtls.section.md"
put_section "$REPORT" "$RUN/mtls.section.md" mTLS
cat "$RUN/mtls.section.md"
log "report written to $REPORT (raw outputs in $RUN)"
