#!/usr/bin/env bash
# RTSPS benchmark (issue 14): what TLS costs, against plain RTSP, in one run.
#
# 1. Time to first picture: livecast-player headless, 3 s sessions, REPEAT rounds of
#    rtsp:// over UDP, rtsp:// interleaved TCP, rtsps:// interleaved in TLS and rtsps:// with
#    SRTP over UDP, alternating;
#    then the same with Digest authentication on (a second server with a users file), plain
#    (UDP) and rtsps. `first_frame_ms` counts from the player's start: connection, TLS
#    handshake, the requests (and their 401 round trip with Digest), the first keyframe,
#    decoding.
# 2. Server CPU per viewer: livecast-loadgen with N sessions (default 200) over plain UDP,
#    plain interleaved TCP, rtsps interleaved and SRTP over UDP (RTP/SAVPF, the load
#    generator counting packets by their clear headers), one after the other against the same server, the
#    server's CPU from /proc over the window.
#
# usage: scripts/bench-rtsps.sh
#   BIN=target/debug REPEAT=4 N=100 WINDOW=5 scripts/bench-rtsps.sh
# The video is the noise file of scripts/bench-fanout.sh when it exists (2 Mbit/s really
# used), else the test card (about 0.4 Mbit/s); VIDEO=... overrides.
# Results: $OUT/*.json, $OUT/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release}
REPEAT=${REPEAT:-8}
N=${N:-200}
WINDOW=${WINDOW:-10}
PORT=${PORT:-18754}
TLS_PORT=${TLS_PORT:-18755}
OUT=${OUT:-target/bench-rtsps/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
NOISE=target/bench-fanout/noise-1280x720-30.y4m
if [ -z "${VIDEO:-}" ]; then
    if [ -s "$NOISE" ]; then VIDEO=file:$NOISE; else VIDEO=testsrc; fi
fi
log() { echo "bench-rtsps: $*" >&2; }

if [ "$BIN" = target/release ]; then
    cargo build --release --locked -p livecast-server -p livecast-player -p livecast-loadgen >&2
fi
SERVER=$BIN/livecast-server
PLAYER=$BIN/livecast-player
LOADGEN=$BIN/livecast-loadgen
ulimit -n 65536 2>/dev/null || true

# A data folder of our own: the generated certificate, the player's known hosts, a users file.
export XDG_DATA_HOME=$OUT/data
mkdir -p "$XDG_DATA_HOME"
echo pw >"$OUT/password"
"$SERVER" user add bench --password-file "$OUT/password" --users "$OUT/users" 2>/dev/null || true

PID=
start_server() { # LOG ARGS...
    local log_file=$1
    shift
    RUST_LOG=warn "$SERVER" --listen "127.0.0.1:$PORT" --tls-listen "127.0.0.1:$TLS_PORT" \
        --video "$VIDEO" --audio tone --captions off "$@" >"$log_file" 2>&1 &
    PID=$!
    for _ in $(seq 300); do
        grep -q '^watch with' "$log_file" 2>/dev/null && { sleep 2; return 0; }
        sleep 0.1
    done
    log "server not ready; see $log_file"
    return 1
}
stop_server() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
}
trap stop_server EXIT

first_picture() { # NAME URL ARGS...
    local name=$1 url=$2
    shift 2
    for i in $(seq "$REPEAT"); do
        "$PLAYER" --headless --no-audio --duration 3 --stats-json "$OUT/fp-$name-$i.json" "$@" "$url" \
            >/dev/null 2>>"$OUT/player.log" || log "player $name $i failed"
    done
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -srm); $(nproc) CPUs"
    echo "binaries: $BIN; video: $VIDEO"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

log "first picture, open server"
start_server "$OUT/server-open.log" --no-auth
plain=rtsp://127.0.0.1:$PORT/live
tls=rtsps://127.0.0.1:$TLS_PORT/live
# The certificate is trusted on first use before the measured runs.
"$PLAYER" --headless --no-audio --duration 1 "$tls" >/dev/null 2>&1 || true
for r in $(seq "$REPEAT"); do
    REPEAT=1 first_picture "udp-$r" "$plain" --transport udp
    REPEAT=1 first_picture "tcp-$r" "$plain" --transport tcp
    REPEAT=1 first_picture "rtsps-$r" "$tls" --transport tcp
    REPEAT=1 first_picture "srtp-$r" "$tls" --transport udp
done
log "CPU per viewer, N=$N"
for mode in udp tcp rtsps srtp; do
    case $mode in
    udp) args=(--url "$plain") ;;
    tcp) args=(--url "$plain" --tcp) ;;
    rtsps) args=(--url "$tls" --tcp) ;;
    srtp) args=(--url "$tls") ;;
    esac
    "$LOADGEN" "${args[@]}" -n "$N" --duration "$WINDOW" --server-pid "$PID" \
        --json "$OUT/cpu-$mode.json" >/dev/null
done
stop_server

log "first picture, Digest"
start_server "$OUT/server-auth.log" --users "$OUT/users"
cred=(--user bench --password-file "$OUT/password")
"$PLAYER" --headless --no-audio --duration 1 "${cred[@]}" "$tls" >/dev/null 2>&1 || true
for r in $(seq "$REPEAT"); do
    REPEAT=1 first_picture "digest-udp-$r" "$plain" --transport udp "${cred[@]}"
    REPEAT=1 first_picture "digest-rtsps-$r" "$tls" --transport tcp "${cred[@]}"
done
stop_server
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

python3 - "$OUT" "$N" <<'EOF'
import glob, json, os, statistics, sys
out, n = sys.argv[1], int(sys.argv[2])
rows = []
for mode in ["udp", "tcp", "rtsps", "srtp", "digest-udp", "digest-rtsps"]:
    v = []
    for f in glob.glob(f"{out}/fp-{mode}-*.json"):
        d = json.load(open(f))
        if d.get("first_frame_ms") is not None:
            v.append(d["first_frame_ms"])
    if v:
        rows.append(f"| {mode} | {len(v)} | {statistics.median(v):.0f} | {min(v):.0f}-{max(v):.0f} |")
print("| first picture | runs | median ms | range ms |\n|---|---:|---:|---:|")
print("\n".join(rows))
# Delivery: the fan-out threads and the tokio workers (RTSP, interleaved writers, TLS), not the
# sources and encoders, which cost the same whoever watches.
print(f"\n| N={n} | clients ok | lost % | server cores | delivery cores | delivery per viewer (ms CPU/s) |")
print("|---|---:|---:|---:|---:|---:|")
for mode in ["udp", "tcp", "rtsps", "srtp"]:
    f = f"{out}/cpu-{mode}.json"
    if os.path.exists(f):
        d = json.load(open(f))
        c = d.get("server_cpu_seconds_per_second") or 0
        t = d.get("server_threads") or {}
        dl = sum(v for k, v in t.items() if "fanout" in k or k.startswith("tokio"))
        print(f"| {mode} | {d['clients_ok']} | {d['loss_percent']:.2f} | {c:.3f} | {dl:.3f} | {1000 * dl / n:.2f} |")
EOF
