import socket, sys, struct, time
port = int(sys.argv[1])
s = socket.create_connection(('127.0.0.1', port))
url = 'rtsp://127.0.0.1:%d/test' % port
buf = b''
def req(text):
    global buf
    s.sendall(text.encode())
    while b'\r\n\r\n' not in buf:
        buf += s.recv(65536)
    head, rest = buf.split(b'\r\n\r\n', 1)
    clen = 0
    for line in head.split(b'\r\n'):
        if line.lower().startswith(b'content-length:'):
            clen = int(line.split(b':')[1])
    while len(rest) < clen:
        rest += s.recv(65536)
    body, buf = rest[:clen], rest[clen:]
    return head.decode(), body
h, sdp = req('DESCRIBE %s RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n' % url)
print(h, file=sys.stderr)
open('gstreamer_h264_opus.sdp', 'wb').write(sdp)
h, _ = req('SETUP %s/stream=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n' % url)
print(h, file=sys.stderr)
sess = [l for l in h.split('\r\n') if l.lower().startswith('session:')][0].split(':',1)[1].split(';')[0].strip()
h, _ = req('SETUP %s/stream=1 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=2-3\r\nSession: %s\r\n\r\n' % (url, sess))
print(h, file=sys.stderr)
s.sendall(('PLAY %s RTSP/1.0\r\nCSeq: 4\r\nSession: %s\r\n\r\n' % (url, sess)).encode())
# read for ~6 seconds (RTCP SR typically every ~5s)
out = open('gstreamer_interleaved.bin', 'wb')
deadline = time.time() + 6.5
s.settimeout(0.2)
while time.time() < deadline:
    try:
        d = s.recv(65536)
    except socket.timeout:
        continue
    if not d: break
    buf += d
# buf now holds the PLAY response then interleaved frames; strip the response
i = buf.find(b'\r\n\r\n')
print(buf[:i].decode(), file=sys.stderr)
rest = buf[i+4:]
out.write(rest)
frames = 0; per = {}
j = 0
while j + 4 <= len(rest) and rest[j] == 0x24:
    ch = rest[j+1]; n = struct.unpack('>H', rest[j+2:j+4])[0]
    if j + 4 + n > len(rest): break
    per[ch] = per.get(ch, 0) + 1
    j += 4 + n
print('frames per channel', per, 'parsed bytes', j, 'of', len(rest), file=sys.stderr)
s.sendall(('TEARDOWN %s RTSP/1.0\r\nCSeq: 5\r\nSession: %s\r\n\r\n' % (url, sess)).encode())
