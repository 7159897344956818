#!/usr/bin/python3
"""Decrypts SRTP packets with GStreamer's srtpdec (libsrtp), for the SRTP interop test.

usage: gst-srtp-decrypt.py KEY_AND_SALT_HEX SSRC < packets > packets
Packets on stdin and stdout are each preceded by their length (2 bytes, big endian). The
stream is AES_CM_128_HMAC_SHA1_80, rollover counter 0 at the start.
"""
import struct
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402


def main():
    key = bytes.fromhex(sys.argv[1])
    ssrc = int(sys.argv[2])
    Gst.init(None)
    pipe = Gst.parse_launch("appsrc name=src format=time ! srtpdec ! appsink name=sink sync=false")
    s = Gst.Structure.from_string(
        "application/x-srtp,media=(string)video,clock-rate=(int)90000,encoding-name=(string)H264,"
        f"payload=(int)96,ssrc=(uint){ssrc},roc=(uint)0,"
        "srtp-cipher=(string)aes-128-icm,srtp-auth=(string)hmac-sha1-80,"
        "srtcp-cipher=(string)aes-128-icm,srtcp-auth=(string)hmac-sha1-80"
    )[0]
    s.set_value("srtp-key", Gst.Buffer.new_wrapped(key))
    caps = Gst.Caps.new_empty()
    caps.append_structure(s)
    src = pipe.get_by_name("src")
    sink = pipe.get_by_name("sink")
    src.set_property("caps", caps)
    pipe.set_state(Gst.State.PLAYING)
    data = sys.stdin.buffer.read()
    at = 0
    while at + 2 <= len(data):
        (n,) = struct.unpack(">H", data[at:at + 2])
        src.emit("push-buffer", Gst.Buffer.new_wrapped(data[at + 2:at + 2 + n]))
        at += 2 + n
    src.emit("end-of-stream")
    out = sys.stdout.buffer
    while True:
        sample = sink.emit("try-pull-sample", 2 * Gst.SECOND)
        if sample is None:
            break
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        out.write(struct.pack(">H", len(info.data)) + bytes(info.data))
        buf.unmap(info)
    out.flush()
    pipe.set_state(Gst.State.NULL)


if __name__ == "__main__":
    main()
