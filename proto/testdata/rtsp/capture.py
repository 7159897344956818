#!/usr/bin/env python3
"""Canned RTSP 1.0 server used to capture what real peers send (see README.md here).

Usage: capture.py PREFIX [PORT]. Requests are saved, byte for byte, as
PREFIX_<method>.txt (the first of each method) and
PREFIX_<method>_2.txt (the second); the first interleaved frame as
PREFIX_interleaved.bin. Replies are canned: OPTIONS -> Public, DESCRIBE -> one
H.264 track SDP (or 401 once with Digest if PREFIX contains "auth"), SETUP ->
echo the transport with server ports/interleaved channels, PLAY -> Range + RTP-Info, anything else -> 200.
"""
import socket
import sys
import threading

PREFIX = sys.argv[1]
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 18554
SDP = (
    b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=live\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
    b"a=control:*\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    b"a=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n"
)
seen = set()
lock = threading.Lock()
challenged = [False]


def read_request(conn, buf):
    while not buf:
        d = conn.recv(65536)
        if not d:
            return None, buf
        buf += d
    if buf[:1] == b"$":  # interleaved frame (RFC 2326 10.12): keep the first, skip the rest
        while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[2:4], "big"):
            d = conn.recv(65536)
            if not d:
                return None, buf
            buf += d
        n = 4 + int.from_bytes(buf[2:4], "big")
        with lock:
            if "interleaved" not in seen:
                seen.add("interleaved")
                with open(f"{PREFIX}_interleaved.bin", "wb") as f:
                    f.write(buf[:n])
        return read_request(conn, buf[n:])
    while b"\r\n\r\n" not in buf and b"\n\n" not in buf:
        d = conn.recv(65536)
        if not d:
            return None, buf
        buf += d
    end = buf.find(b"\r\n\r\n")
    end = end + 4 if end >= 0 else buf.find(b"\n\n") + 2
    head = buf[:end].decode("latin-1")
    length = 0
    for line in head.splitlines()[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    while len(buf) < end + length:
        d = conn.recv(65536)
        if not d:
            return None, buf
        buf += d
    return buf[: end + length], buf[end + length:]


def header(req, name):
    for line in req.decode("latin-1").splitlines()[1:]:
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return None


def handle(conn):
    buf = b""
    while True:
        req, buf = read_request(conn, buf)
        if req is None:
            return
        method = req.split(b" ", 1)[0].decode("latin-1")
        with lock:
            name = f"{PREFIX}_{method.lower()}"
            if name in seen:
                name += "_2"
            if name not in seen:
                seen.add(name)
                with open(name + ".txt", "wb") as f:
                    f.write(req)
        cseq = header(req, "CSeq") or "0"
        status = "200 OK"
        extra = ""
        body = b""
        if method == "OPTIONS":
            extra = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER\r\n"
        elif method == "DESCRIBE":
            if "auth" in PREFIX and not challenged[0]:
                challenged[0] = True
                status = "401 Unauthorized"
                extra = 'WWW-Authenticate: Digest realm="livecast", nonce="0123456789abcdef"\r\n'
                if "auth2" in PREFIX:
                    # As livecast-server challenges: SHA-256 first, MD5 last.
                    extra = (
                        'WWW-Authenticate: Digest realm="livecast", nonce="0123456789abcdef", algorithm=SHA-256\r\n'
                        + extra
                    )
            else:
                url = req.split(b" ")[1].decode("latin-1")
                extra = f"Content-Base: {url}/\r\nContent-Type: application/sdp\r\n"
                body = SDP
        elif method == "SETUP":
            t = header(req, "Transport") or ""
            t = t.split(",")[0]
            if "TCP" in t:
                if "interleaved" not in t:
                    t += ";interleaved=0-1"
            else:
                t += ";server_port=6970-6971"
            extra = f"Transport: {t};ssrc=1A2B3C4D\r\nSession: 12345678;timeout=60\r\n"
        elif method == "PLAY":
            url = req.split(b" ")[1].decode("latin-1").rstrip("/")
            extra = (
                "Session: 12345678\r\nRange: npt=0.000-\r\n"
                f"RTP-Info: url={url}/trackID=0;seq=1;rtptime=0\r\n"
            )
        resp = f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n{extra}"
        if body:
            resp += f"Content-Length: {len(body)}\r\n"
        conn.sendall(resp.encode() + b"\r\n" + body)


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", PORT))
srv.listen()
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
