#!/usr/bin/env bash
# Long-session benchmark (issue 12): does the player's CPU per second and memory stay flat
# over hours? livecast-server on its test card (720p30) with the tone, and the headless player
# watching it live, recording, decoding and converting every picture, for DURATION seconds.
# Every STEP seconds the player's resident memory (VmRSS) and CPU time (utime+stime) are
# sampled; at the end the CPU per second of the first and of the last STEP windows and the
# memory are compared.
#
# usage: scripts/bench-long-session.sh
#   BIN=target/debug DURATION=7200 STEP=60 OUT=target/bench-long scripts/bench-long-session.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
DURATION=${DURATION:-7200}
STEP=${STEP:-60}
PORT=${PORT:-18590}
OUT=${OUT:-target/bench-long/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
log() { echo "bench-long-session: $*" >&2; }
if [ "$BIN" = target/release ] && [ -z "${NO_BUILD:-}" ]; then
    cargo build --release --locked -p livecast-server -p livecast-player >&2
fi
{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -srm); $(nproc) CPUs"
    echo "binaries: $BIN; duration ${DURATION}s, step ${STEP}s"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

"$BIN/livecast-server" --no-auth --tls-listen off --captions off --listen "127.0.0.1:$PORT" \
    --video testsrc --audio tone >"$OUT/server.log" 2>&1 &
server=$!
trap 'kill $server $player 2>/dev/null || true' EXIT
sleep 2
"$BIN/livecast-player" --headless --duration "$DURATION" --record "$OUT/session.lcrec" \
    --stats-json "$OUT/player.json" "rtsp://127.0.0.1:$PORT/live" >"$OUT/player.log" 2>&1 &
player=$!
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo NA; }
hz=$(getconf CLK_TCK)
echo "t_s rss_kib cpu_ticks load1" >"$OUT/samples.txt"
start=$(date +%s)
while kill -0 "$player" 2>/dev/null; do
    now=$(($(date +%s) - start))
    rss=$(awk '/^VmRSS/{print $2}' "/proc/$player/status" 2>/dev/null || echo NA)
    echo "$now ${rss:-NA} $(ticks "$player") $(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/samples.txt"
    sleep "$STEP"
done
wait "$player" || log "player exited with $?"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
rm -f "$OUT/session.lcrec"

python3 - "$OUT" "$hz" <<'EOF'
import sys
out, hz = sys.argv[1], int(sys.argv[2])
rows = []
for line in open(f"{out}/samples.txt").read().split("\n")[1:]:
    f = line.split()
    if len(f) == 4 and "NA" not in f[:3]:
        rows.append((int(f[0]), int(f[1]), int(f[2]), float(f[3])))
if len(rows) < 3:
    sys.exit("too few samples")
def cpu(a, b):
    return (b[2] - a[2]) / hz / max(1, b[0] - a[0])
first, last = cpu(rows[0], rows[1]), cpu(rows[-2], rows[-1])
print(f"samples: {len(rows)}, {rows[-1][0]} s")
print(f"CPU s/s, first window: {first:.3f}; last window: {last:.3f}; ratio {last / first:.2f}")
print(f"CPU s/s over the whole run: {cpu(rows[0], rows[-1]):.3f}")
print(f"resident MiB at {rows[0][0]} s: {rows[0][1] / 1024:.1f}; at {rows[1][0]} s: {rows[1][1] / 1024:.1f}; "
      f"at the end: {rows[-1][1] / 1024:.1f}; peak {max(r[1] for r in rows) / 1024:.1f}")
EOF
