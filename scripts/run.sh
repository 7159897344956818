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
# Access control is on: the player here watches as the user run-sh (its password given in a
# file, not on the command line), with a fresh random
# password each run (set in the users file before the server reads it; the first run also
# creates the file, with the user viewer, whose password is printed then).
pwfile=$(mktemp)
chmod 600 "$pwfile"
trap 'rm -f "$pwfile"' EXIT
head -c 18 /dev/urandom | base64 | tr -d '+/=\n' >"$pwfile"
# (add fails when run-sh exists; passwd then sets the new password. The first may create the
# file and print the viewer's password.)
"$bin/livecast-server" user add run-sh --password-file "$pwfile" 2>/dev/null \
  || "$bin/livecast-server" user passwd run-sh --password-file "$pwfile"
"$bin/livecast-server" "$@" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$pwfile"' EXIT
# Wait until the server answers.
for _ in $(seq 1 50); do
  (exec 3<>/dev/tcp/127.0.0.1/8554) 2>/dev/null && break
  sleep 0.2
done
url="rtsp://run-sh:$(cat "$pwfile")@127.0.0.1:8554/live"
echo "Also watch it with:  ffplay $url   (or mpv / vlc / gst-play-1.0; valid until the next run)"
case "${PLAYER:-auto}" in
  none) wait $server ;;
  *)
    if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
      "$bin/livecast-player" --user run-sh --password-file "$pwfile" rtsp://127.0.0.1:8554/live
    else
      echo "No display: running the player headless (Ctrl-C prints its statistics)."
      "$bin/livecast-player" --headless --user run-sh --password-file "$pwfile" \
        rtsp://127.0.0.1:8554/live
    fi
    ;;
esac
