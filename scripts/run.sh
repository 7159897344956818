#!/usr/bin/env bash
# The main job: installs prerequisites, builds, then runs livecast-server on the built-in test
# sources (camera and microphone instead, when present) and livecast-player watching it.
# With a display the player opens its window; without one it runs headless and prints its
# measurements when you press Ctrl-C. Extra arguments go to livecast-server.
#
#   scripts/run.sh                  # server + player
#   PLAYER=none scripts/run.sh      # server only (watch with ffplay/mpv/VLC)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p livecast-server -p livecast-player
bin="${CARGO_TARGET_DIR:-target}/release"
"$bin/livecast-server" "$@" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
# Wait until the server answers.
for _ in $(seq 1 50); do
  (exec 3<>/dev/tcp/127.0.0.1/8554) 2>/dev/null && break
  sleep 0.2
done
echo "Also watch it with:  ffplay rtsp://127.0.0.1:8554/live   (or mpv / vlc / gst-play-1.0)"
case "${PLAYER:-auto}" in
  none) wait $server ;;
  *)
    if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
      "$bin/livecast-player" rtsp://127.0.0.1:8554/live
    else
      echo "No display: running the player headless (Ctrl-C prints its statistics)."
      "$bin/livecast-player" --headless rtsp://127.0.0.1:8554/live
    fi
    ;;
esac
