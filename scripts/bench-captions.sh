#!/usr/bin/env bash
# Live-captions benchmark (issue 4, docs/benchmarks.md "Live captions"):
#   1. word error rate of the captions the player receives, on espeak-ng speech (3 voices/speeds),
#      against whisper.cpp's whisper-cli run offline on the same audio (greedy and beam 5);
#   2. delay from the end of each spoken word to its text arriving at the client, against
#      whisper.cpp's stream example (--step 3000 --length 10000) fed the same audio in real time;
#   3. 720p30 with captions on vs --captions off: player fps, server frame drops, CPU per thread.
#
# Usage: scripts/bench-captions.sh            (about 10 min on an idle 2-core machine)
# Env:   OUT=dir  PORT=18610  SKIP_BUILD=1  MAX_LOAD=1.5  LOAD_WAIT_S=600  FPS_WINDOW=40
#        CARGO_TARGET_DIR (default target)  MODEL=~/.local/share/livecast/models/ggml-tiny.en.bin
#        WHISPER_CPP=dir with whisper-cli and whisper-stream (default: built by
#        scripts/build-whisper-cpp.sh into $CARGO_TARGET_DIR/whisper.cpp-1.8.3/bin when absent)
#        SKIP_FPS=1 (no 720p30 runs)  SKIP_WHISPER_CPP=1 (no whisper.cpp comparisons)
# Needs: espeak-ng (libespeak-ng.so.1), sox, python3, the model (scripts/install-model.sh);
# for the comparisons cmake, pip and libsdl2-dev (see scripts/build-whisper-cpp.sh).
# Every process is started under `timeout` and killed by its pid; only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/bench-captions/$(date +%F)}
PORT=${PORT:-18610}
MAX_LOAD=${MAX_LOAD:-1.5}
LOAD_WAIT_S=${LOAD_WAIT_S:-600}
FPS_WINDOW=${FPS_WINDOW:-40}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WHISPER_CPP=${WHISPER_CPP:-$TARGET/whisper.cpp-1.8.3/bin}
MODEL=${MODEL:-$HOME/.local/share/livecast/models/ggml-tiny.en.bin}
METRICS="python3 $ROOT/scripts/caption_metrics.py"
SERVER=$TARGET/release/livecast-server
PLAYER=$TARGET/release/livecast-player
mkdir -p "$OUT"
LOADLOG=$OUT/load.txt
: >"$LOADLOG"

[ -f "$MODEL" ] || { echo "no model at $MODEL (run scripts/install-model.sh)" >&2; exit 1; }
[ "${1:-}" != replay ] || SKIP_BUILD=1 SKIP_WHISPER_CPP=1
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release --locked -p livecast-server -p livecast-player
fi
if [ -z "${SKIP_WHISPER_CPP:-}" ] && [ ! -x "$WHISPER_CPP/whisper-cli" ]; then
    "$ROOT/scripts/build-whisper-cpp.sh" "$(dirname "$WHISPER_CPP")"
fi
[ -z "${SKIP_WHISPER_CPP:-}" ] || WHISPER_CPP=/nonexistent

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Waits (bounded) until the 1-minute load average is below MAX_LOAD; records it.
wait_load() {
    local what=$1 t0=$SECONDS l
    while :; do
        l=$(cut -d' ' -f1 /proc/loadavg)
        if awk -v l="$l" -v m="$MAX_LOAD" 'BEGIN{exit !(l<m)}'; then break; fi
        if (( SECONDS - t0 >= LOAD_WAIT_S )); then
            echo "$(date -u +%T) $what: load still $l after ${LOAD_WAIT_S}s, measuring anyway" | tee -a "$LOADLOG"
            return
        fi
        sleep 10
    done
    echo "$(date -u +%T) $what: load $(cut -d' ' -f1-3 /proc/loadavg) (waited $((SECONDS - t0)) s)" | tee -a "$LOADLOG"
}

# Runs the server (captions debug log) on $1.wav; the text client and the headless player
# connect at once (the speech starts after 2 s of silence), for $2 seconds.
live_run() {
    local name=$1 dur=$2 port=$3
    RUST_LOG=info,livecast_server::captions=debug timeout $((dur + 15)) \
        "$SERVER" --listen 127.0.0.1:$port --video testsrc --audio "file:$OUT/$name.wav" \
        >"$OUT/$name.server.log" 2>&1 &
    local spid=$!
    PIDS+=("$spid")
    # wait for the listener (model load ~0.3 s), at most 1.5 s
    for _ in $(seq 30); do
        grep -q "serving" "$OUT/$name.server.log" 2>/dev/null && break
        sleep 0.05
    done
    timeout $((dur + 10)) $METRICS rtsp-text rtsp://127.0.0.1:$port/live --duration "$dur" \
        --out "$OUT/$name.client.json" &
    local cpid=$!
    PIDS+=("$cpid")
    timeout $((dur + 20)) "$PLAYER" --headless rtsp://127.0.0.1:$port/live --no-audio \
        --duration "$dur" --stats-json "$OUT/$name.player.json" >"$OUT/$name.player.log" 2>&1 || true
    wait "$cpid" || true
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# The speech: 3 texts, 3 voices/speeds, 2 s silence before and 15 s after (no text expected).
cat >"$OUT/town.txt" <<'EOF'
Good evening and welcome to the weekly town meeting. Tonight we will talk about the new library on Main Street. The building will open in March, and it will have a large reading room for children. We also need volunteers to help move the books from the old building. Please write your name on the list by the door.
EOF
cat >"$OUT/weather.txt" <<'EOF'
The weather this weekend will be cold and windy along the coast. Expect light rain on Saturday morning, followed by clear skies in the afternoon. On Sunday the temperature will drop below freezing overnight, so remember to cover your plants. Drivers should take care on the bridges, where the roads may be icy early in the day.
EOF
cat >"$OUT/bread.txt" <<'EOF'
To make a simple loaf of bread, mix flour, water, salt and yeast in a large bowl. Knead the dough for ten minutes until it feels smooth. Leave it in a warm place for one hour, then shape it and put it in the oven. Bake it for about forty minutes, and let it cool before you cut it.
EOF
FILES=${FILES:-"town:en-us:150 weather:en-gb:130 bread:en-us+f3:170"}

# ---------------------------------------------------------------------------------------------
# `replay [POLICY]`: no server; the 3 speech files and 5 more through the captioner's lockstep
# replay (server/src/captions/replay.rs) on a simulated clock, whisper passes costing
# COST=base,per_s,beam_factor ms (calibrated on the live runs of an idle machine).
if [ "${1:-}" = replay ]; then
    echo "The city council voted last night to build a new bridge over the river. Work will start in the spring and should take about two years. During that time, buses will use the old road through the park. The mayor said the project will create many jobs for local workers." >"$OUT/news.txt"
    echo "Spring is the best time to plant tomatoes in your garden. Choose a sunny spot and dig the soil deeply. Water the young plants every morning, but do not let the roots stand in water. In about eight weeks you can pick the first ripe fruit." >"$OUT/garden.txt"
    for n in town weather bread; do cp "$OUT/$n.txt" "$OUT/${n}2.txt"; done
    MORE="news:en-us:160 garden:en-gb:140 town2:en-gb+m3:165 weather2:en-us+f2:145 bread2:en-us:130"
    wavs=()
    for spec in $FILES $MORE; do
        IFS=: read -r name voice speed <<<"$spec"
        $METRICS synth --voice "$voice" --speed "$speed" --text-file "$OUT/$name.txt" \
            --pad-before 2 --pad-after 3 --wav "$OUT/$name.wav" --words "$OUT/$name.words.json" >/dev/null
        wavs+=("$OUT/$name.wav")
    done
    LIVECAST_REPLAY="${wavs[*]}" LIVECAST_REPLAY_OUT="$OUT/replay" LIVECAST_REPLAY_POLICY="${2:-}" \
        LIVECAST_REPLAY_COST=${COST:-330,67,2.3} LIVECAST_MODEL="$MODEL" \
        RUST_LOG=livecast_server::captions=debug \
        cargo test --release --locked -p livecast-server --lib captions::replay -- --ignored --nocapture \
        >"$OUT/replay.log" 2>&1
    results=()
    for w in "${wavs[@]}"; do
        name=$(basename "$w" .wav)
        $METRICS analyze --name "$name" --words "$OUT/$name.words.json" \
            --client "$OUT/replay/$name.replay.json" --clock wav \
            --out "$OUT/replay/$name.result.json" >/dev/null
        results+=("$OUT/replay/$name.result.json")
    done
    echo "policy ${2:-(defaults)}, cost ${COST:-330,67,2.3}"
    echo -n "benchmark files: "; $METRICS pool "${results[@]:0:3}"
    echo -n "5 more files:    "; $METRICS pool "${results[@]:3}"
    exit 0
fi

port=$PORT
results=()
for spec in $FILES; do
    IFS=: read -r name voice speed <<<"$spec"
    $METRICS synth --voice "$voice" --speed "$speed" --text-file "$OUT/$name.txt" \
        --pad-before 2 --pad-after 15 --wav "$OUT/$name.wav" --words "$OUT/$name.words.json"
    sox "$OUT/$name.wav" -r 16000 -c 1 -b 16 "$OUT/$name.16k.wav"
    sox "$OUT/$name.wav" -t f32 -r 16000 -c 1 "$OUT/$name.f32"
    speech=$(python3 -c "import json;print(int(json.load(open('$OUT/$name.words.json'))['speech_s']+0.999))")
    # Live: stop 8 s after the speech ends, before the WAV loops (2 + speech + 15 s).
    dur=$((2 + speech + 8))
    wait_load "$name live"
    live_run "$name" "$dur" "$port"
    port=$((port + 1))
    extra=()
    if [ -x "$WHISPER_CPP/whisper-cli" ]; then
        echo "$(date -u +%T) $name whisper-cli (WER only, not timed): load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOADLOG"
        timeout 300 "$WHISPER_CPP/whisper-cli" -m "$MODEL" -f "$OUT/$name.16k.wav" -t 1 -bs 1 -bo 1 \
            -ojf -of "$OUT/$name.cli-greedy" -np >/dev/null 2>&1
        timeout 300 "$WHISPER_CPP/whisper-cli" -m "$MODEL" -f "$OUT/$name.16k.wav" -t 1 \
            -ojf -of "$OUT/$name.cli-beam" -np >/dev/null 2>&1
        # the same speech with only 2 s of silence after it (whisper alone has no VAD)
        sox "$OUT/$name.16k.wav" "$OUT/$name.16k-trimmed.wav" trim 0 $((2 + speech + 2))
        timeout 300 "$WHISPER_CPP/whisper-cli" -m "$MODEL" -f "$OUT/$name.16k-trimmed.wav" -t 1 -bs 1 -bo 1 \
            -ojf -of "$OUT/$name.cli-greedy-trimmed" -np >/dev/null 2>&1
        timeout 300 "$WHISPER_CPP/whisper-cli" -m "$MODEL" -f "$OUT/$name.16k-trimmed.wav" -t 1 \
            -ojf -of "$OUT/$name.cli-beam-trimmed" -np >/dev/null 2>&1
        extra+=(--cli-greedy "$OUT/$name.cli-greedy.json" --cli-beam "$OUT/$name.cli-beam.json"
                --cli-greedy-trimmed "$OUT/$name.cli-greedy-trimmed.json"
                --cli-beam-trimmed "$OUT/$name.cli-beam-trimmed.json")
    fi
    if [ -x "$WHISPER_CPP/whisper-stream" ]; then
        wait_load "$name whisper-stream"
        # SDL's disk driver reads the raw f32 file in real time (no microphone needed).
        SDL_AUDIODRIVER=disk SDL_DISKAUDIOFILEIN="$OUT/$name.f32" timeout $((dur + 15)) \
            $METRICS stamp-lines --out "$OUT/$name.stream.json" -- \
            timeout $((dur + 5)) "$WHISPER_CPP/whisper-stream" -m "$MODEL" --step 3000 --length 10000 -t 1 || true
        extra+=(--stream "$OUT/$name.stream.json")
    fi
    $METRICS analyze --name "$name" --words "$OUT/$name.words.json" \
        --player "$OUT/$name.player.json" --client "$OUT/$name.client.json" \
        --server-log "$OUT/$name.server.log" "${extra[@]}" --out "$OUT/$name.result.json"
    results+=("$OUT/$name.result.json")
done
if [ ${#results[@]} -gt 0 ]; then
    $METRICS summary "${results[@]}" | tee "$OUT/summary.md"
fi

# ---------------------------------------------------------------------------------------------
# 720p30 with captions on vs off: the speech file loops, the player watches FPS_WINDOW s.
fps_run() {
    local mode=$1 port=$2
    wait_load "fps captions=$mode"
    RUST_LOG=info,livecast_server::captions=debug timeout $((FPS_WINDOW + 20)) \
        "$SERVER" --listen 127.0.0.1:$port --video testsrc --audio "file:$OUT/town.wav" \
        --size 1280x720 --fps 30 --captions "$mode" >"$OUT/fps-$mode.server.log" 2>&1 &
    local spid=$!
    PIDS+=("$spid")
    sleep 1
    timeout $((FPS_WINDOW + 20)) "$PLAYER" --headless rtsp://127.0.0.1:$port/live --no-audio \
        --duration "$FPS_WINDOW" --stats-json "$OUT/fps-$mode.player.json" >"$OUT/fps-$mode.player.log" 2>&1 &
    local ppid=$!
    PIDS+=("$ppid")
    sleep 2
    # $spid is `timeout`; the server is its child
    local server_pid
    server_pid=$(pgrep -P "$spid" | head -1)
    $METRICS cpu-threads "$server_pid" $((FPS_WINDOW - 4)) --out "$OUT/fps-$mode.cpu.json" >/dev/null
    wait "$ppid" || true
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    python3 - "$OUT" "$mode" <<'EOF'
import json, re, sys
out, mode = sys.argv[1], sys.argv[2]
p = json.load(open(f"{out}/fps-{mode}.player.json"))
c = json.load(open(f"{out}/fps-{mode}.cpu.json"))
log = re.sub(r"\x1b\[[0-9;]*m", "", open(f"{out}/fps-{mode}.server.log", errors="replace").read())
drops = [int(x) for x in re.findall(r"dropping frames dropped=(\d+)", log)]
skips = [int(x) for x in re.findall(r"testsrc fell behind real time: skipping frames skipped=\d+ total=(\d+)", log)]
adrop = [int(x) for x in re.findall(r"dropped_frames=(\d+)", log)]
passes = [int(x) for x in re.findall(r"audio_ms=\d+ ms=(\d+)", log)]
th = c["threads"]
r = {"captions": mode, "player_fps_decoded": p["video"]["frames_decoded"] / p["duration_s"],
     "player_fps_shown": p["video"]["frames_shown"] / p["duration_s"],
     "duration_s": p["duration_s"], "frames_decoded": p["video"]["frames_decoded"],
     "server_frames_dropped_before_fanout": max(drops, default=0),
     "testsrc_frames_skipped": max(skips, default=0),
     "caption_audio_frames_dropped": max(adrop, default=0),
     "whisper_passes": len(passes), "whisper_pass_ms_max": max(passes, default=0),
     "server_cpu_s_per_s": c["process_cpu_s_per_s"], "load_start": c["load_start"],
     "load_end": c["load_end"], "threads": {k: round(v, 3) for k, v in th.items() if v >= 0.005}}
json.dump(r, open(f"{out}/fps-{mode}.result.json", "w"), indent=1)
print(json.dumps(r))
EOF
}
if [ -z "${SKIP_FPS:-}" ]; then
fps_run on $((PORT + 10))
fps_run off $((PORT + 11))
fi
echo "results in $OUT (summary.md, *.result.json, load.txt)"
