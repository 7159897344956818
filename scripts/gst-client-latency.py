#!/usr/bin/python3
"""GStreamer's RTSP client, measured the way `livecast-player --headless` measures itself.

    /usr/bin/python3 scripts/gst-client-latency.py rtsp://127.0.0.1:8554/live \
        --duration 20 --json out.json [--rgba] [--audio] [--ocr]

Pipeline (video):  rtspsrc latency=0 add-reference-timestamp-meta=true
                   ! rtph264depay ! h264parse ! avdec_h264 [! videoconvert ! video/x-raw,format=RGBA]
                   ! fakesink
With --audio also: rtspsrc ! rtpopusdepay ! opusdec ! fakesink
(without --audio the audio stream is not SET UP at all, via rtspsrc's select-stream).

Measurements, written as JSON (same names as livecast-player's --stats-json where they mean
the same thing):

* latency_ms.p50 / p95: for every decoded picture, wall clock (CLOCK_REALTIME) when the
  decoder hands it downstream, minus its capture time. The capture time is the NTP time
  that rtpjitterbuffer computes from the RTCP sender reports for the buffer's RTP timestamp
  (GstReferenceTimestampMeta, caps timestamp/x-ntp; NTP epoch 1900 converted to Unix).
  It is read on the depayloader's output and matched to the decoder's output by PTS, so it
  does not depend on the decoder copying the meta.
* first_frame_ms: from the call that sets the pipeline to PLAYING to the first decoded
  picture; first_frame_from_exec_ms: the same from the process's exec (includes Python and
  GStreamer start-up).
* --ocr (livecast-server's test card only): reads the capture time the server drew into the
  picture (UTC HH:MM:SS.mmm, 5x7 font, see server/src/source/testsrc.rs) from the decoded
  luma plane, and reports picture-based latency and the difference "drawn capture time minus
  SR-derived capture time" per frame: an independent check of the SR method.

The percentiles use the same rule as livecast-player (nearest rank, index round((n-1)*q)).
"""

import argparse
import json
import os
import re
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402

NTP_UNIX_OFFSET_S = 2_208_988_800

FONT_RS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server", "src", "source", "font.rs")


def read_glyphs(chars="0123456789:."):
    """The test card's glyphs for `chars`, read from the server's font (rows of 5 bits, MSB =
    leftmost pixel), keyed by their rows."""
    with open(FONT_RS) as f:
        rows = re.findall(r"'(.)' => \[([^\]]*)\]", f.read())
    return {tuple(int(x, 16) for x in v.split(",")): c for c, v in rows if c in chars}


GLYPH_BY_BITS = read_glyphs()


def card_text_origin(w, h):
    """Top-left of the time text on the test card (TestCard::new in testsrc.rs)."""
    w &= ~1
    h &= ~1
    bars_h = (h * 2 // 3) & ~1
    scale = max(h // 100, 1)
    while scale > 1 and 12 * 6 * scale + 4 * scale > max(w - 4, 0):
        scale -= 1
    pad = 2 * scale
    line_step = (7 + 3) * scale
    panel_w = min(12 * 6 * scale + 2 * pad, w) & ~1
    panel_h = min(line_step + 7 * scale + 2 * pad, bars_h) & ~1
    panel_x = ((w - panel_w) // 2) & ~1
    panel_y = (max(bars_h - panel_h, 0) // 2) & ~1
    return panel_x + pad, panel_y + pad, scale


def read_card_time_ms(y_plane, stride, w, h):
    """Milliseconds since UTC midnight drawn on the card, or None (e.g. the white flash)."""
    x0, y0, s = card_text_origin(w, h)
    text = []
    for i in range(12):
        gx = x0 + i * 6 * s
        bits = []
        for row in range(7):
            b = 0
            py = y0 + row * s + s // 2
            for col in range(5):
                px = gx + col * s + s // 2
                if y_plane[py * stride + px] > 125:
                    b |= 0x10 >> col
            bits.append(b)
        c = GLYPH_BY_BITS.get(tuple(bits))
        if c is None:
            return None
        text.append(c)
    t = "".join(text)
    if t[2] != ":" or t[5] != ":" or t[8] != ".":
        return None
    try:
        return ((int(t[0:2]) * 60 + int(t[3:5])) * 60 + int(t[6:8])) * 1000 + int(t[9:12])
    except ValueError:
        return None


def pick(values, q):
    v = sorted(values)
    if not v:
        return None
    return v[round((len(v) - 1) * q)]


def main():
    exec_t = None
    try:
        # Process start, on CLOCK_BOOTTIME (what /proc/PID/stat's starttime counts).
        start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        exec_t = start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass

    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--json", help="write the measurements here")
    ap.add_argument("--rgba", action="store_true", help="videoconvert to RGBA after the decoder")
    ap.add_argument("--audio", action="store_true", help="also receive and decode the Opus track")
    ap.add_argument("--ocr", action="store_true", help="read the test card's drawn capture time")
    ap.add_argument("--dec-threads", type=int, default=None, help="avdec_h264 max-threads")
    ap.add_argument("--tcp", action="store_true", help="RTP over the RTSP connection")
    args = ap.parse_args()

    Gst.init(None)
    pipeline = Gst.Pipeline.new("client")
    src = Gst.ElementFactory.make("rtspsrc")
    src.set_property("location", args.url)
    src.set_property("latency", 0)
    src.set_property("add-reference-timestamp-meta", True)
    if args.tcp:
        src.set_property("protocols", "tcp")
    pipeline.add(src)

    dec_opts = "" if args.dec_threads is None else f" max-threads={args.dec_threads}"
    vdesc = f"rtph264depay name=vdepay ! h264parse ! avdec_h264 name=vdec{dec_opts}"
    if args.rgba:
        vdesc += " ! videoconvert ! video/x-raw,format=RGBA"
    vdesc += " ! fakesink name=vsink sync=false"
    vbin = Gst.parse_bin_from_description(vdesc, True)
    pipeline.add(vbin)
    abin = None
    if args.audio:
        abin = Gst.parse_bin_from_description(
            "rtpopusdepay ! opusdec ! fakesink name=asink sync=false", True
        )
        pipeline.add(abin)

    ntp_caps = Gst.Caps.from_string("timestamp/x-ntp")
    ntp_by_pts = {}
    st = {
        "frames": 0,
        "first": None,
        "lat": [],
        "ocr_lat": [],
        "ocr_minus_sr": [],
        "ocr_fail": 0,
        "no_sr": 0,
        "audio_buffers": 0,
    }

    def on_select(_src, _idx, caps):
        media = caps.get_structure(0).get_value("media")
        return media == "video" or (media == "audio" and args.audio)

    src.connect("select-stream", on_select)

    def on_pad(_src, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        media = caps.get_structure(0).get_value("media")
        target = vbin if media == "video" else abin if media == "audio" else None
        if target is None:
            return
        sink = target.get_static_pad("sink")
        if not sink.is_linked():
            pad.link(sink)

    src.connect("pad-added", on_pad)

    def depay_probe(_pad, info):
        buf = info.get_buffer()
        meta = buf.get_reference_timestamp_meta(ntp_caps)
        if meta is not None and buf.pts != Gst.CLOCK_TIME_NONE:
            ntp_by_pts[buf.pts] = meta.timestamp
            if len(ntp_by_pts) > 600:
                for k in sorted(ntp_by_pts)[:300]:
                    del ntp_by_pts[k]
        return Gst.PadProbeReturn.OK

    vbin.get_by_name("vdepay").get_static_pad("src").add_probe(
        Gst.PadProbeType.BUFFER, depay_probe
    )

    def dec_probe(pad, info):
        now_wall_ns = time.time_ns()
        now_mono = time.monotonic()
        buf = info.get_buffer()
        st["frames"] += 1
        if st["first"] is None:
            st["first"] = now_mono
        ntp = ntp_by_pts.get(buf.pts)
        if ntp is None:
            meta = buf.get_reference_timestamp_meta(ntp_caps)
            ntp = meta.timestamp if meta is not None else None
        sr_capture_ns = None
        if ntp is None:
            st["no_sr"] += 1
        else:
            sr_capture_ns = ntp - NTP_UNIX_OFFSET_S * 1_000_000_000
            st["lat"].append((now_wall_ns - sr_capture_ns) / 1e6)
        if args.ocr:
            s = pad.get_current_caps().get_structure(0)
            w, h = s.get_value("width"), s.get_value("height")
            ok, mi = buf.map(Gst.MapFlags.READ)
            if ok:
                try:
                    # I420 from avdec_h264: luma first, stride = width rounded up to 4.
                    drawn = read_card_time_ms(mi.data, (w + 3) & ~3, w, h)
                finally:
                    buf.unmap(mi)
                if drawn is None:
                    st["ocr_fail"] += 1
                else:
                    day_ms = 86_400_000
                    now_ms = (now_wall_ns // 1_000_000) % day_ms
                    st["ocr_lat"].append((now_ms - drawn) % day_ms)
                    if sr_capture_ns is not None:
                        sr_ms = (sr_capture_ns / 1e6) % day_ms
                        d = (drawn - sr_ms + day_ms / 2) % day_ms - day_ms / 2
                        st["ocr_minus_sr"].append(d)
        return Gst.PadProbeReturn.OK

    dec_src = vbin.get_by_name("vdec").get_static_pad("src")
    dec_src.add_probe(Gst.PadProbeType.BUFFER, dec_probe)

    if abin is not None:

        def audio_probe(_pad, _info):
            st["audio_buffers"] += 1
            return Gst.PadProbeReturn.OK

        abin.get_by_name("asink").get_static_pad("sink").add_probe(
            Gst.PadProbeType.BUFFER, audio_probe
        )

    loop = GLib.MainLoop()
    errors = []

    def on_msg(_bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            errors.append(f"{err.message} ({dbg})")
            loop.quit()
        elif msg.type == Gst.MessageType.EOS:
            loop.quit()

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_msg)

    t_play = time.monotonic()
    t_play_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    pipeline.set_state(Gst.State.PLAYING)
    GLib.timeout_add(int(args.duration * 1000), loop.quit)
    loop.run()
    pipeline.set_state(Gst.State.NULL)

    first_ms = None if st["first"] is None else (st["first"] - t_play) * 1e3
    first_exec_ms = None
    if first_ms is not None and exec_t is not None:
        first_exec_ms = (t_play_boot - exec_t) * 1e3 + first_ms

    def pct(v):
        return {"p50": pick(v, 0.5), "p95": pick(v, 0.95), "samples": len(v)}

    out = {
        "source": args.url,
        "pipeline": "rtspsrc latency=0 ! " + vdesc + (" + rtpopusdepay ! opusdec ! fakesink" if args.audio else ""),
        "duration_s": args.duration,
        "video": {"frames_decoded": st["frames"]},
        "audio": {"buffers_decoded": st["audio_buffers"]},
        "first_frame_ms": first_ms,
        "first_frame_from_exec_ms": first_exec_ms,
        "latency_ms": pct(st["lat"]),
        "frames_without_sr_time": st["no_sr"],
        "errors": errors,
    }
    if args.ocr:
        out["ocr"] = {
            "latency_ms": pct(st["ocr_lat"]),
            "drawn_minus_sr_ms": {
                "p5": pick(st["ocr_minus_sr"], 0.05),
                "p50": pick(st["ocr_minus_sr"], 0.5),
                "p95": pick(st["ocr_minus_sr"], 0.95),
                "samples": len(st["ocr_minus_sr"]),
            },
            "unreadable_frames": st["ocr_fail"],
        }
    text = json.dumps(out, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
