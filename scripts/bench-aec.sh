#!/usr/bin/env bash
# Echo-cancellation benchmark (issue 5, docs/benchmarks.md "Echo cancellation (call mode)").
# Makes two talkers with espeak-ng (far end: several sentences, en-us male; near end: en-gb
# with the female variant f3), 48 kHz PCM16, then runs livecast-aec-bench: the far end is
# played through a simulated room (40 ms direct path + 200 ms tail) into the mic, the near
# end talks over its end (double talk) and then alone; ERLE per second and overall,
# near-end distortion, CPU, for sonora (the one used) and aec3 side by side.
#
# Usage: scripts/bench-aec.sh [extra livecast-aec-bench options]   (about 1 min after the build)
# Env:   OUT=dir  SKIP_BUILD=1  ENGINES=sonora,aec3  MAX_LOAD=1.0  LOAD_WAIT_S=600
#        (it waits, at most LOAD_WAIT_S, for the 1-minute load average to fall below MAX_LOAD,
#        since the CPU figure is only meaningful on a quiet machine; the load is recorded)
# Needs: espeak-ng and sox (apt-get install -y espeak-ng sox). Reads and writes files only.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-target/bench-aec/$(date -u +%F)}
ENGINES=${ENGINES:-sonora,aec3}
MAX_LOAD=${MAX_LOAD:-1.0}
LOAD_WAIT_S=${LOAD_WAIT_S:-600}
BIN=${CARGO_TARGET_DIR:-target}/release/livecast-aec-bench
mkdir -p "$OUT"
for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install -y espeak-ng sox)" >&2; exit 1; }
done
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release --locked -p livecast-player --features aec-compare --bin livecast-aec-bench
fi

# Speaks $3 with voice $2 into $1 (48 kHz mono 16-bit, peak at -3 dBFS).
say() {
    espeak-ng -v "$2" -s 160 -w "$OUT/raw-$1" "$3"
    sox -D "$OUT/raw-$1" -r 48000 -c 1 -b 16 "$OUT/$1" gain -n -3  # -D: no dither, reproducible
    rm -f "$OUT/raw-$1"
}
say far.wav en-us "The quick brown fox jumps over the lazy dog. \
We are testing a two way call between two machines on the same network. \
When the loudspeaker plays the other person's voice, the microphone hears it again. \
Without echo cancellation, they would hear themselves a fraction of a second later. \
The canceller learns the path from the loudspeaker to the microphone and subtracts it. \
It has to keep working while both people talk at the same time. \
Numbers like forty milliseconds and two hundred milliseconds describe the simulated room. \
This sentence ends the far end speech."
say near.wav en-gb+f3 "Hello, can you hear me clearly now? \
I am the near end talker, speaking over the far end. \
My voice should pass through without being cut."

t0=$SECONDS
until awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v m="$MAX_LOAD" 'BEGIN{exit !(l<m)}'; do
    if (( SECONDS - t0 >= LOAD_WAIT_S )); then
        echo "load still above $MAX_LOAD after ${LOAD_WAIT_S}s, measuring anyway" >&2
        break
    fi
    sleep 10
done
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/load.txt"
"$BIN" --far "$OUT/far.wav" --near "$OUT/near.wav" --engine "$ENGINES" \
    --json "$OUT/results.json" --out-dir "$OUT" "$@" | tee "$OUT/results.txt"
