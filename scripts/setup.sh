#!/usr/bin/env bash
# Installs everything Livecast needs on a fresh Debian machine (idempotent): build tools for
# the bundled codecs, and the real peer programs the tests play the stream with.
set -euo pipefail

PACKAGES=(
  # build: openh264's assembly (nasm), bundled libopus / whisper.cpp (cmake), bindgen (libclang),
  # ALSA for cpal, pkg-config
  nasm cmake libclang-dev libasound2-dev pkg-config build-essential
  # the player's seek decoder: the system's libavcodec (FFmpeg), headers for its bindings
  libavcodec-dev
  # peers and test tools
  ffmpeg mpv
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp
  gir1.2-gst-rtsp-server-1.0 python3-gi
  xvfb x11-apps sox
  # speech for the captions tests and benchmark: two engines (espeak-ng, festival's kal voice)
  espeak-ng festival festvox-kallpc16k
  # call tests: network namespaces (ip netns, ss) and packet loss (nft)
  iproute2 nftables iptables
  # RTSPS test: a capture of the TLS port must hold nothing in clear
  tcpdump
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }
"$(dirname "$0")/install-model.sh"  # the whisper model for live captions (tiny.en, idempotent)
