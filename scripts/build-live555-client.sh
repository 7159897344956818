#!/usr/bin/env bash
# Builds livecast-live555-client (scripts/live555/live555-client.cpp), a small RTSP client on
# the live555 library, for the interop tests: live555 is the RTSP stack of upstream VLC builds
# and of many cameras, and it parses SDP and Digest challenges its own way. Idempotent.
#
# Usage: scripts/build-live555-client.sh [DIR]   (default: $CARGO_TARGET_DIR or target, /live555)
#        -> DIR/bin/livecast-live555-client
#
# The library's sources come from PyPI (the liblivemedia 1.0.5 sdist carries live555
# 2024.06.26); they are compiled without OpenSSL (no RTSPS, which the tests do not need here).
# Needs: a C++ compiler, pip.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/live555}
BIN=$DIR/bin/livecast-live555-client
SRC=$ROOT/scripts/live555/live555-client.cpp
if [ -x "$BIN" ] && [ "$BIN" -nt "$SRC" ]; then
    exit 0
fi
mkdir -p "$DIR/src" "$DIR/obj" "$DIR/bin"
if [ ! -d "$DIR/src/liblivemedia-1.0.5" ]; then
    python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$DIR/src" liblivemedia==1.0.5
    tar xzf "$DIR/src/liblivemedia-1.0.5.tar.gz" -C "$DIR/src"
fi
L=$DIR/src/liblivemedia-1.0.5
INC=(-I"$L/UsageEnvironment/include" -I"$L/groupsock/include" -I"$L/liveMedia/include"
     -I"$L/BasicUsageEnvironment/include")
FLAGS=(-O1 -w -DSOCKLEN_T=socklen_t -DNO_OPENSSL=1 -DNO_STD_LIB=1 "${INC[@]}")
echo "building the live555 test client in $DIR (about 2 minutes on 2 cores)"
export L DIR
# One object per source file, two compilers at a time; an object newer than its source stays.
find "$L/UsageEnvironment" "$L/BasicUsageEnvironment" "$L/groupsock" "$L/liveMedia" \
     -maxdepth 1 \( -name '*.cpp' -o -name '*.c' \) -print0 |
  FLAGS="${FLAGS[*]}" xargs -0 -P "$(nproc)" -I{} sh -c '
    src={}; obj="$DIR/obj/$(basename "$(dirname "$src")")_$(basename "$src").o"
    [ "$obj" -nt "$src" ] || { case "$src" in *.c) cc $FLAGS -c "$src" -o "$obj";;
                                               *) c++ $FLAGS -c "$src" -o "$obj";; esac; }'
c++ -O1 "${INC[@]}" -DNO_OPENSSL=1 "$SRC" "$DIR"/obj/*.o -o "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "built $BIN"
