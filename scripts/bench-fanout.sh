#!/usr/bin/env bash
# Fan-out benchmark (issue 2): livecast-server against GStreamer's gst-rtsp-server, side by side
# in one run, 720p30 H.264 at 2 Mbit/s + Opus, N UDP clients on loopback.
#
# For each N, each server is started on its own, measured by livecast-loadgen (N sessions,
# RTP/UDP, a fixed window once all are playing; the server's CPU from /proc, in total and per
# thread) and stopped, ours then GStreamer's, so the two see the same machine within a minute of
# each other and neither's encoder runs during the other's measurement.
#
# Content: our test card encodes to far less than 2 Mbit/s (about 0.4), and GStreamer's ball
# pattern to about 0.2, which would make the load unrealistically light. So ours streams a
# noisy Y4M file (ffmpeg testsrc2 + temporal noise, generated once) and GStreamer its `snow`
# pattern: both encoders then run at their 2 Mbit/s target. The summary reports the rate
# actually received, per client, for both. CONTENT=testsrc runs the built-in sources instead.
#
# usage: scripts/bench-fanout.sh            (N = 1 50 200 500, 10 s window each)
#   NS="1 50" WINDOW=5 OUT=dir scripts/bench-fanout.sh
#   OURS_BEFORE=/path/to/older/livecast-server scripts/bench-fanout.sh   (also measures an older
#   build of ours, as "before", between ours and GStreamer's: before/after in the same run)
# Results: $OUT/{ours,gst}-N.json (livecast-loadgen summaries), $OUT/table.md, $OUT/*.log.
set -euo pipefail
cd "$(dirname "$0")/.."

NS=${NS:-"1 50 200 500"}
WINDOW=${WINDOW:-10}
RAMP_MS=${RAMP_MS:-5}
SIZE=${SIZE:-1280x720}
FPS=${FPS:-30}
BITRATE_KBIT=${BITRATE_KBIT:-2000}
CONTENT=${CONTENT:-noise}
GST_PATTERN=${GST_PATTERN:-snow}
PORT_OURS=${PORT_OURS:-18554}
PORT_GST=${PORT_GST:-18555}
PYTHON=${PYTHON:-/usr/bin/python3}
OURS_BEFORE=${OURS_BEFORE:-}
OUT=${OUT:-target/bench-fanout/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

log() { echo "bench-fanout: $*" >&2; }

log "building (release)"
cargo build --release -p livecast-server -p livecast-loadgen >&2
SERVER=$PWD/target/release/livecast-server
LOADGEN=$PWD/target/release/livecast-loadgen

# 500 sessions x 2 tracks x RTP+RTCP sockets on the loadgen side; the binaries raise their own
# soft limit, this only helps if the hard limit is low.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

if [ "$CONTENT" = noise ]; then
    Y4M=$PWD/target/bench-fanout/noise-${SIZE}-${FPS}.y4m
    if [ ! -s "$Y4M" ]; then
        log "generating $Y4M (10 s of testsrc2 with temporal noise)"
        mkdir -p "$(dirname "$Y4M")"
        ffmpeg -hide_banner -loglevel error -y -f lavfi \
            -i "testsrc2=size=${SIZE}:rate=${FPS},noise=alls=20:allf=t" \
            -t 10 -pix_fmt yuv420p "$Y4M.tmp.y4m"
        mv "$Y4M.tmp.y4m" "$Y4M"
    fi
    OURS_VIDEO=(--video "file:$Y4M")
else
    OURS_VIDEO=(--video testsrc)
    GST_PATTERN=ball
fi

# The reference server with another videotestsrc pattern (its script has the pattern fixed).
GST_SCRIPT=$OUT/gst-rtsp-server.py
sed "s/pattern=ball/pattern=${GST_PATTERN}/" scripts/gst-rtsp-server.py >"$GST_SCRIPT"
grep -q "pattern=${GST_PATTERN} " "$GST_SCRIPT" || {
    log "could not set pattern=${GST_PATTERN} in the GStreamer script"
    exit 1
}

PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# wait_for FILE PATTERN: until a line matches (30 s), or the server has died.
wait_for() {
    for _ in $(seq 300); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$PID" 2>/dev/null || { log "server exited; see $1"; return 1; }
        sleep 0.1
    done
    log "server not ready after 30 s; see $1"
    return 1
}

start_server() { # NAME N
    local log_file=$OUT/$1-$2.log
    case $1 in
    ours | before)
        local bin=$SERVER open=(--no-auth --tls-listen off)
        # An older binary may predate --no-auth (and authentication) or --tls-listen.
        if [ "$1" = before ]; then
            bin=$OURS_BEFORE open=()
            "$bin" --help | grep -q -- --no-auth && open+=(--no-auth)
            "$bin" --help | grep -q -- --tls-listen && open+=(--tls-listen off)
        fi
        RUST_LOG=warn "$bin" "${open[@]}" --listen "127.0.0.1:$PORT_OURS" "${OURS_VIDEO[@]}" --audio tone \
            --size "$SIZE" --fps "$FPS" --bitrate "${BITRATE_KBIT}k" >"$log_file" 2>&1 &
        PID=$!
        wait_for "$log_file" '^watch with'
        URL=rtsp://127.0.0.1:$PORT_OURS/live
        ;;
    gst)
        "$PYTHON" "$GST_SCRIPT" --port "$PORT_GST" --size "$SIZE" --fps "$FPS" \
            --bitrate "$BITRATE_KBIT" >"$log_file" 2>&1 &
        PID=$!
        wait_for "$log_file" '^ready'
        URL=rtsp://127.0.0.1:$PORT_GST/live
        ;;
    esac
    # Let the encoder settle (ours starts encoding at once; GStreamer at the first DESCRIBE,
    # which the ramp and the half second before the window cover).
    sleep 2
}

stop_server() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -srm); $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
    echo "memory: $(free -g | awk '/Mem:/ {print $2 " GiB"}')"
    echo "rustc: $(rustc --version)"
    echo "gstreamer: $(gst-launch-1.0 --version | sed -n 2p)"
    echo "sysctl: $(sysctl -n net.core.rmem_max net.core.wmem_max net.core.netdev_max_backlog | tr '\n' ' ')(rmem_max wmem_max netdev_max_backlog)"
    echo "content: $CONTENT (ours: ${OURS_VIDEO[*]}; GStreamer: videotestsrc pattern=$GST_PATTERN)"
    echo "busiest processes at start:"
    ps -eo pcpu,comm --sort=-pcpu | head -8
} >"$OUT/conditions.txt"
cat "$OUT/conditions.txt" >&2

SERVERS="ours${OURS_BEFORE:+ before} gst"
for N in $NS; do
    for name in $SERVERS; do
        log "$name, N=$N"
        start_server "$name" "$N"
        # Bounded: ramp + window + teardown, with a generous margin.
        limit=$((WINDOW + N * RAMP_MS / 1000 + 60))
        if ! timeout "$limit" "$LOADGEN" --url "$URL" -n "$N" --duration "$WINDOW" \
            --ramp-ms "$RAMP_MS" --server-pid "$PID" --label "$name" \
            --json "$OUT/$name-$N.json" >/dev/null 2>>"$OUT/$name-$N.log"; then
            log "$name N=$N: loadgen reported failures (see $OUT/$name-$N.json / .log)"
        fi
        stop_server
        if [ "$name" != gst ]; then
            # The server logs its count of frames dropped before the fan-out (encoder -> fan-out
            # queue full) at 1, 2, 4, 8...: the last value logged is a lower bound.
            sed 's/\x1b\[[0-9;]*m//g' "$OUT/$name-$N.log" | grep 'fan-out is behind' |
                grep -o 'dropped_frames=[0-9]*' | tail -1 | cut -d= -f2 >"$OUT/$name-$N.framedrops" || true
        fi
    done
done

"$PYTHON" - "$OUT" $NS >"$OUT/table.md" <<'EOF'
import json, os, sys

out, ns = sys.argv[1], [int(n) for n in sys.argv[2:]]

def load(name, n):
    p = os.path.join(out, f"{name}-{n}.json")
    return json.load(open(p)) if os.path.exists(p) else None

def cpu(d):
    return d["server_cpu_seconds_per_second"] if d else None

def fanout(d):
    t = d["server_threads"]
    # one thread per shard since the fan-out is sharded ("video-fanout-0", ...); older builds
    # had one ("video-fanout")
    return sum(v for k, v in t.items() if k.startswith(("video-fanout", "audio-fanout")))

def not_encoding(d):
    # Everything but the sources and the encoders: fan-out, RTSP, RTCP.
    t = d["server_threads"]
    enc = sum(v for k, v in t.items() if k in ("video-encoder", "audio-encoder")
              or (k.startswith("livecast-") and k != "livecast-server"))
    return cpu(d) - enc

def pps(d):
    return sum(t["packets_per_s"] for t in d["tracks"])

def kbit(d, media):
    return next((t["kbit_per_s"] for t in d["tracks"] if t["media"] == media), 0)

def f(x, digits=3):
    return "–" if x is None else f"{x:.{digits}f}"

def framedrops(name, n):
    return open(os.path.join(out, f"{name}-{n}.framedrops")).read().strip() or "0"

def header(*columns):
    print("| " + " | ".join(columns) + " |")
    print("|" + "---:|" * len(columns))

def runs_of(*names):
    """(N, run of each of `names`) for each N at which all of them ran."""
    for n in ns:
        runs = [load(name, n) for name in names]
        if all(runs):
            yield (n, *runs)

base = {name: load(name, ns[0]) for name in ("ours", "gst")}
header("N", "ours CPU s/s", "ours loss %", "gst CPU s/s", "gst loss %", "CPU per client ratio (ours/gst)")
for n in ns:
    o, g = load("ours", n), load("gst", n)
    ratio = None
    if o and g and n > ns[0] and base["ours"] and base["gst"]:
        po = (cpu(o) - cpu(base["ours"])) / (n - ns[0])
        pg = (cpu(g) - cpu(base["gst"])) / (n - ns[0])
        ratio = po / pg if pg > 0 else None
    print(f"| {n} | {f(cpu(o))} | {f(o and o['loss_percent'])} | {f(cpu(g))} | "
          f"{f(g and g['loss_percent'])} | {f(ratio, 2)} |")
print()
header("N", "ours fan-out threads s/s", "ours without sources+encoders s/s", "ours video-encoder s/s",
       "ours marginal ms/s per client", "gst marginal ms/s per client",
       "ours µs per packet", "gst µs per packet", "ours video kbit/s, pkt/s, frames/s per client",
       "gst video kbit/s, pkt/s, frames/s per client", "ours frames dropped (at least)", "loadgen CPU s/s (ours/gst)",
       "machine busy, cores (ours/gst)")
for n, o, g in runs_of("ours", "gst"):
    row = [str(n), f(fanout(o)), f(not_encoding(o)), f(o["server_threads"].get("video-encoder"))]
    for d, b in ((o, base["ours"]), (g, base["gst"])):
        row.append(f(1000 * (cpu(d) - cpu(b)) / (n - ns[0]), 2) if n > ns[0] else "–")
    for d, b in ((o, base["ours"]), (g, base["gst"])):
        extra = pps(d) * n - pps(b) * ns[0]
        row.append(f(1e6 * (cpu(d) - cpu(b)) / extra, 2) if n > ns[0] and extra > 0 else "–")
    for d in (o, g):
        v = next(t for t in d["tracks"] if t["media"] == "video")
        row.append(f"{v['kbit_per_s']:.0f}, {v['packets_per_s']:.0f}, {v.get('frames_per_s', 0):.1f}")
    row.append(framedrops("ours", n))
    row.append(f"{f(o['loadgen_cpu_seconds_per_second'], 2)} / {f(g['loadgen_cpu_seconds_per_second'], 2)}")
    row.append(f"{o['machine']['busy']:.2f} / {g['machine']['busy']:.2f}")
    print("| " + " | ".join(row) + " |")
if load("before", ns[0]):
    print()
    print("Before/after (same run; \"before\" is OURS_BEFORE):")
    print()
    header("N", "before CPU s/s", "after CPU s/s", "before fan-out threads s/s", "after fan-out threads s/s",
           "before tokio s/s", "after tokio s/s", "before loss %", "after loss %", "before frames dropped",
           "after frames dropped")
    for n, b, o in runs_of("before", "ours"):
        print(f"| {n} | {f(cpu(b))} | {f(cpu(o))} | {f(fanout(b))} | {f(fanout(o))} | "
              f"{f(b['server_threads'].get('tokio-rt-worker'))} | {f(o['server_threads'].get('tokio-rt-worker'))} | "
              f"{f(b['loss_percent'])} | {f(o['loss_percent'])} | {framedrops('before', n)} | {framedrops('ours', n)} |")
print()
print("Server memory (resident at the end of the window; per viewer: the growth from the smallest N):")
print()
header("N", "ours RSS MiB", "ours peak MiB", "ours KiB per viewer", "gst RSS MiB", "gst peak MiB", "gst KiB per viewer")
for n in ns:
    row = [str(n)]
    for name in ("ours", "gst"):
        d, b = load(name, n), base[name]
        rss = d and d.get("server_rss_mib")
        row += [f(rss, 1), f(d and d.get("server_peak_rss_mib"), 1)]
        b_rss = b and b.get("server_rss_mib")
        per = 1024 * (rss - b_rss) / (n - ns[0]) if rss and b_rss and n > ns[0] else None
        row.append(f(per, 0))
    print("| " + " | ".join(row) + " |")
print()
print("Where packets were lost (whole run of each N; kernel counters):")
print()
print("| run | lost (seq gaps) | loadgen socket drops | softnet backlog drops | UDP RcvbufErrors | UDP SndbufErrors | UDP MemErrors |")
print("|---|---:|---:|---:|---:|---:|---:|")
for n in ns:
    for name in ("ours", "before", "gst"):
        d = load(name, n)
        if not d:
            continue
        k = d["drops"]
        u = k.get("udp") or {}
        print(f"| {name} N={n} | {d['lost']} | {k.get('loadgen_socket_drops')} | {k.get('softnet_dropped')} | "
              f"{u.get('rcvbuf_errors')} | {u.get('sndbuf_errors')} | {u.get('mem_errors')} |")
EOF
cat "$OUT/table.md"
log "results in $OUT"
