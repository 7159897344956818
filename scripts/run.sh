#!/usr/bin/env bash
# The main job: installs prerequisites, builds, and runs livecast-server on the built-in test
# sources (or camera/microphone if present). Arguments are passed to livecast-server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p livecast-server
echo "Watch it with:  ffplay rtsp://127.0.0.1:8554/live   (or mpv / vlc / gst-play-1.0)"
exec target/release/livecast-server "$@"
