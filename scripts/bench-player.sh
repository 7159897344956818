#!/usr/bin/env bash
# Player benchmarks (issue 3): livecast-player vs GStreamer's RTSP client on the same stream
# from livecast-server, in one run. Prints a table at the end; raw results in $OUT.
#
#   scripts/bench-player.sh                  # everything, about 35 min
#   PHASES="latency cpu" scripts/bench-player.sh
#
# Phases (each bounded in time; every process started here is killed by pid at the end):
#   latency  end-to-end latency p50/p95 and time to first picture, test card 720p30,
#            ours then gst, $REPEAT times, $LAT_S s each (gst also reads the time drawn on
#            the card: a cross-check of the RTCP-SR-based capture time)
#            then $FIRST_N short runs of each for time to first picture
#   cpu      CPU s/s of each client process over a $CPU_S s window after $CPU_WARM s:
#            ours (headless: receive, record, decode, RGBA, Opus), gst video
#            (avdec_h264 ! videoconvert ! RGBA), gst video + audio (+ opusdec); on the test card
#            (~0.4 Mbit/s) and on a noise Y4M that really uses 2 Mbit/s
#   seek     livecast-player-bench: 200 random seeks to an RGBA picture in a 1 h recording
#   memory   both clients side by side for $MEM_S s on the 2 Mbit/s noise stream, VmRSS every
#            10 s
#
# Before each measurement it waits (at most $LOAD_WAIT s the first time, $LOAD_WAIT_NEXT s after) for the 1-minute load average to
# fall below $LOAD_MAX, and records the load.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-target/bench-player/$(date -u +%Y-%m-%d)}
PORT=${PORT:-18560}
PHASES=${PHASES:-latency cpu seek memory}
REPEAT=${REPEAT:-2}
LAT_S=${LAT_S:-20}
CPU_WARM=${CPU_WARM:-5}
CPU_S=${CPU_S:-20}
MEM_S=${MEM_S:-1500}
SEEKS=${SEEKS:-200}
FIRST_N=${FIRST_N:-8}
LOAD_MAX=${LOAD_MAX:-1.2}
LOAD_WAIT=${LOAD_WAIT:-600}           # before the first measurement
LOAD_WAIT_NEXT=${LOAD_WAIT_NEXT:-120} # before each of the others
PY=/usr/bin/python3 # Debian's, with python3-gi (not a pyenv one)
BIN_DIR=${BIN_DIR:-target/release} # NO_BUILD=1 BIN_DIR=DIR measures binaries built elsewhere
SERVER=$BIN_DIR/livecast-server
PLAYER=$BIN_DIR/livecast-player
SEEKBENCH=$BIN_DIR/livecast-player-bench
PLAYER_BASE=${PLAYER_BASE:-} # another livecast-player build, measured alongside in the latency phase
GST=scripts/gst-client-latency.py
URL=rtsp://127.0.0.1:$PORT/live
Y4M=$PWD/target/bench-fanout/noise-1280x720-30.y4m
mkdir -p "$OUT"
LOG=$OUT/log.txt
: >"$LOG"

say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release --locked -p livecast-server -p livecast-player
fi

load1() { cut -d' ' -f1 /proc/loadavg; }
# wait_load NAME: waits until load1 < LOAD_MAX (at most LOAD_WAIT s); records the load.
wait_load() {
    local t=0
    while awk -v l="$(load1)" -v m="$LOAD_MAX" 'BEGIN{exit !(l >= m)}' && [ "$t" -lt "$LOAD_WAIT" ]; do
        sleep 5
        t=$((t + 5))
    done
    LOAD_WAIT=$LOAD_WAIT_NEXT
    say "$1: load average $(cut -d' ' -f1-3 /proc/loadavg) (waited ${t}s)"
    echo "$1 $(cut -d' ' -f1-3 /proc/loadavg) waited=$t" >>"$OUT/load.txt"
}

SERVER_PID=
# start_server testsrc|noise
start_server() {
    stop_server
    local video=testsrc
    if [ "$1" = noise ]; then
        if [ ! -f "$Y4M" ]; then
            say "generating $Y4M (10 s of ffmpeg testsrc2 + temporal noise)"
            mkdir -p "$(dirname "$Y4M")"
            timeout 300 ffmpeg -hide_banner -loglevel error -y -f lavfi \
                -i "testsrc2=size=1280x720:rate=30,noise=alls=20:allf=t" \
                -t 10 -pix_fmt yuv420p "$Y4M.tmp.y4m"
            mv "$Y4M.tmp.y4m" "$Y4M"
        fi
        video=file:$Y4M
    fi
    # Bounded: the whole run is shorter than this.
    timeout $((MEM_S + 900)) "$SERVER" --no-auth --tls-listen off --listen 127.0.0.1:$PORT --video "$video" --audio tone \
        --size 1280x720 --fps 30 --bitrate 2M --idr-interval 2 >>"$OUT/server-$1.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
        sleep 0.2
    done
    sleep 2 # encoder running, first IDR long gone: clients join mid-GOP like real viewers
    say "server ($1) pid $SERVER_PID"
}
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}

ours() { # ours SECONDS JSON
    timeout $(($1 + 30)) "$PLAYER" --headless "$URL" --no-audio --duration "$1" --stats-json "$2" \
        2>>"$OUT/player.log"
}
gst() { # gst SECONDS JSON [options]
    local s=$1 j=$2
    shift 2
    timeout $((s + 30)) "$PY" "$GST" "$URL" --duration "$s" --json "$j" "$@" >/dev/null 2>>"$OUT/gst.log"
}

leaf() { # the process at the bottom of PID's chain of first children (subshell -> timeout -> client)
    local p=$1 c
    while c=$(pgrep -o -P "$p"); do p=$c; done
    echo "$p"
}
# bg_client ours|gst ARGS...: starts the client in the background; sets CLIENT (its pid) and JOB.
bg_client() {
    local kind=$1
    shift
    "$kind" "$@" &
    JOB=$!
    PIDS+=("$JOB")
    sleep 0.5
    CLIENT=$(leaf "$JOB")
    PIDS+=("$CLIENT")
}

ticks() { # utime+stime of PID (clock ticks), whole process
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
busy() { # total non-idle jiffies of the machine
    awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat
}
# cpu_window NAME PID: CPU s/s of PID over [CPU_WARM, CPU_WARM + CPU_S] s of its life.
cpu_window() {
    local name=$1 pid=$2 hz
    hz=$(getconf CLK_TCK)
    sleep "$((CPU_WARM - 1))" # bg_client already waited 0.5 s
    local c0 b0 t0 c1 b1 t1
    c0=$(ticks "$pid") b0=$(busy) t0=$(date +%s.%N)
    sleep "$CPU_S"
    c1=$(ticks "$pid") b1=$(busy) t1=$(date +%s.%N)
    awk -v n="$name" -v c0="$c0" -v c1="$c1" -v b0="$b0" -v b1="$b1" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
        'BEGIN{printf "%s %.3f %.2f\n", n, (c1-c0)/hz/(t1-t0), (b1-b0)/hz/(t1-t0)}' >>"$OUT/cpu.txt"
}

for phase in $PHASES; do
    case $phase in
    latency)
        start_server testsrc
        for r in $(seq "$REPEAT"); do
            wait_load "latency-ours-$r"
            ours "$LAT_S" "$OUT/latency-ours-$r.json"
            if [ -n "$PLAYER_BASE" ]; then
                wait_load "latency-base-$r"
                PLAYER=$PLAYER_BASE ours "$LAT_S" "$OUT/latency-base-$r.json"
            fi
            wait_load "latency-gst-$r"
            gst "$LAT_S" "$OUT/latency-gst-$r.json" --ocr
        done
        # Time to first picture varies with where in the 2 s GOP the client joins: more samples.
        wait_load first-picture
        for r in $(seq "$FIRST_N"); do
            ours 3 "$OUT/first-ours-$r.json"
            gst 3 "$OUT/first-gst-$r.json"
        done
        ;;
    cpu)
        : >"$OUT/cpu.txt"
        for content in testsrc noise; do
            start_server $content
            total=$((CPU_WARM + CPU_S + 1))
            for client in "ours" "gst-video" "gst-av"; do
                wait_load "cpu-$client-$content"
                case $client in
                ours) bg_client ours "$total" "$OUT/cpu-ours-$content.json" ;;
                gst-video) bg_client gst "$total" "$OUT/cpu-gst-video-$content.json" --rgba ;;
                gst-av) bg_client gst "$total" "$OUT/cpu-gst-av-$content.json" --rgba --audio ;;
                esac
                cpu_window "$client-$content" "$CLIENT"
                wait "$JOB" || true
            done
        done
        stop_server
        ;;
    seek)
        stop_server
        wait_load seek
        timeout 1200 "$SEEKBENCH" --duration-s 3600 --seeks "$SEEKS" --cold --json "$OUT/seek.json" \
            | tee -a "$LOG"
        ;;
    memory)
        start_server noise
        wait_load memory
        bg_client ours "$MEM_S" "$OUT/memory-ours.json"
        op=$CLIENT oj=$JOB
        bg_client gst "$MEM_S" "$OUT/memory-gst.json" --rgba --audio
        gp=$CLIENT gj=$JOB
        echo "t_s ours_rss_kib gst_rss_kib ours_cpu_ticks gst_cpu_ticks load1" >"$OUT/memory.txt"
        start=$(date +%s)
        while kill -0 "$op" 2>/dev/null || kill -0 "$gp" 2>/dev/null; do
            now=$(($(date +%s) - start))
            o=$(awk '/^VmRSS/{print $2}' "/proc/$op/status" 2>/dev/null || echo NA)
            g=$(awk '/^VmRSS/{print $2}' "/proc/$gp/status" 2>/dev/null || echo NA)
            echo "$now ${o:-NA} ${g:-NA} $(ticks "$op") $(ticks "$gp") $(load1)" >>"$OUT/memory.txt"
            sleep 10
        done
        wait "$oj" "$gj" || true
        stop_server
        ;;
    esac
done
stop_server

"$PY" - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import json, os, sys
out = sys.argv[1]
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
def f(x, d=1):
    return "–" if x is None else f"{x:.{d}f}"
rows = []
r = 1
while load(f"latency-ours-{r}.json") or load(f"latency-gst-{r}.json"):
    o, g = load(f"latency-ours-{r}.json") or {}, load(f"latency-gst-{r}.json") or {}
    ol, gl = o.get("latency_ms") or {}, g.get("latency_ms") or {}
    ocr = g.get("ocr", {})
    rows.append((r, o, g, ol, gl, ocr))
    r += 1
if rows:
    print("## latency and first picture (test card 720p30)")
    print("| run | ours p50 | ours p95 | ours first picture | ours frames | gst p50 | gst p95 | gst first picture (from exec) | gst frames | gst picture-clock p50/p95 | drawn − SR p50 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r, o, g, ol, gl, ocr in rows:
        ol_ = ocr.get("latency_ms", {})
        print(f"| {r} | {f(ol.get('p50'))} | {f(ol.get('p95'))} | {f(o.get('first_frame_ms'),0)} | {o.get('video',{}).get('frames_decoded')} "
              f"| {f(gl.get('p50'))} | {f(gl.get('p95'))} | {f(g.get('first_frame_ms'),0)} ({f(g.get('first_frame_from_exec_ms'),0)}) | {g.get('video',{}).get('frames_decoded')} "
              f"| {f(ol_.get('p50'),0)} / {f(ol_.get('p95'),0)} | {f(ocr.get('drawn_minus_sr_ms',{}).get('p50'),2)} |")
for r in range(1, 100):
    o = load(f"latency-ours-{r}.json")
    if not o:
        break
    b = load(f"latency-base-{r}.json") or {}
    bl = b.get("latency_ms") or {}
    if r == 1:
        print("\n| run | ours audio p50 / p95 | ours A/V offset | ours audio underruns | base p50 / p95 | base A/V offset |")
        print("|---|---:|---:|---:|---:|---:|")
    al = o.get("audio_latency_ms") or {}
    print(f"| {r} | {f(al.get('p50'))} / {f(al.get('p95'))} | {f(o.get('av_offset_ms'))} | {o.get('audio',{}).get('underruns')} "
          f"| {f(bl.get('p50'))} / {f(bl.get('p95'))} | {f(b.get('av_offset_ms'))} |")
fo = [load(f"first-ours-{r}.json") for r in range(1, 100)]
fg = [load(f"first-gst-{r}.json") for r in range(1, 100)]
fo = sorted(x["first_frame_ms"] for x in fo if x and x.get("first_frame_ms") is not None)
fg = sorted(x["first_frame_ms"] for x in fg if x and x.get("first_frame_ms") is not None)
fge = [load(f"first-gst-{r}.json") for r in range(1, 100)]
fge = sorted(x["first_frame_from_exec_ms"] for x in fge if x and x.get("first_frame_from_exec_ms") is not None)
if fo or fg:
    def ms(v):
        return "–" if not v else f"median {v[len(v)//2]:.0f}, min {v[0]:.0f}, max {v[-1]:.0f} (n={len(v)})"
    print(f"\nfirst picture, short runs: ours {ms(fo)}; gst from PLAYING {ms(fg)}; gst from exec {ms(fge)}")
p = os.path.join(out, "cpu.txt")
if os.path.exists(p) and os.path.getsize(p):
    print("\n## CPU, s/s of the client process (machine busy, cores)")
    for line in open(p):
        n, c, b = line.split()
        j = load(f"cpu-{n}.json") or {}
        frames = j.get("video", {}).get("frames_decoded")
        print(f"{n:22s} {c} s/s   machine {b}   frames in the whole run: {frames}")
s = load("seek.json")
if s:
    print("\n## seek to RGBA picture, 1 h recording")
    for k in ("warm", "cold"):
        v = s.get(k)
        if v:
            print(f"{k}: p50 {v['p50_ms']:.1f} ms, p95 {v['p95_ms']:.1f}, p99 {v['p99_ms']:.1f}, max {v['max_ms']:.1f}; "
                  f"frames decoded {v['mean_frames_decoded']:.1f} avg; decode {v['mean_decode_ms']:.1f} ms, read {v['mean_read_ms']:.2f} ms avg")
p = os.path.join(out, "memory.txt")
if os.path.exists(p):
    rows = [l.split() for l in open(p)][1:]
    print("\n## resident memory (MiB)")
    for col, name in ((1, "ours"), (2, "gst")):
        pts = [(float(r[0]), float(r[col]) / 1024) for r in rows if r[col] != "NA"]
        if len(pts) < 4:
            continue
        fit = [p for p in pts if p[0] >= 60] or pts
        n = len(fit)
        mx = sum(x for x, _ in fit) / n
        my = sum(y for _, y in fit) / n
        sxx = sum((x - mx) ** 2 for x, _ in fit)
        slope = sum((x - mx) * (y - my) for x, y in fit) / sxx if sxx else 0.0
        at2h = my + slope * (7200 - mx)
        print(f"{name}: at {pts[0][0]:.0f} s {pts[0][1]:.1f}, at 60 s {fit[0][1]:.1f}, at {pts[-1][0]:.0f} s {pts[-1][1]:.1f}, "
              f"max {max(y for _, y in pts):.1f}; slope (from 60 s) {slope*3600:.2f} MiB/h; linear extrapolation to 2 h {at2h:.1f}")
EOF
cat "$OUT/load.txt" >>"$OUT/summary.txt" 2>/dev/null || true
say "done: $OUT"
