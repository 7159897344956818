"""Trims raw captures to the small files kept here (run from the capture directory).

gstreamer_interleaved.bin (from rtsp_capture.py) -> gstreamer_h264_opus_interleaved.bin:
  video RTP (channel 0) up to the third marker bit, the first 10 Opus packets (channel 2),
  every RTCP packet (channels 1 and 3).
ffmpeg_h264_rtp.bin (from udp_capture.py, [u8 port index][u16 len][datagram]) ->
ffmpeg_h264_udp.bin: the first 30 RTP datagrams and every RTCP one, re-framed as
'$' channel len (channel 0 = RTP port, 1 = RTCP port).
"""
import struct

data = open('gstreamer_interleaved.bin', 'rb').read()
j = 0; out = b''; markers = 0; audio = 0
while j + 4 <= len(data):
    ch = data[j + 1]; n = struct.unpack('>H', data[j + 2:j + 4])[0]
    frame = data[j:j + 4 + n]; p = frame[4:]; j += 4 + n
    if ch == 0 and markers < 3:
        out += frame
        if p[1] >> 7:
            markers += 1
    elif ch == 2 and audio < 10:
        out += frame; audio += 1
    elif ch in (1, 3):
        out += frame
open('gstreamer_h264_opus_interleaved.bin', 'wb').write(out)

data = open('ffmpeg_h264_rtp.bin', 'rb').read()
j = 0; out = b''; k = 0
while j < len(data):
    idx = data[j]; n = struct.unpack('>H', data[j + 1:j + 3])[0]; p = data[j + 3:j + 3 + n]; j += 3 + n
    if idx == 1 or k < 30:
        out += struct.pack('>BBH', 0x24, idx, n) + p
    if idx == 0:
        k += 1
open('ffmpeg_h264_udp.bin', 'wb').write(out)
