#!/usr/bin/env python3
"""Measurements for the live-captions benchmark (scripts/bench-captions.sh). Python stdlib only.

Subcommands:
  synth        espeak-ng speech (through libespeak-ng with ctypes) -> WAV + each word's start/end
               in the WAV (word events from the synthesizer itself; ends from the energy).
  rtsp-text    A minimal RTSP client that plays only the text track (RTP/AVP/TCP interleaved),
               unpacks RFC 2198 RED / T.140, and writes each received block with its arrival
               time and its spoken time (RTP timestamp -> wall clock via RTCP sender reports).
  stamp-lines  Runs a command and writes each stdout line/update ('\\n' or '\\r') with the time
               it arrived (for whisper.cpp's stream example).
  wer          Word error rate of a hypothesis text against a reference text.
  analyze      One speech file: WER (player, text client, whisper-cli greedy/beam) and caption
               delay (livecast, whisper-stream) -> JSON.
  cpu-threads  CPU seconds per second of each thread of a process over a window
               (/proc/PID/task/*/stat), by thread name.
  summary      Several analyze outputs -> a Markdown table.
  pool         WER and delay pooled over several analyze outputs (for replays).
"""

import argparse
import array
import ctypes
import json
import math
import os
import re
import select
import socket
import statistics
import struct
import subprocess
import sys
import time
import wave

# ---------------------------------------------------------------------------------------------
# Text normalization and WER

_NUM = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _int_words(n):
    """An integer as English words, without "and": 250 -> two hundred fifty."""
    if n < 20:
        return [_NUM[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_NUM[n % 10]] if n % 10 else [])
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"),
                       (100, "hundred")):
        if n >= size:
            return _int_words(n // size) + [name] + (_int_words(n % size) if n % size else [])
    return [str(n)]


def _num_words(n):
    """A number as people say it: years 1100-1999 and 2010-2099 in pairs (nineteen ninety
    eight, twenty thirty one), others as _int_words."""
    if 1100 <= n <= 2099 and not 2000 <= n <= 2009 and n % 100 != 0:
        hi, lo = divmod(n, 100)
        return _int_words(hi) + (["oh", _NUM[lo]] if lo < 10 else _int_words(lo))
    if n >= 10**12:
        return None
    return _int_words(n)


_NUMBER_WORDS = set(_NUM) | set(_TENS[2:]) | {"hundred", "thousand", "million", "billion"}


def normalize(text, numbers=False):
    """Lowercase, T.140 line separators and hyphens to spaces, punctuation (apostrophes too)
    removed. numbers=True also writes every integer as words the way it is spoken (as TTS
    reads "1998" and whisper may write either), "%" as "percent", and drops the "and" inside
    a spoken number (two hundred and fifty)."""
    t = text.lower().replace("\u2028", " ").replace("\u2029", " ").replace("-", " ")
    t = t.replace("\u2019", "'")
    if numbers:
        t = re.sub(r"(?<=\d),(?=\d{3})", "", t).replace("%", " percent")
    t = re.sub(r"[^a-z0-9' ]+", " ", t).replace("'", "")
    out = []
    for w in t.split():
        if numbers and w.isdigit() and _num_words(int(w)):
            out.extend(_num_words(int(w)))
        else:
            out.append(w)
    if numbers:
        out = [w for k, w in enumerate(out)
               if not (w == "and" and 0 < k < len(out) - 1
                       and out[k - 1] in ("hundred", "thousand", "million", "billion")
                       and out[k + 1] in _NUMBER_WORDS)]
    return out


def align(ref, hyp):
    """Levenshtein alignment of two word lists: (distance, ops), ops = list of
    (op, i, j) with op in {'ok','sub','del','ins'} (i index in ref or None, j in hyp or None)."""
    n, m = len(ref), len(hyp)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            c = 0 if ref[i - 1] == hyp[j - 1] else 1
            d[i][j] = min(d[i - 1][j - 1] + c, d[i - 1][j] + 1, d[i][j - 1] + 1)
    ops = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i][j] == d[i - 1][j - 1] + (0 if ref[i - 1] == hyp[j - 1] else 1):
            ops.append(("ok" if ref[i - 1] == hyp[j - 1] else "sub", i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and d[i][j] == d[i - 1][j] + 1:
            ops.append(("del", i - 1, None))
            i -= 1
        else:
            ops.append(("ins", None, j - 1))
            j -= 1
    ops.reverse()
    return d[n][m], ops


def wer(ref_text, hyp_text, numbers=False):
    ref, hyp = normalize(ref_text, numbers), normalize(hyp_text, numbers)
    dist, ops = align(ref, hyp)
    counts = {k: sum(1 for o in ops if o[0] == k) for k in ("ok", "sub", "del", "ins")}
    errors = [(o[0], ref[o[1]] if o[1] is not None else "", hyp[o[2]] if o[2] is not None else "")
              for o in ops if o[0] != "ok"]
    return {"wer": dist / max(1, len(ref)), "ref_words": len(ref), "hyp_words": len(hyp),
            "errors_total": dist, **counts, "errors": errors}


# ---------------------------------------------------------------------------------------------
# Speech synthesis with word times (libespeak-ng through ctypes)

class _EspeakEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_int64)]


def espeak_pcm(text, voice, speed):
    """Speaks `text` with espeak-ng: (rate, samples as array('h'), words), each word a dict
    with its text and start/end in samples (starts from the synthesizer's word events, ends
    from the energy: the last 10 ms frame with sound before the next word starts)."""
    lib = ctypes.CDLL("libespeak-ng.so.1")
    rate = lib.espeak_Initialize(2, 0, None, 0)  # AUDIO_OUTPUT_SYNCHRONOUS
    if rate <= 0:
        sys.exit("espeak_Initialize failed")
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        # a language such as en-gb (what `espeak-ng -v en-gb` accepts) rather than a voice name
        class Voice(ctypes.Structure):
            _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p),
                        ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte),
                        ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                        ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int),
                        ("spare", ctypes.c_void_p)]
        v = Voice(languages=voice.encode())
        if lib.espeak_SetVoiceByProperties(ctypes.byref(v)) != 0:
            sys.exit(f"espeak-ng: no voice {voice}")
    lib.espeak_SetParameter(1, int(speed), 0)  # espeakRATE
    samples = array.array("h")
    words = []  # (char position, length, sample index)
    CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                          ctypes.POINTER(_EspeakEvent))

    def cb(wav, n, events):
        k = 0
        while events[k].type != 0:
            e = events[k]
            if e.type == 1:  # espeakEVENT_WORD; e.sample is not set in sync mode
                words.append((e.text_position, e.length, len(samples)))
            k += 1
        if n > 0 and wav:
            samples.extend(wav[:n])
        return 0

    keep = CB(cb)
    lib.espeak_SetSynthCallback(keep)
    data = text.encode("utf-8") + b"\0"
    lib.espeak_Synth(data, len(data), 0, 1, 0, 0, None, None)  # POS_CHARACTER, espeakCHARS_AUTO
    lib.espeak_Synchronize()
    frame = rate // 100
    energy = []
    for i in range(0, len(samples), frame):
        chunk = samples[i:i + frame]
        energy.append(10 * math.log10(sum(v * v for v in chunk) / max(1, len(chunk)) + 1e-9))
    floor = max(energy) - 40.0
    tb = text.encode("utf-8")
    out = []
    for k, (pos, length, start) in enumerate(words):
        end_lim = words[k + 1][2] if k + 1 < len(words) else len(samples)
        f0, f1 = start // frame, max(start // frame + 1, end_lim // frame)
        last = f0
        for f in range(f0, min(f1, len(energy))):
            if energy[f] > floor:
                last = f
        end = min(end_lim, (last + 1) * frame)
        wtext = tb[pos - 1:pos - 1 + length].decode("utf-8", "replace")
        out.append({"text": wtext, "start": start, "end": end})
    return rate, samples, out


def synth(text, voice, speed, pad_before, pad_after, out_wav, out_words):
    rate, samples, words = espeak_pcm(text, voice, speed)
    pre, post = int(pad_before * rate), int(pad_after * rate)
    pcm = array.array("h", bytes(2 * pre)) + samples + array.array("h", bytes(2 * post))
    with wave.open(out_wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    out = [{"text": w["text"], "start_s": (pre + w["start"]) / rate,
            "end_s": (pre + w["end"]) / rate} for w in words]
    json.dump({"voice": voice, "speed": speed, "rate": rate, "duration_s": len(pcm) / rate,
               "speech_s": len(samples) / rate, "pad_before_s": pad_before, "text": text,
               "words": out}, open(out_words, "w"), indent=1)
    print(f"{out_wav}: {len(out)} words, {len(samples) / rate:.1f} s of speech, "
          f"{len(pcm) / rate:.1f} s in all")


# ---------------------------------------------------------------------------------------------
# RTSP text-track client


def _rtsp_request(sock, buf, method, url, cseq, headers=()):
    req = f"{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n" + "".join(h + "\r\n" for h in headers)
    sock.sendall((req + "\r\n").encode())
    while True:
        resp, rest = _take_response(buf[0])
        if resp is not None:
            buf[0] = rest
            return resp
        data = sock.recv(65536)
        if not data:
            raise SystemExit("rtsp: connection closed")
        buf[0] += data


def _take_response(b):
    """Skips interleaved frames; returns (response_text_or_None, rest)."""
    while b.startswith(b"$"):
        if len(b) < 4:
            return None, b
        n = struct.unpack(">H", b[2:4])[0]
        if len(b) < 4 + n:
            return None, b
        b = b[4 + n:]
    i = b.find(b"\r\n\r\n")
    if i < 0:
        return None, b
    head = b[:i].decode("latin-1")
    m = re.search(r"(?im)^content-length:\s*(\d+)", head)
    n = int(m.group(1)) if m else 0
    if len(b) < i + 4 + n:
        return None, b
    return head + "\r\n\r\n" + b[i + 4:i + 4 + n].decode("latin-1"), b[i + 4 + n:]


def _red_primary(payload):
    """RFC 2198: returns (primary block bytes, [(ts_offset, bytes)] redundant blocks)."""
    hdrs, p = [], 0
    while p < len(payload) and payload[p] & 0x80:
        ts_off = (payload[p + 1] << 6) | (payload[p + 2] >> 2)
        blen = ((payload[p + 2] & 0x03) << 8) | payload[p + 3]
        hdrs.append((ts_off, blen))
        p += 4
    p += 1
    red = []
    for ts_off, blen in hdrs:
        red.append((ts_off, payload[p:p + blen]))
        p += blen
    return payload[p:], red


def rtsp_text(url, duration, out):
    host, port = re.match(r"rtsp://([^/:]+):(\d+)/", url).groups()
    sock = socket.create_connection((host, int(port)), timeout=10)
    buf = [b""]
    resp = _rtsp_request(sock, buf, "DESCRIBE", url, 1, ["Accept: application/sdp"])
    base = re.search(r"(?im)^content-base:\s*(\S+)", resp)
    base = base.group(1) if base else url.rstrip("/") + "/"
    sdp = resp.split("\r\n\r\n", 1)[1]
    m = re.search(r"m=text[^\n]*\n((?:(?!m=).*\n?)*)", sdp)
    if not m:
        raise SystemExit("rtsp-text: no m=text in the SDP (captions off?)")
    control = re.search(r"a=control:(\S+)", m.group(1)).group(1)
    track_url = control if control.startswith("rtsp:") else base + control
    resp = _rtsp_request(sock, buf, "SETUP", track_url, 2,
                         ["Transport: RTP/AVP/TCP;unicast;interleaved=0-1"])
    session = re.search(r"(?im)^session:\s*([^;\s]+)", resp).group(1)
    _rtsp_request(sock, buf, "PLAY", base, 3, [f"Session: {session}", "Range: npt=0-"])
    play_unix = time.time()
    blocks, srs, packets = [], [], 0
    end = time.monotonic() + duration
    next_keepalive = time.monotonic() + 20
    cseq = 4
    b = buf[0]
    sock.setblocking(False)
    while time.monotonic() < end:
        if time.monotonic() > next_keepalive:
            sock.sendall(f"OPTIONS {url} RTSP/1.0\r\nCSeq: {cseq}\r\nSession: {session}\r\n\r\n"
                         .encode())
            cseq += 1
            next_keepalive += 20
        r, _, _ = select.select([sock], [], [], 0.2)
        if not r:
            continue
        data = sock.recv(65536)
        now = time.time()
        if not data:
            break
        b += data
        while b:
            if b.startswith(b"$"):
                if len(b) < 4:
                    break
                ch, n = b[1], struct.unpack(">H", b[2:4])[0]
                if len(b) < 4 + n:
                    break
                pkt, b = b[4:4 + n], b[4 + n:]
                if ch == 0 and len(pkt) >= 12:
                    packets += 1
                    cc = pkt[0] & 0x0F
                    seq, ts = struct.unpack(">HI", pkt[2:8])
                    hlen = 12 + 4 * cc
                    if pkt[0] & 0x10:  # extension
                        hlen += 4 + 4 * struct.unpack(">H", pkt[hlen + 2:hlen + 4])[0]
                    body = pkt[hlen:]
                    if pkt[0] & 0x20:
                        body = body[:-body[-1]]
                    prim, _red = _red_primary(body)
                    text = prim.decode("utf-8", "replace").replace("\ufeff", "")
                    if text:
                        blocks.append({"seq": seq, "rtp_ts": ts, "arrival_unix_ms": now * 1000,
                                       "text": text})
                elif ch == 1:
                    p = 0
                    while p + 4 <= len(pkt):
                        pt = pkt[p + 1]
                        ln = (struct.unpack(">H", pkt[p + 2:p + 4])[0] + 1) * 4
                        if pt == 200 and p + 20 <= len(pkt):
                            sec, frac, rts = struct.unpack(">III", pkt[p + 8:p + 20])
                            srs.append({"ntp_unix_ms": (sec - 2208988800 + frac / 2**32) * 1000,
                                        "rtp_ts": rts, "arrival_unix_ms": now * 1000})
                        p += ln
            else:
                resp, rest = _take_response(b)
                if resp is None:
                    break
                b = rest
    try:
        sock.setblocking(True)
        sock.sendall(f"TEARDOWN {base} RTSP/1.0\r\nCSeq: {cseq}\r\nSession: {session}\r\n\r\n"
                     .encode())
    except OSError:
        pass
    sock.close()
    # Spoken time of each block: its RTP timestamp (1 kHz) through the last sender report.
    for blk in blocks:
        if srs:
            sr = srs[-1]
            dt = ((blk["rtp_ts"] - sr["rtp_ts"] + 2**31) % 2**32) - 2**31
            blk["spoken_unix_ms"] = sr["ntp_unix_ms"] + dt
    json.dump({"url": url, "play_unix_ms": play_unix * 1000, "packets": packets,
               "sender_reports": srs, "blocks": blocks}, open(out, "w"), indent=1)
    print(f"rtsp-text: {packets} packets, {len(blocks)} text blocks, {len(srs)} sender reports")


# ---------------------------------------------------------------------------------------------
# Timestamped stdout


def stamp_lines(out, cmd):
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    lines, partial, errbuf, partial_t = [], b"", b"", 0.0
    fds = {p.stdout.fileno(): "out", p.stderr.fileno(): "err"}
    while fds:
        r, _, _ = select.select(list(fds), [], [], 0.5)
        for fd in r:
            data = os.read(fd, 65536)
            now = time.time() * 1000
            if not data:
                del fds[fd]
                continue
            if fds[fd] == "err":
                errbuf += data
                for ln in errbuf.split(b"\n")[:-1]:
                    lines.append({"t_unix_ms": now, "stream": "err",
                                  "text": ln.decode("utf-8", "replace")})
                errbuf = errbuf.split(b"\n")[-1]
                continue
            # whisper-stream rewrites its current line ("\x1b[2K\r" + text, no newline):
            # a piece of text is stamped with the time of the read that brought its last
            # visible character, not with the time of the '\r' or '\n' that ends it.
            parts = re.split(rb"[\r\n]", data)
            for k, part in enumerate(parts):
                partial += part
                if re.sub(rb"\x1b\[[0-9;]*[A-Za-z]", b"", part).strip():
                    partial_t = now
                if k < len(parts) - 1:
                    ln = re.sub(rb"\x1b\[[0-9;]*[A-Za-z]", b"", partial).decode("utf-8", "replace")
                    if ln.strip():
                        lines.append({"t_unix_ms": partial_t, "stream": "out", "text": ln})
                    partial = b""
    ln = re.sub(rb"\x1b\[[0-9;]*[A-Za-z]", b"", partial).decode("utf-8", "replace")
    if ln.strip():
        lines.append({"t_unix_ms": partial_t, "stream": "out", "text": ln})
    p.wait()
    json.dump({"cmd": cmd, "start_unix_ms": t0 * 1000, "rc": p.returncode, "lines": lines},
              open(out, "w"), indent=1)


# ---------------------------------------------------------------------------------------------
# Analysis


def _pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    f = math.floor(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def _server_log_anchor(path):
    """Wall time (unix ms) of the log line 'sources started' (the WAV starts playing then; a
    debug line: RUST_LOG=livecast_server::pipeline=debug) and how many audio frames the WAV
    source skipped, plus the 'caption sent' times."""
    anchor, skipped, sent, drops, passes = None, 0, [], [], []
    for ln in open(path, errors="replace"):
        ln = re.sub(r"\x1b\[[0-9;]*m", "", ln)
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", ln)
        if not m:
            continue
        ts = m.group(1)
        secs = time.mktime(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        t = (secs + float("0" + ts[19:])) * 1000
        if "sources started" in ln and anchor is None:
            anchor = t
        if "wav fell behind" in ln:
            mm = re.search(r"total=(\d+)", ln)
            skipped = int(mm.group(1)) if mm else skipped
        if "caption sent" in ln:
            sent.append(t)
        if "dropping frames" in ln:
            mm = re.search(r"dropped=(\d+)", ln)
            drops.append(int(mm.group(1)) if mm else 1)
        if "whisper pass" in ln:
            mm = re.search(r"audio_ms=(\d+) ms=(\d+)", ln)
            if mm:
                passes.append((int(mm.group(1)), int(mm.group(2))))
        if "dropping audio for captions" in ln:
            mm = re.search(r"dropped_frames=(\d+)", ln)
            drops.append(-int(mm.group(1)) if mm else -1)
    return {"sources_started_unix_ms": anchor, "wav_frames_skipped": skipped,
            "caption_sent_unix_ms": sent,
            "video_frames_dropped": max([d for d in drops if d > 0], default=0),
            "caption_audio_frames_dropped": -min([d for d in drops if d < 0], default=0),
            "whisper_passes": passes}


def settle(blocks):
    """Blocks of T.140 text as sent, with BACKSPACE (U+0008) erasing the character before it
    (tentative words corrected), turned into the text that stayed: blocks of final words, each
    word owned by the block that completed its final form (its arrival is when the viewer
    first saw the word as it stayed), with that block's times."""
    chars = []  # (char, index of the block that wrote it)
    for k, b in enumerate(blocks):
        for ch in b["text"]:
            if ch == "\b":
                if chars:
                    chars.pop()
            else:
                chars.append((ch, k))
    if not any(ch == "\b" for b in blocks for ch in b["text"]):
        return blocks
    out, word, owner = [], "", -1

    def flush():
        nonlocal word, owner
        if word:
            b = dict(blocks[owner])
            b["text"] = word
            if out and out[-1]["_owner"] == owner:
                out[-1]["text"] += " " + word
            else:
                b["_owner"] = owner
                out.append(b)
        word, owner = "", -1

    for ch, k in chars:
        if ch.isspace() or ch in "\u2028\u2029":
            flush()
        else:
            word += ch
            owner = max(owner, k)
    flush()
    for b in out:
        del b["_owner"]
    return out


def _block_words(blocks, numbers=False):
    """Hypothesis words (normalized) with the index of the block each came from."""
    words, owner = [], []
    for k, b in enumerate(blocks):
        for w in normalize(b["text"], numbers):
            words.append(w)
            owner.append(k)
    return words, owner


def _whisper_json_text(path):
    d = json.load(open(path))
    return " ".join(s["text"] for s in d["transcription"]
                    if not s["text"].strip().startswith("["))


def _stream_first_seen(stream, ref, words_ref_end, wav_start_unix):
    """For whisper-stream: when each reference word first appears in an output update.
    Each update's words are aligned against the reference words near the audio fed so far."""
    first = {}
    for ln in stream["lines"]:
        if ln["stream"] != "out":
            continue
        hyp = normalize(ln["text"])
        if not hyp:
            continue
        fed_s = (ln["t_unix_ms"] - wav_start_unix) / 1000
        # candidate reference window: words that ended within the last 12 s of fed audio
        idx = [i for i, e in enumerate(words_ref_end) if fed_s - 12.5 <= e <= fed_s + 0.5]
        if not idx:
            continue
        lo, hi = idx[0], idx[-1] + 1
        _, ops = align(ref[lo:hi], hyp)
        # trim leading/trailing deletions: the window may be wider than the update
        for op, i, j in ops:
            if op == "ok" and (lo + i) not in first:
                first[lo + i] = ln["t_unix_ms"]
    return first


def analyze(args):
    words = json.load(open(args.words))
    ref_text = words["text"]
    ref = normalize(ref_text, args.numbers)
    # Reference words get the times of the synthesizer's word events, matched by alignment.
    # espeak-ng sometimes reports an unstressed word together with the next one ("the old"
    # gives one event, at "old"): such a word shares that event's interval, split by length.
    ev = [(n, w["start_s"], w["end_s"]) for w in words["words"]
          for n in normalize(w["text"], args.numbers)]
    _, ops = align(ref, [e[0] for e in ev])
    times = [None] * len(ref)
    for op, i, j in ops:
        if i is not None and j is not None:
            times[i] = [ev[j][1], ev[j][2]]
    for i in range(len(ref)):
        if times[i] is None:
            k = next((k for k in range(i + 1, len(ref)) if times[k]), None)
            if k is None:
                times[i] = list(times[i - 1])
                continue
            s0, e0 = times[k]
            run = ref[i:k + 1]
            frac0 = sum(len(w) for w in ref[i:i]) / sum(len(w) for w in run)
            frac1 = len(ref[i]) / sum(len(w) for w in run)
            times[i] = [s0 + (e0 - s0) * frac0, s0 + (e0 - s0) * frac1]
            times[k][0] = times[i][1] if k == i + 1 else times[k][0]
    ref_start = [t[0] for t in times]
    ref_end = [t[1] for t in times]
    unmatched_events = sum(1 for op, i, j in ops if op != "ok")
    res = {"name": args.name, "voice": words["voice"], "speed": words["speed"],
           "ref_words": len(ref), "speech_s": round(words["speech_s"], 2),
           "word_events_not_matching_reference": unmatched_events}

    player = json.load(open(args.player)) if args.player else None
    client = json.load(open(args.client)) if args.client else None
    log = _server_log_anchor(args.server_log) if args.server_log else {}

    if player is not None:
        ptext = " ".join(c["text"] for c in player.get("captions", []))
        res["player_caption_text"] = ptext
        res["wer_player"] = wer(ref_text, ptext, numbers=args.numbers)
        res["wer_player_numbers"] = wer(ref_text, ptext, numbers=True)["wer"]
        res["player_caption_blocks"] = len(player.get("caption_blocks") or [])
    if client is not None:
        client["blocks"] = settle(client["blocks"])
        ctext = " ".join(b["text"] for b in client["blocks"])
        res["wer_client"] = wer(ref_text, ctext, numbers=args.numbers)
    for key, path in (("wer_whisper_cli_greedy", args.cli_greedy),
                      ("wer_whisper_cli_beam", args.cli_beam),
                      ("wer_whisper_cli_greedy_trimmed", args.cli_greedy_trimmed),
                      ("wer_whisper_cli_beam_trimmed", args.cli_beam_trimmed)):
        if path:
            t = _whisper_json_text(path)
            res[key] = wer(ref_text, t, numbers=args.numbers)
            res[key]["text"] = t
            res[key + "_numbers"] = wer(ref_text, t, numbers=True)["wer"]

    # ---- livecast delay: blocks (player's if it reported them, else the text client's)
    blocks, source = None, None
    if player is not None and player.get("caption_blocks"):
        blocks, source = settle(player["caption_blocks"]), "player"
    elif client is not None and client["blocks"]:
        blocks, source = client["blocks"], "rtsp-text client"
    if blocks:
        hyp, owner = _block_words(blocks, args.numbers)
        _, ops = align(ref, hyp)
        pairs = [(i, j) for op, i, j in ops if op == "ok"]
        # WAV time -> server wall clock. (a) the server's log line 'sources started' (the
        # WAV's first sample is captured then); (b) fit: spoken time of each block minus the
        # WAV start time of its first word, median over blocks.
        resid = []
        seen_blocks = set()
        for i, j in pairs:
            k = owner[j]
            if k in seen_blocks or "spoken_unix_ms" not in blocks[k]:
                continue
            # only if the block's first word is this word
            if owner.index(k) != j:
                continue
            seen_blocks.add(k)
            resid.append(blocks[k]["spoken_unix_ms"] - ref_start[i] * 1000)
        fit = statistics.median(resid) if resid else None
        anchor = log.get("sources_started_unix_ms")
        res["clock"] = {
            "fit_offset_unix_ms": fit,
            "fit_blocks": len(resid),
            "fit_mad_ms": statistics.median([abs(r - fit) for r in resid]) if resid else None,
            "log_anchor_unix_ms": anchor,
            "log_minus_fit_ms": (anchor - fit) if (anchor and fit) else None,
            "wav_frames_skipped": log.get("wav_frames_skipped"),
        }
        # The WAV source keeps its audio contiguous when it skips frames (server fell behind
        # real time): from then on the file's audio is later than the log anchor says. So:
        # 'auto' = the log anchor if no frame was skipped, else a local fit (median over the
        # 7 blocks nearest in time).
        mode = args.clock
        if mode == "wav":  # times already in ms from the WAV's start (a replay)
            anchor, fit = 0.0, 0.0
            mode = "log"
        elif mode == "auto":
            mode = "log" if (anchor and not log.get("wav_frames_skipped")) else "local-fit"
        res["clock"]["used"] = mode
        offset = anchor if mode == "log" else fit
        starts = [ref_start[i] for i, j in pairs if owner.index(owner[j]) == j
                  and "spoken_unix_ms" in blocks[owner[j]]]

        def offset_at(t):
            if mode != "local-fit" or len(resid) < 3:
                return offset
            near = sorted(range(len(resid)), key=lambda k: abs(starts[k] - t))[:7]
            return statistics.median(resid[k] for k in near)
        delays = []
        for i, j in pairs:
            delays.append(blocks[owner[j]]["arrival_unix_ms"]
                          - (offset_at(ref_end[i]) + ref_end[i] * 1000))
        # text spoken in the silences (before the first word, or >1 s after the last one)
        first_s, last_s = ref_start[0], ref_end[-1]
        res["blocks_in_silence"] = [b["text"] for b in blocks if "spoken_unix_ms" in b and (
            b["spoken_unix_ms"] < offset + (first_s - 0.5) * 1000
            or b["spoken_unix_ms"] > offset + (last_s + 1.0) * 1000) and b["text"].strip()]
        res["delay_source"] = source
        res["delay_words_matched"] = len(delays)
        res["delay_ms"] = {"p50": _pct(delays, 0.5), "p95": _pct(delays, 0.95),
                           "min": min(delays), "max": max(delays), "mean": statistics.mean(delays)}
        res["delays_ms"] = [round(x) for x in delays]
        if client is not None and log.get("caption_sent_unix_ms"):
            # server send -> client arrival, pairing the k-th text block with the k-th log line
            sent = log["caption_sent_unix_ms"]
            arr = [b["arrival_unix_ms"] for b in client["blocks"]]
            n = min(len(sent), len(arr))
            res["server_send_to_arrival_ms_p50"] = _pct([arr[k] - sent[k] for k in range(n)], 0.5)
    if log:
        res["server"] = {k: v for k, v in log.items() if k not in ("caption_sent_unix_ms",
                                                                   "whisper_passes")}
        p = log.get("whisper_passes") or []
        if p:
            ms = [x[1] for x in p]
            res["server"]["whisper_passes"] = len(p)
            res["server"]["whisper_pass_ms_p50"] = _pct(ms, 0.5)
            res["server"]["whisper_pass_ms_p95"] = _pct(ms, 0.95)
            res["server"]["whisper_pass_ms_max"] = max(ms)
            res["server"]["whisper_pass_audio_ms_max"] = max(x[0] for x in p)

    # ---- whisper-stream delay
    if args.stream:
        st = json.load(open(args.stream))
        start = None
        for ln in st["lines"]:
            if "Start speaking" in ln["text"]:
                start = ln["t_unix_ms"]
                break
        if start is None:
            start = st["start_unix_ms"]
        first = _stream_first_seen(st, ref, ref_end, start)
        d = [first[i] - (start + ref_end[i] * 1000) for i in sorted(first)]
        res["stream_words_seen"] = len(d)
        res["stream_delays_ms"] = [round(x) for x in d]
        if d:
            res["stream_delay_ms"] = {"p50": _pct(d, 0.5), "p95": _pct(d, 0.95), "min": min(d),
                                      "max": max(d)}
        # the text it finally settled on: last update of each line (lines end with '\n')
        res["stream_updates"] = sum(1 for ln in st["lines"] if ln["stream"] == "out")
    json.dump(res, open(args.out, "w"), indent=1)
    print(json.dumps({k: v for k, v in res.items() if k in (
        "name", "ref_words", "delay_words_matched", "delay_ms", "stream_delay_ms", "clock")},
        indent=None))
    for k in ("wer_player", "wer_client", "wer_whisper_cli_greedy", "wer_whisper_cli_beam",
              "wer_whisper_cli_greedy_trimmed", "wer_whisper_cli_beam_trimmed"):
        if k in res:
            print(f"  {k}: {res[k]['wer']:.3f} ({res[k]['errors_total']}/{res[k]['ref_words']}) "
                  f"{res[k]['errors']}")


def _thread_times(pid):
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            st = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:
            continue
        name = st[st.index("(") + 1:st.rindex(")")]
        f = st[st.rindex(")") + 2:].split()
        out[tid] = (name, int(f[11]) + int(f[12]))  # utime + stime, clock ticks
    return out


def cpu_threads(pid, seconds, out):
    hz = os.sysconf("SC_CLK_TCK")
    a, t0 = _thread_times(pid), time.monotonic()
    load0 = open("/proc/loadavg").read().split()[0]
    time.sleep(seconds)
    b, t1 = _thread_times(pid), time.monotonic()
    per = {}
    for tid, (name, ticks) in b.items():
        d = ticks - a.get(tid, (name, 0))[1]
        per[name] = per.get(name, 0) + d / hz / (t1 - t0)
    res = {"pid": pid, "window_s": t1 - t0, "load_start": float(load0),
           "load_end": float(open("/proc/loadavg").read().split()[0]),
           "process_cpu_s_per_s": sum(per.values()),
           "threads": dict(sorted(per.items(), key=lambda kv: -kv[1]))}
    json.dump(res, open(out, "w"), indent=1)
    print(json.dumps(res))


def summary(paths):
    rs = [json.load(open(p)) for p in paths]

    def tot(key):
        e = sum(r[key]["errors_total"] for r in rs if key in r)
        n = sum(r[key]["ref_words"] for r in rs if key in r)
        return f"**{100 * e / n:.1f} %** ({e}/{n})" if n else "–"

    def f(x):
        return "–" if x is None else f"{x / 1000:.2f}"

    keys = ("wer_player", "wer_whisper_cli_greedy_trimmed", "wer_whisper_cli_beam_trimmed",
            "wer_whisper_cli_greedy", "wer_whisper_cli_beam")
    print("| file | voice, speed | words | WER livecast (player) | whisper-cli greedy | "
          "whisper-cli beam 5 | whisper-cli greedy, +15 s silence | whisper-cli beam 5, +15 s "
          "silence | delay p50 / p95 s, livecast | delay p50 / p95 s, whisper-stream |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    alld, alls = [], []
    for r in rs:
        def w(k):
            return f"{100 * r[k]['wer']:.1f} %" if k in r else "–"
        d, s = r.get("delay_ms", {}), r.get("stream_delay_ms", {})
        alld += r.get("delays_ms", [])
        alls += r.get("stream_delays_ms", [])
        print(f"| {r['name']} | {r['voice']}, {r['speed']} wpm | {r['ref_words']} | "
              + " | ".join(w(k) for k in keys)
              + f" | {f(d.get('p50'))} / {f(d.get('p95'))} (n={r.get('delay_words_matched')})"
              f" | {f(s.get('p50'))} / {f(s.get('p95'))} (n={r.get('stream_words_seen')}) |")
    print(f"| **all** | | {sum(r['ref_words'] for r in rs)} | "
          + " | ".join(tot(k) for k in keys)
          + f" | **{f(_pct(alld, 0.5))} / {f(_pct(alld, 0.95))}** (n={len(alld)})"
          f" | **{f(_pct(alls, 0.5))} / {f(_pct(alls, 0.95))}** (n={len(alls)}) |")


def pool(paths):
    """WER and delay over several analyze outputs of replays (the text client's blocks)."""
    e = n = 0
    d = []
    for p in paths:
        r = json.load(open(p))
        e += r["wer_client"]["errors_total"]
        n += r["wer_client"]["ref_words"]
        d += r.get("delays_ms", [])
    print(f"WER {100 * e / max(1, n):.1f} % ({e}/{n}), delay p50 {_pct(d, 0.5) / 1000:.2f} s, "
          f"p95 {_pct(d, 0.95) / 1000:.2f} s (n={len(d)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth")
    s.add_argument("--voice", default="en-us")
    s.add_argument("--speed", type=int, default=150)
    s.add_argument("--text-file", required=True)
    s.add_argument("--pad-before", type=float, default=2.0)
    s.add_argument("--pad-after", type=float, default=15.0)
    s.add_argument("--wav", required=True)
    s.add_argument("--words", required=True)
    s = sub.add_parser("rtsp-text")
    s.add_argument("url")
    s.add_argument("--duration", type=float, required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("stamp-lines")
    s.add_argument("--out", required=True)
    s.add_argument("command", nargs=argparse.REMAINDER)
    s = sub.add_parser("wer")
    s.add_argument("ref")
    s.add_argument("hyp")
    s.add_argument("--numbers", action="store_true")
    s = sub.add_parser("analyze")
    for a in ("name", "words", "out"):
        s.add_argument("--" + a, required=True)
    for a in ("player", "client", "server-log", "cli-greedy", "cli-beam", "cli-greedy-trimmed",
              "cli-beam-trimmed", "stream"):
        s.add_argument("--" + a)
    s.add_argument("--clock", choices=("auto", "log", "fit", "local-fit", "wav"), default="auto")
    s.add_argument("--numbers", action="store_true",
                   help="WER with numbers as spoken words on both sides (1998 = nineteen ninety eight)")
    s = sub.add_parser("cpu-threads")
    s.add_argument("pid", type=int)
    s.add_argument("seconds", type=float)
    s.add_argument("--out", required=True)
    s = sub.add_parser("summary")
    s.add_argument("results", nargs="+")
    s = sub.add_parser("pool")
    s.add_argument("results", nargs="+")
    a = ap.parse_args()
    if a.cmd == "synth":
        synth(open(a.text_file).read().strip(), a.voice, a.speed, a.pad_before, a.pad_after,
              a.wav, a.words)
    elif a.cmd == "rtsp-text":
        rtsp_text(a.url, a.duration, a.out)
    elif a.cmd == "stamp-lines":
        cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
        stamp_lines(a.out, cmd)
    elif a.cmd == "wer":
        r = wer(open(a.ref).read(), open(a.hyp).read(), numbers=a.numbers)
        print(json.dumps(r, indent=1))
    elif a.cmd == "analyze":
        analyze(a)
    elif a.cmd == "cpu-threads":
        cpu_threads(a.pid, a.seconds, a.out)
    elif a.cmd == "summary":
        summary(a.results)
    elif a.cmd == "pool":
        pool(a.results)


if __name__ == "__main__":
    main()
