#!/usr/bin/env bash
# File source CPU: livecast-server streaming a 720p30 H.264 MP4 as it is (--video file:x.mp4)
# against the same pictures as a Y4M file (--video file:x.y4m: read, then encoded by openh264),
# side by side, alternating, each with one viewer (ffmpeg over TCP). Prints the server's CPU
# (user + system seconds per second of wall time) for each run.
#
#   scripts/bench-file-source.sh            # release build, 2 rounds of 20 s each
#   ROUNDS=3 SECONDS_PER_RUN=30 scripts/bench-file-source.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-2}"
RUN_S="${SECONDS_PER_RUN:-20}"
OUT="${OUT:-target/bench-file-source}"
mkdir -p "$OUT"
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -q -p livecast-server --bin livecast-server
BIN="${CARGO_TARGET_DIR:-target}/release/livecast-server"
if [ ! -s "$OUT/talk.mp4" ]; then
  # 10 s of moving test card at 2 Mbit/s (the encoder's default rate), no B-frames.
  ffmpeg -v error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -t 10 \
    -c:v libx264 -preset veryfast -b:v 2M -maxrate 2M -bufsize 1M -g 30 -bf 0 \
    -pix_fmt yuv420p "$OUT/talk.mp4"
  ffmpeg -v error -y -i "$OUT/talk.mp4" -f yuv4mpegpipe -pix_fmt yuv420p "$OUT/talk.y4m"
fi
tick=$(getconf CLK_TCK)
cpu_of() { awk -v t="$tick" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
run() {
  local src=$1 port=$((20000 + RANDOM % 20000))
  "$BIN" --no-auth --tls-listen off --listen "127.0.0.1:$port" --captions off \
    --video "file:$src" --audio tone >"$OUT/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do grep -q 'watch with' "$OUT/server.log" && break; sleep 0.1; done
  timeout $((RUN_S + 10)) ffmpeg -v error -rtsp_transport tcp -i "rtsp://127.0.0.1:$port/live" \
    -map 0:v -f null - >/dev/null 2>&1 &
  local viewer=$!
  sleep 3
  local c0 w0 c1 w1
  c0=$(cpu_of $pid); w0=$(date +%s.%N)
  sleep "$RUN_S"
  c1=$(cpu_of $pid); w1=$(date +%s.%N)
  kill $viewer 2>/dev/null || true
  kill -INT $pid; wait $pid 2>/dev/null || true
  wait $viewer 2>/dev/null || true
  awk -v a="$c0" -v b="$c1" -v s="$w0" -v e="$w1" 'BEGIN {printf "%.3f\n", (b - a) / (e - s)}'
}
echo "date: $(date -u +%FT%TZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)  cores: $(nproc)"
for r in $(seq "$ROUNDS"); do
  echo "round $r: mp4 passed through $(run "$OUT/talk.mp4") CPU s/s, y4m encoded $(run "$OUT/talk.y4m") CPU s/s"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
