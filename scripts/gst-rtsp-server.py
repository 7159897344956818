#!/usr/bin/python3
"""Reference RTSP server: GStreamer's gst-rtsp-server with the same stream shape as
livecast-server's test sources (720p30 H.264 constrained baseline at 2 Mbit/s, IDR every 2 s,
Opus 48 kHz stereo 64 kbit/s), media shared between clients. Used by the benchmarks and the
player's interop tests. Run it with Debian's python3 (python3-gi, gir1.2-gst-rtsp-server-1.0).

usage: gst-rtsp-server.py [--port 8555] [--size 1280x720] [--fps 30] [--bitrate 2000]
       gst-rtsp-server.py --record FILE.mkv [--port 8555] [--path /live]

With --record it is the other way round: a RECORD-mode server that takes one published
H.264 + Opus stream (ANNOUNCE/SETUP/RECORD) and writes it, without decoding, to FILE.mkv.
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", default="8555")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--bitrate", type=int, default=2000, help="kbit/s")
    ap.add_argument("--path", default="/live")
    ap.add_argument("--record", metavar="FILE")
    a = ap.parse_args()
    w, h = a.size.split("x")
    Gst.init(None)
    launch = (
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},"
        f"framerate={a.fps}/1,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast "
        f"bitrate={a.bitrate} key-int-max={2 * a.fps} threads=1 ! "
        "video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=-1 "
        "audiotestsrc is-live=true wave=sine volume=0.1 ! audio/x-raw,rate=48000,channels=2 ! "
        "opusenc bitrate=64000 frame-size=20 ! rtpopuspay name=pay1 pt=97 )"
    )
    if a.record:
        # One depayloader per announced stream, in SDP order (depay0, depay1, ...).
        launch = (
            "( rtph264depay name=depay0 ! h264parse ! queue ! mux. "
            "rtpopusdepay name=depay1 ! opusparse ! queue ! mux. "
            f"matroskamux name=mux streamable=true ! filesink location={a.record} )"
        )
    server = GstRtspServer.RTSPServer()
    server.set_service(a.port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    if a.record:
        factory.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
    factory.set_shared(True)
    server.get_mount_points().add_factory(a.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {a.port}", file=sys.stderr)
        sys.exit(1)
    print(f"ready rtsp://127.0.0.1:{a.port}{a.path}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
