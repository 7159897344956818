#!/usr/bin/env bash
# Recording cost: livecast-server CPU with --record (and its recorder thread alone, same run)
# and without, and bytes written per hour. The test card at 1280x720@30, 2 Mbit/s, tone audio,
# no captions, no viewers.
# Usage: scripts/bench-record.sh [SECONDS] [BINARY]   (default 60, target/debug/livecast-server)
set -euo pipefail
secs=${1:-60}
bin=${2:-target/debug/livecast-server}
tck=$(getconf CLK_TCK)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# utime + stime in ticks of /proc/PID[/task/TID]/stat (fields 14, 15 after the comm).
ticks() { sed 's/^.*) //' "$1" | awk '{print $12 + $13}'; }
recorder_stat() { grep -l '^recorder$' /proc/"$1"/task/*/comm | head -1 | sed 's/comm$/stat/'; }

run() { # $1: with|without
    local port=$((18600 + RANDOM % 1000)) args=()
    [ "$1" = with ] && args=(--record "$dir/rec")
    "$bin" --no-auth --listen 127.0.0.1:$port --video testsrc --audio tone --captions off \
        "${args[@]}" >/dev/null 2>&1 &
    local pid=$!
    sleep 10 # start-up and the first file
    local p0 r0=0 r1=0 b0=0 b1=0 rs=""
    p0=$(ticks /proc/$pid/stat)
    if [ "$1" = with ]; then
        rs=$(recorder_stat $pid); r0=$(ticks "$rs"); b0=$(du -b "$dir"/rec/*.mp4 | awk '{s+=$1} END {print s}')
    fi
    sleep "$secs"
    local p1; p1=$(ticks /proc/$pid/stat)
    if [ "$1" = with ]; then
        r1=$(ticks "$rs"); b1=$(du -b "$dir"/rec/*.mp4 | awk '{s+=$1} END {print s}')
    fi
    kill -INT $pid; wait $pid || true
    awk -v p=$((p1 - p0)) -v r=$((r1 - r0)) -v b=$((b1 - b0)) -v s="$secs" -v t="$tck" -v m="$1" 'BEGIN {
        printf "%-8s server %.3f cores", m, p / t / s
        if (m == "with") printf ", recorder thread %.4f cores, %.1f MB/hour written", r / t / s, b / s * 3600 / 1e6
        printf "\n" }'
}
uptime
run without
run with
run without
run with
uptime
