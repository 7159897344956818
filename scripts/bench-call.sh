#!/usr/bin/env bash
# Two-way call benchmark (issue 5, docs/benchmarks.md "Two-way call"):
#   1. one-way delay, video and audio, both directions: two `livecast-player --call` peers in
#      two network namespaces joined by a veth pair, at the call defaults (640x480@30,
#      1 Mbit/s, Opus 64k, captions on with the installed model); the peers' --stats-json
#      give capture (sender's clock, via RTCP SR) -> ready-to-show (video) / due at the
#      output (audio), p50/p95. Both namespaces share the machine's clock.
#   2. CPU of the call with both peers on this machine: per process (utime+stime from
#      /proc/PID/stat over a window) and per thread (/proc/PID/task/*/stat), % of one core.
#   Runs (RUNS): default, captions-off, default again, loss1 and loss5 (random loss with nft in
#   each namespace's input), motion (a 640x480 clip with motion and noise that fills 1 Mbit/s).
#   The peers speak in turns (espeak-ng, 16 s each), so each captioner works half the time.
#
# Usage: scripts/bench-call.sh                 (about 10 min on an idle 2-core machine; root)
# Env:   OUT=dir  SKIP_BUILD=1  BIN=/tmp/bench-call/livecast-player  DURATION=75 (s per call)
#        CPU_START=10 CPU_WINDOW=60 (s)  MAX_LOAD=1.5  LOAD_WAIT_S=600
#        RUNS="default captions-off default loss1 loss5 motion"
# Needs: root, iproute2, nftables, espeak-ng, sox, ffmpeg (motion run), python3, the model
#        (scripts/install-model.sh). Every process is started under `timeout` and killed by
#        its pid; traffic stays inside the two namespaces made here (removed on exit).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/bench-call/$(date -u +%F)}
BIN=${BIN:-/tmp/bench-call/livecast-player}
DURATION=${DURATION:-75}
CPU_START=${CPU_START:-10}
CPU_WINDOW=${CPU_WINDOW:-60}
MAX_LOAD=${MAX_LOAD:-1.5}
LOAD_WAIT_S=${LOAD_WAIT_S:-600}
RUNS=${RUNS:-"default captions-off default loss1 loss5 motion"}
MODEL=${MODEL:-${LIVECAST_MODEL_DIR:-$HOME/.local/share/livecast/models}/ggml-tiny.en.bin}
HELPER="python3 $ROOT/scripts/bench-call.py"
mkdir -p "$OUT"
LOADLOG=$OUT/load.txt
: >"$LOADLOG"

(( CPU_START + CPU_WINDOW + 3 <= DURATION )) || { echo "CPU window must end before the call (DURATION)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (ip netns)" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "no speech model at $MODEL (scripts/install-model.sh): captions would be off" >&2; exit 1; }

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -p livecast-player
    # Copy at once: other worktrees may write target/release/ too.
    mkdir -p "$(dirname "$BIN")"
    cp target/release/livecast-player "$BIN"
fi
[ -x "$BIN" ] || { echo "no binary at $BIN (unset SKIP_BUILD to build it)" >&2; exit 1; }
"$BIN" --help | grep -q -- '--call' || { echo "$BIN has no call mode (--call)" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Namespaces: lcb<pid>a (10.214.7.1) and lcb<pid>b (10.214.7.2), one veth pair.
ID=$(( $$ % 100000 ))
NSA=lcb${ID}a NSB=lcb${ID}b VA=lcbv${ID}a VB=lcbv${ID}b
IPA=10.214.7.1 IPB=10.214.7.2
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$NSA" 2>/dev/null || true
    ip netns del "$NSB" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for ns in "$NSA" "$NSB"; do
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip link add "$VA" netns "$NSA" type veth peer name "$VB" netns "$NSB"
ip -n "$NSA" addr add $IPA/24 dev "$VA"; ip -n "$NSA" link set "$VA" up
ip -n "$NSB" addr add $IPB/24 dev "$VB"; ip -n "$NSB" link set "$VB" up

# Random loss of P % of the packets arriving in each namespace (0: no rule).
set_loss() {
    for ns in "$NSA" "$NSB"; do
        ip netns exec "$ns" nft delete table inet livecast_loss 2>/dev/null || true
        [ "$1" = 0 ] && continue
        printf 'table inet livecast_loss {\n chain input {\n  type filter hook input priority 0; policy accept;\n  numgen random mod 100 < %s counter drop\n }\n}\n' "$1" \
            | ip netns exec "$ns" nft -f -
    done
}
dropped() {
    ip netns exec "$1" nft list table inet livecast_loss 2>/dev/null \
        | sed -n 's/.*packets \([0-9]*\).*/\1/p' | head -1 || true
}

# ---------------------------------------------------------------------------------------------
# Sources. Speech for the captions, as turn-taking: alice talks for 16 s while bob is silent,
# then bob talks for 16 s (each file is 32 s and loops; both start within ~0.1 s).
speech() {  # voice text out.wav: 16 s, speech first
    timeout 60 espeak-ng -v "$1" -s 150 -w "$OUT/raw-$1.wav" "$2"
    # (sox warns "pads not applied" because trim ends the chain early; the result is right)
    timeout 60 sox "$OUT/raw-$1.wav" -r 48000 -c 2 "$OUT/seg-$1.wav" pad 0.5 16 trim 0 16
}
if [ ! -f "$OUT/alice.wav" ]; then
    speech en-us "Hello Bob, can you hear me well? The weather is lovely here today. I went for a long walk by the river this morning, and the water was very high after the rain last week. Are you still coming to visit us next month?"
    speech en-gb "Hi Alice, yes, I can hear you very well. It has been raining in London for three days. I think the trains were late again this morning. We would love to visit next month, if the tickets are not too expensive."
    timeout 60 sox -n -r 48000 -c 2 "$OUT/silence.wav" trim 0 16
    timeout 60 sox "$OUT/seg-en-us.wav" "$OUT/silence.wav" "$OUT/alice.wav"
    timeout 60 sox "$OUT/silence.wav" "$OUT/seg-en-gb.wav" "$OUT/bob.wav"
fi
MOTION=$OUT/motion-640x480-30.y4m
if [[ " $RUNS " == *" motion "* ]] && [ ! -f "$MOTION" ]; then
    # Camera-like content that fills the bit budget: testsrc2 moving, with temporal noise; 5 s.
    timeout 300 ffmpeg -nostdin -loglevel error -f lavfi \
        -i "testsrc2=size=640x480:rate=30,noise=alls=12:allf=t" -t 5 -pix_fmt yuv420p -y "$MOTION"
fi

# ---------------------------------------------------------------------------------------------
# Waits (bounded) until the 1-minute load average is below MAX_LOAD. Sets LOAD_START, WAITED, IDLE.
wait_load() {
    local what=$1 t0=$SECONDS l
    IDLE=yes
    while :; do
        l=$(cut -d' ' -f1 /proc/loadavg)
        if awk -v l="$l" -v m="$MAX_LOAD" 'BEGIN{exit !(l<m)}'; then break; fi
        if (( SECONDS - t0 >= LOAD_WAIT_S )); then IDLE=no; break; fi
        sleep 10
    done
    WAITED=$((SECONDS - t0))
    LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "$(date -u +%T) $what: start load $LOAD_START (waited ${WAITED} s, below $MAX_LOAD: $IDLE)" | tee -a "$LOADLOG"
}

# The player started under `ip netns exec NS timeout ...`: the child of the timeout process.
child_of() {
    local c
    for _ in $(seq 100); do
        c=$(cat /proc/"$1"/task/"$1"/children 2>/dev/null | awk '{print $1}')
        [ -n "$c" ] && { echo "$c"; return; }
        sleep 0.05
    done
    echo "no child of $1" >&2
    return 1
}

# One call: alice in NSA calls bob in NSB and the other way round, both at once, for DURATION s.
one_run() {
    local name=$1 dir=$2 loss=$3; shift 3
    local extra=("$@")
    mkdir -p "$dir"
    set_loss "$loss"
    wait_load "$name"
    local start_unix; start_unix=$(date -u +%s)
    local common=(--headless --no-audio --duration "$DURATION")
    # debug for the playback loop: its "caught up with live" lines are counted.
    export RUST_LOG=${RUST_LOG:-info,livecast_player::engine::playback=debug} NO_COLOR=1
    ip netns exec "$NSA" timeout -k 5 $((DURATION + 30)) "$BIN" --call "$IPB" --listen "$IPA:8554" \
        --name alice "${common[@]}" --audio "file:$OUT/alice.wav" "${extra[@]}" \
        --stats-json "$dir/alice.json" </dev/null >"$dir/alice.out" 2>"$dir/alice.log" &
    local ta=$!
    PIDS+=("$ta")
    ip netns exec "$NSB" timeout -k 5 $((DURATION + 30)) "$BIN" --call "$IPA" --listen "$IPB:8554" \
        --name bob "${common[@]}" --audio "file:$OUT/bob.wav" "${extra[@]}" \
        --stats-json "$dir/bob.json" </dev/null >"$dir/bob.out" 2>"$dir/bob.log" &
    local tb=$!
    PIDS+=("$tb")
    local pa pb
    pa=$(child_of "$ta"); pb=$(child_of "$tb")
    echo "$(date -u +%T) $name: alice pid $pa, bob pid $pb; ${extra[*]:-defaults}, loss $loss %" | tee -a "$LOADLOG"
    timeout $((CPU_START + CPU_WINDOW + 30)) $HELPER cpu --pids "$pa" "$pb" --labels alice bob \
        --start-after "$CPU_START" --window "$CPU_WINDOW" --veth "$NSA:$VA" "$NSB:$VB" \
        --out "$dir/cpu.json" || echo "cpu sampling failed" >&2
    wait "$ta" || echo "alice exited with $?" | tee -a "$LOADLOG"
    wait "$tb" || echo "bob exited with $?" | tee -a "$LOADLOG"
    PIDS=()
    local load_end; load_end=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "$(date -u +%T) $name: end load $load_end" | tee -a "$LOADLOG"
    local da=0 db=0
    if [ "$loss" != 0 ]; then da=$(dropped "$NSA"); db=$(dropped "$NSB"); fi
    $HELPER run --dir "$dir" --name "$name" --loss "$loss" --load-start "$LOAD_START" \
        --load-end "$load_end" --waited "$WAITED" --idle "$IDLE" --rust-log "$RUST_LOG" \
        --dropped "{\"alice\": ${da:-0}, \"bob\": ${db:-0}}" --args "${extra[@]}"
    set_loss 0
}

{
    echo "Date (UTC): $(date -u '+%F %T'); host: $(uname -sr), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
    echo "Binary: $BIN (built $(stat -c %y "$BIN" | cut -d. -f1)$([ -n "${SKIP_BUILD:-}" ] && echo ', not by this run')); git HEAD now: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- player server proto || echo ' + uncommitted changes')"
    echo "Calls: $DURATION s each, peers in namespaces $NSA ($IPA) and $NSB ($IPB) over a veth pair;"
    echo "CPU window: $CPU_WINDOW s from $CPU_START s after start. Runs: $RUNS"
    echo
} >"$OUT/header.md"

i=0
for run in $RUNS; do
    i=$((i + 1))
    dir=$OUT/$(printf '%02d' $i)-$run
    case $run in
        default) one_run "$run" "$dir" 0 --video testsrc ;;
        captions-off) one_run "$run" "$dir" 0 --video testsrc --captions off ;;
        loss1) one_run "$run" "$dir" 1 --video testsrc ;;
        loss5) one_run "$run" "$dir" 5 --video testsrc ;;
        motion) one_run "$run" "$dir" 0 --video "file:$MOTION" ;;
        *) echo "unknown run '$run'" >&2; exit 2 ;;
    esac
done

$HELPER summary --dir "$OUT" --header "$OUT/header.md" >/dev/null
echo "results: $OUT/summary.md"
