#!/usr/bin/env bash
# proto is Sans-IO: no sockets, no runtime, no OS calls. Fails if its normal (non-dev)
# dependency tree holds a crate that does I/O.
set -euo pipefail
cd "$(dirname "$0")/.."
# Async runtimes and reactors, sockets and raw OS calls, HTTP clients/servers, OS randomness.
FORBIDDEN="tokio tokio-util mio socket2 async-std async-io smol polling libc nix rustix hyper reqwest ureq getrandom"
deps=$(cargo tree -p livecast-proto -e normal --prefix none --format '{p}' --locked | awk '{print $1}' | sort -u)
bad=""
for crate in $FORBIDDEN; do
    if grep -qx "$crate" <<<"$deps"; then
        bad="$bad $crate"
    fi
done
if [ -n "$bad" ]; then
    echo "error: livecast-proto must not depend on crates that do I/O, but it depends on:$bad" >&2
    echo "       (cargo tree -p livecast-proto -e normal -i <crate> shows the path)" >&2
    exit 1
fi
echo "livecast-proto: no I/O crate among its dependencies ($(wc -l <<<"$deps") crates)"
