#!/usr/bin/env bash
# Live-captions benchmark (docs/benchmarks.md "Live captions"), on the evaluation set of
# scripts/caption_evalset.py (sentences nobody tuned on: several voices and engines, speeds,
# pauses, noise; real human speech):
#
#   scripts/bench-captions.sh [live]        the TEST set through the real livecast-server and
#       the headless livecast-player, file by file: word error rate of the captions the player
#       received and delay from the end of each spoken word to its text arriving, against
#       whisper.cpp's whisper-cli run offline on the same files with the same model (default
#       settings: beam 5; and greedy), pooled and per class (voice, speed, pause, noise); the
#       files with no speech (noise, music) must give no text; then 720p30 with captions on vs
#       off (player frame rate, CPU per thread). About 20 min on an idle 2-core machine.
#   scripts/bench-captions.sh replay [POLICY] [SET]   no server: SET (tune, the default, or test)
#       through the captioner's lockstep replay (server/src/captions/replay.rs) on a simulated
#       clock whose whisper passes cost COST=base,per_s,beam ms (calibrated on live runs of an
#       idle machine, so that runs do not depend on the load), two files at a time; the same
#       report against whisper-cli. Every knob of the policy is chosen with this on the tuning
#       set (POLICY: key=value,... see replay.rs).
#
# Env:   OUT=dir  PORT=18610  SKIP_BUILD=1  MAX_LOAD=1.5  LOAD_WAIT_S=600  FPS_WINDOW=40
#        MODEL=~/.local/share/livecast/models/ggml-tiny.en.bin (ggml-base.bin: the multilingual
#        base model, scripts/install-model.sh --base)  CARGO_TARGET_DIR (default target)
#        WHISPER_CPP=dir with whisper-cli (default: built by scripts/build-whisper-cpp.sh)
#        SKIP_FPS=1 (no 720p30 runs)  FILES="name ..." (a subset of the set's files)
#        SERVER_ARGS="--caption-accuracy high" (more livecast-server options for the live runs)
#        COST (replay; default 330,67,1.7: tiny.en, one thread, this machine; a beam-5 pass costs
#        1.7 greedy ones with whisper.cpp 1.8.3, which decodes the beams as one batch)
# Needs: espeak-ng, festival + festvox-kallpc16k, sox, python3, pip (the human speech sample),
# cmake (whisper-cli), the model (scripts/install-model.sh).
# Every process is started under `timeout` and killed by its pid; only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-live}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
MODEL=${MODEL:-$HOME/.local/share/livecast/models/ggml-tiny.en.bin}
MODEL_NAME=$(basename "$MODEL" .bin)
OUT=${OUT:-$TARGET/bench-captions/$(date +%F)-$MODEL_NAME}
PORT=${PORT:-18610}
SERVER_ARGS=${SERVER_ARGS:-}
MAX_LOAD=${MAX_LOAD:-1.5}
LOAD_WAIT_S=${LOAD_WAIT_S:-600}
FPS_WINDOW=${FPS_WINDOW:-40}
WHISPER_CPP=${WHISPER_CPP:-$TARGET/whisper.cpp-1.8.3/bin}
METRICS="python3 $ROOT/scripts/caption_metrics.py"
EVALSET="python3 $ROOT/scripts/caption_evalset.py"
SERVER=$TARGET/release/livecast-server
PLAYER=$TARGET/release/livecast-player
SET_DIR=$TARGET/bench-captions/evalset
mkdir -p "$OUT"
LOADLOG=$OUT/load.txt
: >"$LOADLOG"

[ -f "$MODEL" ] || { echo "no model at $MODEL (run scripts/install-model.sh)" >&2; exit 1; }
if [ -z "${SKIP_BUILD:-}" ] && [ "$MODE" != replay ]; then
    cargo build --release --locked -p livecast-server -p livecast-player
fi
[ -x "$WHISPER_CPP/whisper-cli" ] || "$ROOT/scripts/build-whisper-cpp.sh" "$(dirname "$WHISPER_CPP")"

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

# The evaluation set (both halves, the human sample, the no-speech files), made once.
if [ ! -f "$SET_DIR/manifest.json" ]; then
    $EVALSET build --out "$SET_DIR" --set both --jfk --whisper-cli "$WHISPER_CPP/whisper-cli" \
        --model "$MODEL"
fi
SET=${3:-tune}
[ "$MODE" = replay ] || SET=test
names() {
    python3 -c "import json,sys; print(' '.join(f['name'] for f in json.load(open(sys.argv[1]))['files'] if f['set']==sys.argv[2]))" \
        "$SET_DIR/manifest.json" "$SET"
}
FILES=${FILES:-$(names)}

# whisper-cli offline on each file, once per model: default settings (beam 5) and greedy.
OFF=$TARGET/bench-captions/offline-$MODEL_NAME
mkdir -p "$OFF"
for name in $FILES; do
    for kind in beam greedy; do
        [ -f "$OFF/$name.cli-$kind.json" ] && continue
        opts=(); [ $kind = greedy ] && opts=(-bs 1 -bo 1)
        timeout 600 "$WHISPER_CPP/whisper-cli" -m "$MODEL" -f "$SET_DIR/$name.wav" -t 2 "${opts[@]}" \
            -ojf -of "$OFF/$name.cli-$kind" -np >/dev/null 2>&1
    done
done

analyze() {  # name, out, extra args
    local name=$1 out=$2; shift 2
    $METRICS analyze --numbers --name "$name" --words "$SET_DIR/$name.words.json" \
        --cli-beam "$OFF/$name.cli-beam.json" --cli-greedy "$OFF/$name.cli-greedy.json" \
        --out "$out" "$@" >/dev/null
}

report() {  # live key, results...
    local key=$1; shift
    echo "## $SET set, $MODEL_NAME, live key $key; against whisper-cli default (beam 5)" | tee "$OUT/report.md"
    $EVALSET report --manifest "$SET_DIR/manifest.json" --set "$SET" --results "$@" \
        --live-key "$key" --offline-key wer_whisper_cli_beam --json "$OUT/report.json" | tee -a "$OUT/report.md"
    echo "## against whisper-cli greedy" | tee -a "$OUT/report.md"
    $EVALSET report --manifest "$SET_DIR/manifest.json" --set "$SET" --results "$@" \
        --live-key "$key" --offline-key wer_whisper_cli_greedy | head -13 | tee -a "$OUT/report.md"
}

# ---------------------------------------------------------------------------------------------
if [ "$MODE" = replay ]; then
    POLICY=${2:-}
    COST=${COST:-330,67,1.7}
    RUNS=$OUT/replay-$(echo "${POLICY:-default}" | tr ',=' '_-')
    mkdir -p "$RUNS"
    # the test binary, built once (cargo test --no-run), then two replays at a time
    cargo test --release --locked -p livecast-server --lib --no-run >"$RUNS/build.log" 2>&1
    BIN=$(sed -n 's/.*Executable unittests src\/lib.rs (\(.*\))/\1/p' "$RUNS/build.log")
    [ -x "$BIN" ] || { echo "no test binary: $RUNS/build.log" >&2; exit 1; }
    wavs=()
    for name in $FILES; do wavs+=("$SET_DIR/$name.wav"); done
    half=$(( (${#wavs[@]} + 1) / 2 ))
    t0=$SECONDS
    for part in 0 1; do
        if [ $part = 0 ]; then list=("${wavs[@]:0:$half}"); else list=("${wavs[@]:$half}"); fi
        [ ${#list[@]} -gt 0 ] || continue
        LIVECAST_REPLAY="${list[*]}" LIVECAST_REPLAY_OUT="$RUNS" LIVECAST_REPLAY_POLICY="$POLICY" \
            LIVECAST_REPLAY_COST=$COST LIVECAST_MODEL="$MODEL" \
            RUST_LOG=livecast_server::captions=debug \
            timeout 3600 "$BIN" captions::replay --ignored --nocapture >"$RUNS/replay-$part.log" 2>&1 &
        PIDS+=("$!")
    done
    wait
    results=()
    for name in $FILES; do
        analyze "$name" "$RUNS/$name.result.json" --client "$RUNS/$name.replay.json" --clock wav
        results+=("$RUNS/$name.result.json")
    done
    echo "policy ${POLICY:-(defaults)}, cost $COST, $((SECONDS - t0)) s" | tee "$OUT/policy.txt"
    OUT=$RUNS report wer_client "${results[@]}"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Live: the server streams each file (with 12 s more silence after it, so the file does not
# loop while the last words are captioned); the headless player and the text client watch.
live_run() {
    local name=$1 wav=$2 dur=$3 port=$4
    RUST_LOG=info,livecast_server::captions=debug,livecast_server::pipeline=debug timeout $((dur + 15)) \
        "$SERVER" --no-auth --tls-listen off --listen 127.0.0.1:$port --video testsrc --audio "file:$wav" --model "$MODEL" \
        --captions on $SERVER_ARGS >"$OUT/$name.server.log" 2>&1 &
    local spid=$!
    PIDS+=("$spid")
    for _ in $(seq 60); do
        grep -q "rtsp://127.0.0.1:$port/live" "$OUT/$name.server.log" 2>/dev/null && break
        sleep 0.05
    done
    timeout $((dur + 10)) $METRICS rtsp-text rtsp://127.0.0.1:$port/live --duration "$dur" \
        --out "$OUT/$name.client.json" >/dev/null &
    local cpid=$!
    PIDS+=("$cpid")
    timeout $((dur + 20)) "$PLAYER" --headless rtsp://127.0.0.1:$port/live --no-audio \
        --duration "$dur" --stats-json "$OUT/$name.player.json" >"$OUT/$name.player.log" 2>&1 || true
    wait "$cpid" || true
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
}

port=$PORT
results=()
for name in $FILES; do
    sox "$SET_DIR/$name.wav" "$OUT/$name.live.wav" pad 0 12
    speech=$(python3 -c "import json;print(int(json.load(open('$SET_DIR/$name.words.json'))['speech_s']+0.999))")
    dur=$((2 + speech + 10))
    wait_load "$name live"
    live_run "$name" "$OUT/$name.live.wav" "$dur" "$port"
    port=$((port + 1))
    analyze "$name" "$OUT/$name.result.json" --player "$OUT/$name.player.json" \
        --client "$OUT/$name.client.json" --server-log "$OUT/$name.server.log"
    results+=("$OUT/$name.result.json")
done
report wer_player "${results[@]}"

# No speech: noise and music alone must give no text.
for f in noise music; do
    wait_load "$f live"
    live_run "$f" "$SET_DIR/$f.wav" 25 "$port"
    port=$((port + 1))
    python3 - "$OUT/$f.player.json" "$f" <<'EOF' | tee -a "$OUT/report.md"
import json, sys
p = json.load(open(sys.argv[1]))
caps = [c["text"] for c in p.get("captions", [])]
print(f"- {sys.argv[2]} alone (25 s): {len(caps)} caption lines {caps}")
EOF
done

# ---------------------------------------------------------------------------------------------
# 720p30 with captions on vs off: a speech file loops, the player watches FPS_WINDOW s.
fps_run() {
    local mode=$1 port=$2 wav=$3
    wait_load "fps captions=$mode"
    RUST_LOG=info,livecast_server::captions=debug,livecast_server::pipeline=debug timeout $((FPS_WINDOW + 20)) \
        "$SERVER" --no-auth --tls-listen off --listen 127.0.0.1:$port --video testsrc --audio "file:$wav" --model "$MODEL" \
        --size 1280x720 --fps 30 --captions "$mode" $SERVER_ARGS >"$OUT/fps-$mode.server.log" 2>&1 &
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
    python3 - "$OUT" "$mode" <<'EOF' | tee -a "$OUT/report.md"
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
r = {"captions": mode, "player_fps_decoded": round(p["video"]["frames_decoded"] / p["duration_s"], 2),
     "player_fps_shown": round(p["video"]["frames_shown"] / p["duration_s"], 2),
     "server_frames_dropped_before_fanout": max(drops, default=0),
     "testsrc_frames_skipped": max(skips, default=0),
     "caption_audio_frames_dropped": max(adrop, default=0),
     "whisper_passes": len(passes), "whisper_pass_ms_max": max(passes, default=0),
     "server_cpu_s_per_s": round(c["process_cpu_s_per_s"], 3), "load_start": c["load_start"],
     "threads": {k: round(v, 3) for k, v in th.items() if v >= 0.005}}
json.dump(r, open(f"{out}/fps-{mode}.result.json", "w"), indent=1)
print(f"- 720p30, captions {mode}: {json.dumps(r)}")
EOF
}
if [ -z "${SKIP_FPS:-}" ]; then
    first=$(echo $FILES | cut -d' ' -f1)
    sox "$SET_DIR/$first.wav" "$OUT/fps.wav" repeat 2
    fps_run on $((PORT + 50)) "$OUT/fps.wav"
    fps_run off $((PORT + 51)) "$OUT/fps.wav"
fi
echo "results in $OUT (report.md, *.result.json, load.txt)"
