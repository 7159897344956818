#!/usr/bin/env python3
"""Delays packets by a fixed time in user space, for the loss tests and benchmarks: this
kernel has no netem, but it has NFQUEUE. An nftables rule queues packets
(`... queue num N`); this program, speaking nfnetlink_queue over a raw netlink socket (no
library), holds each one for DELAY_MS and then lets it through (NF_ACCEPT), in order.

usage: nfq-delay.py QUEUE_NUM DELAY_MS
Runs until killed; prints "ready" once bound. Needs CAP_NET_ADMIN (root), in the network
namespace whose rule queues to it (`ip netns exec NS nfq-delay.py 0 20`).
"""
import heapq
import select
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
NF_ACCEPT = 1


def attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


def message(msg, queue, attrs, seq=0):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST, seq, 0) + body


def attrs_of(data):
    at = 0
    while at + 4 <= len(data):
        n, kind = struct.unpack_from("=HH", data, at)
        if n < 4:
            break
        yield kind & 0x7FFF, data[at + 4:at + n]
        at += (n + 3) & ~3


def main():
    queue, delay = int(sys.argv[1]), float(sys.argv[2]) / 1000.0
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.bind((0, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    cmd = struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, 0)
    s.send(message(NFQNL_MSG_CONFIG, queue, [attr(NFQA_CFG_CMD, cmd)], 1))
    params = struct.pack(">IB", 0, NFQNL_COPY_META)
    s.send(message(NFQNL_MSG_CONFIG, queue, [attr(NFQA_CFG_PARAMS, params)], 2))
    print("ready", flush=True)
    held = []  # (release time, packet id)
    while True:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else None
        readable, _, _ = select.select([s], [], [], timeout)
        if readable:
            data = s.recv(1 << 16)
            at = 0
            while at + 16 <= len(data):
                n, kind = struct.unpack_from("=IH", data, at)
                if n < 16:
                    break
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    for a, v in attrs_of(data[at + 20:at + n]):
                        if a == NFQA_PACKET_HDR:
                            (pid,) = struct.unpack_from(">I", v)
                            heapq.heappush(held, (time.monotonic() + delay, pid))
                at += (n + 3) & ~3
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, pid = heapq.heappop(held)
            verdict = struct.pack(">II", NF_ACCEPT, pid)
            s.send(message(NFQNL_MSG_VERDICT, queue, [attr(NFQA_VERDICT_HDR, verdict)]))


if __name__ == "__main__":
    main()
