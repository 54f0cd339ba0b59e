#!/usr/bin/env bash
# holdfast vs. direct vs. HAProxy, side by side, in one run.
#
#   benches/compare.sh
#
# From a clean checkout: installs haproxy (apt-get) if missing, builds the
# release binaries, starts holdfast-sim (3 members) on free loopback ports,
# then runs the same workloads against
#   (a) direct   the sim's primary itself (the limit),
#   (b) holdfast pointed at the replica set,
#   (c) haproxy  TCP mode, the three members as servers, a tcp-check that
#                sends an OP_MSG hello and expects isWritablePrimary: true,
# ROUNDS times with the order of targets rotated every round, and prints
# medians, spread (min-max), ratios to direct and the latency each proxy adds.
# It also measures CPU time per request of holdfast and HAProxy
# (/proc/PID/stat utime+stime delta / requests), RSS per idle client
# connection through holdfast (IDLE_CONNS connections), and that holdfast's
# backend connections stay within its pool while many clients are busy.
# Writes benches/results/latest.json and benches/results/compare.png.
#
# Environment (defaults in brackets):
#   ROUNDS [5]  DURATION [8] s measured  WARMUP [2] s  CONNS [64]
#   WORKLOADS ["find mix"]   KEYS [10000] preloaded documents
#   PIN [split]: split = sim on core 0, proxy on core 1, load tool on both;
#                none  = no taskset at all
#   IDLE_CONNS [10000] (0 skips)  IDLE_SECS [10]
#   POOL_CLIENTS [1000] busy clients for the pool check (0 skips)  POOL_SIZE [100]
#   SKIP_BUILD [0]   KEEP_WORK [0] keep the scratch directory (logs)
#   PROFILE [0]: 1 also runs `perf stat` on holdfast and haproxy during one extra find run each
#   HOLDFAST_BIN [target/release/holdfast]: the holdfast binary measured
#   CANDIDATE_BIN: a second holdfast binary (e.g. a patched build) measured as a
#                fourth target, "candidate", in the same rounds (A/B of a change);
#                CANDIDATE_LABEL names it in the plot and the JSON's meta
#   OUT_NAME [latest]: writes benches/results/OUT_NAME.json and OUT_NAME.png
#   QUIET_LOAD [1.5] QUIET_WAIT [0]: wait up to QUIET_WAIT s for the 1-minute load
#                average to drop below QUIET_LOAD before measuring (warns if it does not)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-8}"
WARMUP="${WARMUP:-2}"
CONNS="${CONNS:-64}"
WORKLOADS="${WORKLOADS:-find mix}"
KEYS="${KEYS:-10000}"
PIN="${PIN:-split}"
IDLE_CONNS="${IDLE_CONNS:-10000}"
IDLE_SECS="${IDLE_SECS:-10}"
POOL_CLIENTS="${POOL_CLIENTS:-1000}"
POOL_SIZE="${POOL_SIZE:-100}"
SKIP_BUILD="${SKIP_BUILD:-0}"
KEEP_WORK="${KEEP_WORK:-0}"
PROFILE="${PROFILE:-0}"
OUT="$REPO/benches/results"
OUT_NAME="${OUT_NAME:-latest}"
BIN="$REPO/target/release"
HOLDFAST_BIN="${HOLDFAST_BIN:-$BIN/holdfast}"
CANDIDATE_BIN="${CANDIDATE_BIN:-}"
CANDIDATE_LABEL="${CANDIDATE_LABEL:-candidate}"
QUIET_LOAD="${QUIET_LOAD:-1.5}"
QUIET_WAIT="${QUIET_WAIT:-0}"
PY="$REPO/.venv/py4/bin/python"

log() { echo "compare: $*" >&2; }
die() { echo "compare: ERROR: $*" >&2; exit 1; }

WORK="$(mktemp -d /tmp/holdfast-compare.XXXXXX)"
PIDS=()
cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$KEEP_WORK" = 1 ] || [ $rc -ne 0 ]; then
        log "logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ------------------------------------------------------------------
if ! command -v haproxy >/dev/null 2>&1; then
    log "installing haproxy"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq haproxy >&2 || die "could not install haproxy"
fi
command -v python3 >/dev/null || die "python3 is needed for the summary"
HAVE_TASKSET=0; command -v taskset >/dev/null && HAVE_TASKSET=1
NCPU="$(nproc)"
if [ "$PIN" = split ] && { [ "$HAVE_TASKSET" = 0 ] || [ "$NCPU" -lt 2 ]; }; then
    log "PIN=split needs taskset and 2 cores; running unpinned"; PIN=none
fi
# pin ROLE: sets PFX to the taskset prefix for ROLE (sim | proxy | load), so
# that "${PFX[@]}" cmd & gives the PID of cmd itself (taskset execs it).
pin() {
    PFX=()
    if [ "$PIN" = split ]; then
        case "$1" in
            sim) PFX=(taskset -c 0) ;;
            proxy) PFX=(taskset -c 1) ;;
            load) PFX=(taskset -c 0,1) ;;
        esac
    fi
}

if [ "$SKIP_BUILD" != 1 ]; then
    log "building release binaries"
    (cd "$REPO" && nice -n 10 cargo build --release -q -p holdfast -p holdfast-sim -p holdfast-bench) \
        || die "cargo build failed"
fi
for b in holdfast-sim holdfast-bench; do [ -x "$BIN/$b" ] || die "$BIN/$b missing"; done
[ -x "$HOLDFAST_BIN" ] || die "$HOLDFAST_BIN missing"
[ -z "$CANDIDATE_BIN" ] || [ -x "$CANDIDATE_BIN" ] || die "$CANDIDATE_BIN missing"

# The plot needs matplotlib in .venv/py4 (scripts/install-test-deps.sh makes the venv).
if [ ! -x "$PY" ]; then
    log "creating .venv/py4"; python3 -m venv "$REPO/.venv/py4" >&2 || true
fi
if [ -x "$PY" ] && ! "$PY" -c 'import matplotlib' 2>/dev/null; then
    log "installing matplotlib into .venv/py4"
    "$REPO/.venv/py4/bin/pip" install -q matplotlib >&2 || log "matplotlib did not install: no plot"
fi

# --- file descriptors for the idle test ---------------------------------------
HARD="$(ulimit -Hn)"; [ "$HARD" = unlimited ] && HARD=1048576
if [ $((IDLE_CONNS + 2000)) -gt "$HARD" ]; then
    NEW=$((HARD - 2000)); NEW=$(( NEW > 0 ? NEW : 0 ))
    [ "$IDLE_CONNS" -gt 0 ] && log "fd hard limit $HARD: idle test with $NEW connections instead of $IDLE_CONNS"
    IDLE_CONNS=$NEW
fi
WANT=$((IDLE_CONNS + 2000)); [ "$WANT" -lt 10000 ] && WANT=10000; [ "$WANT" -gt "$HARD" ] && WANT=$HARD
ulimit -n "$WANT"
HAP_MAXCONN=$(( (WANT - 100) / 2 )); [ "$HAP_MAXCONN" -gt 4096 ] && HAP_MAXCONN=4096

# --- free ports ---------------------------------------------------------------
free_block() { # free_block N -> first port of N consecutive free ports
    python3 - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
# Below the ephemeral range, so that the load tool's 10,000 client sockets
# cannot take a port a server is about to bind.
try:
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except OSError:
    lo = 32768
hi = max(lo - n - 1, 12000)
for _ in range(200):
    base = random.randint(10000, hi)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p)); socks.append(s)
        print(base); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
else:
    sys.exit("no free ports")
EOF
}
PORTS="$(free_block 10)"
SIM_PORT=$PORTS
HF_PORT=$((PORTS + 3)); HF_ADMIN=$((PORTS + 4))
HAP_PORT=$((PORTS + 5))
IDLE_PORT=$((PORTS + 6)); IDLE_ADMIN=$((PORTS + 7))
CAND_PORT=$((PORTS + 8)); CAND_ADMIN=$((PORTS + 9))
MEMBERS="127.0.0.1:$SIM_PORT,127.0.0.1:$((SIM_PORT + 1)),127.0.0.1:$((SIM_PORT + 2))"
URI="mongodb://$MEMBERS/?replicaSet=rs0"

cpu_ticks() { # utime+stime of PID (all threads), in clock ticks
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
CLK_TCK="$(getconf CLK_TCK)"
metric() { # metric ADMIN_PORT NAME -> sum of NAME's samples
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" \
        | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { print s + 0 }'
}
wait_port() { # wait_port PORT SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# --- start the replica set, holdfast and haproxy -----------------------------
log "work dir $WORK; pinning: $PIN; ports $SIM_PORT.."
pin sim; "${PFX[@]}" "$BIN/holdfast-sim" --members 3 --port "$SIM_PORT" --set-name rs0 >"$WORK/sim.log" 2>&1 &
SIM_PID=$!; PIDS+=("$SIM_PID")
PRIMARY="$("$BIN/holdfast-bench" --target "$MEMBERS" --print-primary --wait 20)" || die "no primary (see $WORK/sim.log)"
log "primary: $PRIMARY"
"$BIN/holdfast-bench" --target "$PRIMARY" --preload "$KEYS" --preload-only >&2

# holdfast with its default configuration (log level info) but the pool size.
pin proxy; "${PFX[@]}" "$HOLDFAST_BIN" --upstream "$URI" --listen "127.0.0.1:$HF_PORT" \
    --admin-listen "127.0.0.1:$HF_ADMIN" --pool-size "$POOL_SIZE" >"$WORK/holdfast.log" 2>&1 &
HF_PID=$!; PIDS+=("$HF_PID")
CAND_PID=""
if [ -n "$CANDIDATE_BIN" ]; then
    pin proxy; "${PFX[@]}" "$CANDIDATE_BIN" --upstream "$URI" --listen "127.0.0.1:$CAND_PORT" \
        --admin-listen "127.0.0.1:$CAND_ADMIN" --pool-size "$POOL_SIZE" >"$WORK/candidate.log" 2>&1 &
    CAND_PID=$!; PIDS+=("$CAND_PID")
fi

# HAProxy as people put it in front of a replica set: TCP mode, every member a
# server, a tcp-check that sends an OP_MSG hello and expects the BSON element
# isWritablePrimary: true, so only the primary is UP.
#   hello frame (52 bytes): header {len 52, requestID 1, responseTo 0, opCode 2013},
#   flagBits 0, section kind 0, body {hello: 1 (int32), $db: "admin"}
#   expected bytes: 08 "isWritablePrimary" 00 01  (bool element, true)
HELLO_HEX=340000000100000000000000dd07000000000000001f0000001068656c6c6f000100000002246462000600000061646d696e0000
WP_HEX=0869735772697461626c655072696d6172790001
cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn $HAP_MAXCONN
    log stderr format short local0 warning
defaults
    mode tcp
    log global
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout check 1s
frontend mongo_in
    bind 127.0.0.1:$HAP_PORT
    default_backend mongo_primary
backend mongo_primary
    option tcp-check
    tcp-check connect
    tcp-check send-binary $HELLO_HEX
    tcp-check expect binary $WP_HEX
    default-server check inter 500ms fall 1 rise 1 on-marked-down shutdown-sessions
    server m0 127.0.0.1:$SIM_PORT
    server m1 127.0.0.1:$((SIM_PORT + 1))
    server m2 127.0.0.1:$((SIM_PORT + 2))
EOF
pin proxy; "${PFX[@]}" haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
HAP_PID=$!; PIDS+=("$HAP_PID")

wait_port "$HF_PORT" 20 || die "holdfast did not start (see $WORK/holdfast.log)"
wait_port "$HAP_PORT" 20 || die "haproxy did not start (see $WORK/haproxy.log)"
"$BIN/holdfast-bench" --target "127.0.0.1:$HF_PORT" --wait 20 --connections 1 --duration 0.2 --warmup 0 --json >/dev/null \
    || die "holdfast does not answer"
"$BIN/holdfast-bench" --target "127.0.0.1:$HAP_PORT" --wait 20 --connections 1 --duration 0.2 --warmup 0 --json >/dev/null \
    || die "haproxy does not answer"

declare -A ADDR=([direct]="$PRIMARY" [holdfast]="127.0.0.1:$HF_PORT" [haproxy]="127.0.0.1:$HAP_PORT" [candidate]="127.0.0.1:$CAND_PORT")
declare -A PPID_OF=([direct]="" [holdfast]="$HF_PID" [haproxy]="$HAP_PID" [candidate]="$CAND_PID")
TARGETS=(direct holdfast haproxy)
if [ -n "$CANDIDATE_BIN" ]; then
    wait_port "$CAND_PORT" 20 || die "candidate did not start (see $WORK/candidate.log)"
    TARGETS+=(candidate)
fi
NT=${#TARGETS[@]}
RUNS="$WORK/runs.jsonl"; : >"$RUNS"

one_run() { # one_run ROUND TARGET WORKLOAD
    local round=$1 t=$2 w=$3 pp=${PPID_OF[$2]} c0 c1 s0 s1 out
    s0=$(cpu_ticks "$SIM_PID"); c0=0; [ -n "$pp" ] && c0=$(cpu_ticks "$pp")
    pin load; out="$("${PFX[@]}" "$BIN/holdfast-bench" --target "${ADDR[$t]}" --workload "$w" --connections "$CONNS" \
        --duration "$DURATION" --warmup "$WARMUP" --keys "$KEYS" --json --label "$t")" || die "bench failed: $t $w"
    s1=$(cpu_ticks "$SIM_PID"); c1=0; [ -n "$pp" ] && c1=$(cpu_ticks "$pp")
    echo "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
r, t, w, cp, cs, tck = sys.argv[1:7]
d.update(round=int(r), target=t, workload=w)
tot = max(d["total_ops"], 1)
d["proxy_cpu_us_per_req"] = (int(cp) / int(tck) * 1e6 / tot) if t != "direct" else None
d["sim_cpu_us_per_req"] = int(cs) / int(tck) * 1e6 / tot
print(json.dumps(d))' "$round" "$t" "$w" "$((c1 - c0))" "$((s1 - s0))" "$CLK_TCK" >>"$RUNS"
    tail -n1 "$RUNS" | python3 -c '
import json, sys; d = json.loads(sys.stdin.read()); l = d["latency_us"]
cpu = "" if d["proxy_cpu_us_per_req"] is None else "  proxy cpu %.1f us/req" % d["proxy_cpu_us_per_req"]
print("  round %d %-8s %-4s %8.0f ops/s  p50 %5d us  p99 %6d us  errors %d%s" % (d["round"], d["target"], d["workload"], d["ops_per_sec"], l["p50"], l["p99"], d["errors"], cpu))' >&2
}

# Other work on the machine shows up as noise: wait for quiet, or say so.
load1() { cut -d' ' -f1 /proc/loadavg; }
for ((i = 0; i < QUIET_WAIT; i += 5)); do
    python3 -c "import sys; sys.exit(0 if $(load1) < $QUIET_LOAD else 1)" && break
    [ "$i" = 0 ] && log "waiting up to ${QUIET_WAIT}s for the load average ($(load1)) to drop below $QUIET_LOAD"
    sleep 5
done
python3 -c "import sys; sys.exit(0 if $(load1) < $QUIET_LOAD else 1)" \
    || log "WARNING: load average $(load1) >= $QUIET_LOAD: other processes share the CPU, expect noisy figures"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
log "load: $CONNS connections, ${DURATION}s (+${WARMUP}s warmup), workloads: $WORKLOADS, $ROUNDS rounds"
for ((r = 1; r <= ROUNDS; r++)); do
    for w in $WORKLOADS; do
        for ((k = 0; k < NT; k++)); do
            one_run "$r" "${TARGETS[$(((r - 1 + k) % NT))]}" "$w"
        done
    done
done

# --- backend connections bounded by the pool ----------------------------------
POOL_JSON="null"
if [ "$POOL_CLIENTS" -gt 0 ]; then
    log "pool check: $POOL_CLIENTS busy clients through holdfast (pool_size $POOL_SIZE)"
    pin load; "${PFX[@]}" "$BIN/holdfast-bench" --target "127.0.0.1:$HF_PORT" --workload find --connections "$POOL_CLIENTS" \
        --duration 6 --warmup 1 --keys "$KEYS" --connect-concurrency 64 --json --label pool >"$WORK/pool.json" &
    BP=$!
    maxb=0; maxc=0
    while kill -0 "$BP" 2>/dev/null; do
        b=$(metric "$HF_ADMIN" holdfast_backend_connections); c=$(metric "$HF_ADMIN" holdfast_client_connections)
        [ "${b%.*}" -gt "$maxb" ] && maxb=${b%.*}
        [ "${c%.*}" -gt "$maxc" ] && maxc=${c%.*}
        sleep 0.25
    done
    wait "$BP" || die "pool check bench failed"
    POOL_JSON="$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(json.dumps({"clients": int(sys.argv[2]), "pool_size": int(sys.argv[3]), "max_backend_connections": int(sys.argv[4]),
  "max_client_connections_seen": int(sys.argv[5]), "ops_per_sec": d["ops_per_sec"], "errors": d["errors"],
  "latency_us": d["latency_us"], "bounded": int(sys.argv[4]) <= int(sys.argv[3])}))' \
        "$WORK/pool.json" "$POOL_CLIENTS" "$POOL_SIZE" "$maxb" "$maxc")"
    log "pool check: max backend connections $maxb (pool_size $POOL_SIZE), max clients seen $maxc"
fi

# --- idle connections: RSS per connection -------------------------------------
IDLE_JSON="null"
if [ "$IDLE_CONNS" -gt 0 ]; then
    log "idle test: $IDLE_CONNS idle client connections through a fresh holdfast"
    printf 'max_client_connections = %d\n' "$((IDLE_CONNS + 100))" >"$WORK/idle.toml"
    pin proxy; "${PFX[@]}" "$HOLDFAST_BIN" --config "$WORK/idle.toml" --upstream "$URI" \
        --listen "127.0.0.1:$IDLE_PORT" --admin-listen "127.0.0.1:$IDLE_ADMIN" --pool-size "$POOL_SIZE" \
        >"$WORK/holdfast-idle.log" 2>&1 &
    IP=$!; PIDS+=("$IP")
    wait_port "$IDLE_PORT" 20 || die "idle holdfast did not start"
    # One request first, so the backend pool and the runtime exist before "before".
    "$BIN/holdfast-bench" --target "127.0.0.1:$IDLE_PORT" --wait 20 --connections 4 --duration 0.5 --warmup 0 --keys "$KEYS" --json >/dev/null
    sleep 1
    rss0=$(rss_kb "$IP")
    rm -f "$WORK/idle.ready"
    pin load; "${PFX[@]}" "$BIN/holdfast-bench" --target "127.0.0.1:$IDLE_PORT" --workload idle --connections "$IDLE_CONNS" \
        --duration "$IDLE_SECS" --ready-file "$WORK/idle.ready" --json --label idle >"$WORK/idle.json" &
    BP=$!
    for ((i = 0; i < 600; i++)); do [ -f "$WORK/idle.ready" ] && break; kill -0 "$BP" 2>/dev/null || break; sleep 0.1; done
    [ -f "$WORK/idle.ready" ] || die "idle connections were not established"
    sleep 2
    rss1=$(rss_kb "$IP")
    held=$(metric "$IDLE_ADMIN" holdfast_client_connections)
    backend=$(metric "$IDLE_ADMIN" holdfast_backend_connections)
    wait "$BP" || die "idle bench failed"
    sleep 1
    rss2=$(rss_kb "$IP")
    IDLE_JSON="$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
rss0, rss1, rss2, held, backend = (int(float(x)) for x in sys.argv[2:7])
opened = max(d["opened"], 1)
print(json.dumps({"connections": d["connections"], "opened": d["opened"], "still_open": d["still_open"],
  "failed_to_open": d["failed_to_open"], "closed_while_idle": d["closed_while_idle"],
  "holdfast_client_connections": held, "backend_connections": backend,
  "rss_before_kb": rss0, "rss_with_connections_kb": rss1, "rss_after_close_kb": rss2,
  "bytes_per_connection": (rss1 - rss0) * 1024 / opened,
  "connect_hello_latency_us": d["connect_hello_latency_us"]}))' \
        "$WORK/idle.json" "$rss0" "$rss1" "$rss2" "$held" "$backend")"
    kill "$IP" 2>/dev/null || true
    log "idle: RSS $rss0 kB -> $rss1 kB with connections open ($rss2 kB after they closed)"
fi

# --- optional perf stat of holdfast under find ---------------------------------
PERF_JSON="null"
if [ "$PROFILE" = 1 ] && command -v perf >/dev/null && perf stat -e instructions true >/dev/null 2>&1; then
    log "perf stat on holdfast and haproxy (find, $DURATION s each)"
    for t in holdfast haproxy; do
        pp=${PPID_OF[$t]}
        perf stat -x, -e instructions,cycles,task-clock,context-switches -p "$pp" -o "$WORK/perf-$t.csv" &
        PP=$!
        pin load; "${PFX[@]}" "$BIN/holdfast-bench" --target "${ADDR[$t]}" --workload find --connections "$CONNS" \
            --duration "$DURATION" --warmup 0 --keys "$KEYS" --json >"$WORK/perf-$t.json"
        kill -INT "$PP"; wait "$PP" || true
    done
    PERF_JSON="$(python3 - "$WORK" <<'EOF'
import json, sys
w = sys.argv[1]; out = {}
for t in ("holdfast", "haproxy"):
    ops = json.load(open(f"{w}/perf-{t}.json"))["total_ops"]
    ev = {}
    for line in open(f"{w}/perf-{t}.csv"):
        f = line.strip().split(",")
        if len(f) > 3 and f[0] and f[0][0].isdigit():
            ev[f[2]] = float(f[0])
    # task-clock is in msec: report microseconds.
    out[t] = {(k + "_us_per_req" if k == "task-clock" else k + "_per_req"): (v * 1000 if k == "task-clock" else v) / max(ops, 1)
              for k, v in ev.items()}
    out[t]["requests"] = ops
print(json.dumps(out))
EOF
)"
fi

# --- summary -------------------------------------------------------------------
META="$(python3 -c '
import json, sys, platform, subprocess
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return ""
print(json.dumps({"date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"), "cpus": int(sh("nproc") or 0),
  "cpu_model": sh("grep -m1 \"model name\" /proc/cpuinfo | cut -d: -f2").strip(), "kernel": platform.release(),
  "haproxy": sh("haproxy -v | head -1"), "git": sh("git -C " + sys.argv[1] + " describe --always --dirty"),
  "rounds": int(sys.argv[2]), "duration_s": float(sys.argv[3]), "warmup_s": float(sys.argv[4]),
  "connections": int(sys.argv[5]), "pin": sys.argv[6], "keys": int(sys.argv[7]),
  "load_at_start": sys.argv[8], "load_at_end": sh("cut -d\" \" -f1-3 /proc/loadavg"),
  "candidate_bin": sys.argv[9], "candidate_label": sys.argv[10]}))' "$REPO" "$ROUNDS" "$DURATION" "$WARMUP" "$CONNS" "$PIN" "$KEYS" "$LOAD_START" "$CANDIDATE_BIN" "$CANDIDATE_LABEL")"

mkdir -p "$OUT"
python3 - "$RUNS" "$OUT/$OUT_NAME.json" "$META" "$POOL_JSON" "$IDLE_JSON" "$PERF_JSON" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
meta, pool, idle, perf = (json.loads(x) for x in sys.argv[3:7])
med = statistics.median
summary = {}
for w in sorted({r["workload"] for r in runs}):
    s = {}
    for t in ("direct", "holdfast", "haproxy", "candidate"):
        rs = [r for r in runs if r["workload"] == w and r["target"] == t]
        if not rs:
            continue
        ops = [r["ops_per_sec"] for r in rs]
        p50 = [r["latency_us"]["p50"] for r in rs]
        p99 = [r["latency_us"]["p99"] for r in rs]
        p999 = [r["latency_us"]["p999"] for r in rs]
        cpu = [r["proxy_cpu_us_per_req"] for r in rs if r["proxy_cpu_us_per_req"] is not None]
        sim = [r["sim_cpu_us_per_req"] for r in rs]
        s[t] = {"runs": len(rs), "ops_per_sec": {"median": med(ops), "min": min(ops), "max": max(ops)},
                "p50_us": {"median": med(p50), "min": min(p50), "max": max(p50)},
                "p99_us": {"median": med(p99), "min": min(p99), "max": max(p99)},
                "p999_us": {"median": med(p999), "min": min(p999), "max": max(p999)},
                "errors": sum(r["errors"] for r in rs),
                "proxy_cpu_us_per_req": {"median": med(cpu), "min": min(cpu), "max": max(cpu)} if cpu else None,
                "sim_cpu_us_per_req": med(sim)}
    d = s.get("direct")
    for t in ("holdfast", "haproxy", "candidate"):
        if d and t in s:
            x = s[t]
            x["ratio_to_direct"] = x["ops_per_sec"]["median"] / d["ops_per_sec"]["median"]
            x["added_p50_us"] = x["p50_us"]["median"] - d["p50_us"]["median"]
            x["added_p99_us"] = x["p99_us"]["median"] - d["p99_us"]["median"]
            # Per-round ratios (same round, adjacent runs): their spread.
            rr = []
            for r in sorted({r["round"] for r in runs}):
                a = [q["ops_per_sec"] for q in runs if q["round"] == r and q["workload"] == w and q["target"] == t]
                b = [q["ops_per_sec"] for q in runs if q["round"] == r and q["workload"] == w and q["target"] == "direct"]
                if a and b and b[0] > 0:
                    rr.append(a[0] / b[0])
            x["ratio_per_round"] = {"median": med(rr), "min": min(rr), "max": max(rr)} if rr else None
    summary[w] = s
targets = {}
for w, s in summary.items():
    a, d = s.get("haproxy"), s.get("direct")
    for hn in ("holdfast", "candidate"):
        h = s.get(hn)
        if h and a:
            targets[w if hn == "holdfast" else f"{w} (candidate)"] = {
                "throughput_ge_haproxy": h["ops_per_sec"]["median"] >= a["ops_per_sec"]["median"],
                "added_p50_le_haproxy": h["added_p50_us"] <= a["added_p50_us"],
                "added_p99_le_haproxy": h["added_p99_us"] <= a["added_p99_us"],
                "cpu_per_req_le_haproxy": (h["proxy_cpu_us_per_req"] or {}).get("median", 1e9)
                <= (a["proxy_cpu_us_per_req"] or {}).get("median", 0),
            }
    if w == "find" and d:
        targets["sim_ge_40k_find_ops"] = d["ops_per_sec"]["median"] >= 40000
if idle:
    targets["idle_rss_le_4KiB_per_conn"] = idle["bytes_per_connection"] <= 4096
if pool:
    targets["backend_connections_bounded"] = pool["bounded"]
out = {"meta": meta, "summary": summary, "targets": targets, "pool": pool, "idle": idle, "perf": perf, "runs": runs}
json.dump(out, open(sys.argv[2], "w"), indent=1)

def fmt(x): return f"{x:,.0f}"
print()
print(f"holdfast benchmark  {meta['date']}  {meta['cpus']} cpus  pin={meta['pin']}  {meta['connections']} connections  "
      f"{meta['rounds']} rounds x {meta['duration_s']:g} s  (git {meta['git']})")
for w, s in summary.items():
    print(f"\nworkload {w}: median [min-max]")
    print(f"  {'target':9} {'ops/s':>26} {'ratio':>6} {'p50 us':>20} {'p99 us':>22} {'+p50':>6} {'+p99':>7} {'cpu us/req':>18} err")
    for t, x in s.items():
        o, p5, p9 = x["ops_per_sec"], x["p50_us"], x["p99_us"]
        ratio = f"{x['ratio_to_direct']:.2f}" if "ratio_to_direct" in x else "1.00"
        a50 = f"{x['added_p50_us']:+.0f}" if "added_p50_us" in x else ""
        a99 = f"{x['added_p99_us']:+.0f}" if "added_p99_us" in x else ""
        c = x["proxy_cpu_us_per_req"]
        cs = f"{c['median']:.1f} [{c['min']:.1f}-{c['max']:.1f}]" if c else "-"
        print(f"  {t:9} {fmt(o['median']):>8} [{fmt(o['min'])}-{fmt(o['max'])}] {ratio:>6} "
              f"{p5['median']:>6.0f} [{p5['min']:.0f}-{p5['max']:.0f}] {p9['median']:>7.0f} [{p9['min']:.0f}-{p9['max']:.0f}] "
              f"{a50:>6} {a99:>7} {cs:>18} {x['errors']}")
    print(f"  sim cpu us/req: " + ", ".join(f"{t} {x['sim_cpu_us_per_req']:.1f}" for t, x in s.items()))
if pool:
    print(f"\npool: {pool['clients']} busy clients -> max {pool['max_backend_connections']} backend connections "
          f"(pool_size {pool['pool_size']}), {fmt(pool['ops_per_sec'])} ops/s, p99 {pool['latency_us']['p99']} us, errors {pool['errors']}")
if idle:
    print(f"idle: {idle['opened']} connections held ({idle['still_open']} still answering after the idle period), "
          f"RSS {idle['rss_before_kb']} -> {idle['rss_with_connections_kb']} kB = {idle['bytes_per_connection']:.0f} bytes/connection")
if perf:
    for t, p in perf.items():
        print(f"perf stat {t}: " + ", ".join(f"{k} {v:,.2f}" for k, v in p.items() if k != "requests"))
print("\ntargets: " + ", ".join(f"{k}={'met' if v is True else ('MISSED' if v is False else v)}"
      for k, v in targets.items() if not isinstance(v, dict)))
for w, v in targets.items():
    if isinstance(v, dict):
        print(f"  {w}: " + ", ".join(f"{k}={'met' if b else 'MISSED'}" for k, b in v.items()))
print(f"\nwrote {sys.argv[2]}")
EOF

if [ -x "$PY" ] && "$PY" -c 'import matplotlib' 2>/dev/null; then
    PNG="$OUT/compare.png"; [ "$OUT_NAME" = latest ] || PNG="$OUT/$OUT_NAME.png"
    "$PY" - "$OUT/$OUT_NAME.json" "$PNG" <<'EOF'
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
d = json.load(open(sys.argv[1]))
s, m = d["summary"], d["meta"]
ws = list(s)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
colors = {"direct": "#888888", "holdfast": "#1f77b4", "haproxy": "#d62728", "candidate": "#2ca02c"}
targets = [t for t in ("direct", "holdfast", "haproxy", "candidate") if any(t in s[w] for w in ws)]
width = 0.8 / len(targets)
for i, t in enumerate(targets):
    xs = [j + (i - (len(targets) - 1) / 2) * width for j in range(len(ws))]
    med = [s[w][t]["ops_per_sec"]["median"] / 1000 if t in s[w] else 0 for w in ws]
    lo = [med[k] - s[w][t]["ops_per_sec"]["min"] / 1000 if t in s[w] else 0 for k, w in enumerate(ws)]
    hi = [s[w][t]["ops_per_sec"]["max"] / 1000 - med[k] if t in s[w] else 0 for k, w in enumerate(ws)]
    name = m.get("candidate_label") or t if t == "candidate" else t
    axes[0].bar(xs, med, width, yerr=[lo, hi], capsize=3, label=name, color=colors[t])
axes[0].set_xticks(range(len(ws)), ws)
axes[0].set_ylabel("thousand requests/s (median, min-max)")
axes[0].set_title(f"Throughput, {m['connections']} connections")
top = max(s[w][t]["ops_per_sec"]["max"] for w in ws for t in targets if t in s[w]) / 1000
axes[0].set_ylim(0, top * 1.45)  # room for the legend above the bars
axes[0].legend(fontsize=8, loc="upper right")
short = {"candidate": "cand."}
labels = [f"{w}\n{short.get(t, t)}" for w in ws for t in targets if t in s[w]]
p50 = [s[w][t]["p50_us"]["median"] for w in ws for t in targets if t in s[w]]
p99 = [s[w][t]["p99_us"]["median"] for w in ws for t in targets if t in s[w]]
cols = [colors[t] for w in ws for t in targets if t in s[w]]
x = range(len(labels))
axes[1].bar([i - 0.2 for i in x], p50, 0.4, color=cols, alpha=0.55, label="p50")
axes[1].bar([i + 0.2 for i in x], p99, 0.4, color=cols, label="p99")
axes[1].set_xticks(list(x), labels, fontsize=8)
axes[1].set_ylabel("latency, microseconds (median of rounds)")
axes[1].set_title("Latency: p50 (light) and p99 (dark)")
fig.suptitle(f"holdfast vs direct vs HAProxy (TCP) on {m['cpus']} cores, pin={m['pin']}, "
             f"{m['rounds']} rounds x {m['duration_s']:g} s, {m['date']}", fontsize=9)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print(f"wrote {sys.argv[2]}")
EOF
else
    log "no matplotlib in .venv/py4: plot skipped"
fi
