#!/usr/bin/env python3
"""Helper of scripts/bench-call.sh (docs/benchmarks.md, "Two-way call").

  cpu      sample per-process and per-thread CPU of the two peers over a window, plus the
           machine's busy time, the load average and the veth byte counters
  run      gather one run (the peers' --stats-json, CPU, nft drops, load) into run.json
  summary  write summary.md from every run.json under a results directory

Only the standard library; reads /proc and runs `ip` (for the veth counters).
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
# Thread names are cut to 15 characters by the kernel.
FULL_NAMES = {"livecast-playba": "livecast-playback", "livecast-testsr": "livecast-testsrc"}


def proc_stat_fields(path):
    """(comm, utime+stime in ticks) of a /proc/.../stat file, or None if gone."""
    try:
        with open(path) as f:
            s = f.read()
    except OSError:
        return None
    # comm is in parentheses and may itself contain spaces or parentheses.
    lp, rp = s.index("("), s.rindex(")")
    comm = s[lp + 1 : rp]
    rest = s[rp + 2 :].split()
    # rest[0] is field 3 (state); utime is field 14, stime field 15.
    return comm, int(rest[11]) + int(rest[12])


def snapshot(pids):
    snap = {}
    for pid in pids:
        p = proc_stat_fields(f"/proc/{pid}/stat")
        threads = {}
        for t in glob.glob(f"/proc/{pid}/task/*/stat"):
            tid = t.split("/")[4]
            r = proc_stat_fields(t)
            if r:
                threads[tid] = r
        snap[pid] = {"proc": p, "threads": threads}
    return snap


def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v[:8]) - idle, sum(v[:8])


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def veth_bytes(spec):
    ns, dev = spec.split(":")
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "-s", "link", "show", "dev", dev],
        capture_output=True,
        text=True,
        timeout=10,
    )
    try:
        st = json.loads(out.stdout)[0]["stats64"]
        return {"tx": st["tx"]["bytes"], "rx": st["rx"]["bytes"]}
    except (ValueError, LookupError):
        return None


def top_processes(n=8):
    """The busiest processes right now (ps, %CPU over their lifetime), to tell who else ran."""
    out = subprocess.run(
        ["ps", "-eo", "pid,pcpu,etimes,comm", "--sort=-pcpu"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return out.stdout.splitlines()[: n + 1]


def cmd_cpu(a):
    pids = a.pids
    time.sleep(a.start_after)
    t0 = time.monotonic()
    s0 = snapshot(pids)
    b0 = machine_busy()
    l0 = loadavg()
    v0 = {v: veth_bytes(v) for v in a.veth}
    ps0 = top_processes()
    time.sleep(a.window)
    s1 = snapshot(pids)
    b1 = machine_busy()
    l1 = loadavg()
    v1 = {v: veth_bytes(v) for v in a.veth}
    dt = time.monotonic() - t0
    res = {
        "window_s": dt,
        "start_after_s": a.start_after,
        "load_start": l0,
        "load_end": l1,
        "machine_busy_cores": (b1[0] - b0[0]) / max(1, b1[1] - b0[1]) * os.cpu_count(),
        "top_at_window_start": ps0,
        "peers": {},
        "veth_mbit_s": {},
    }
    for pid, label in zip(pids, a.labels):
        p0, p1 = s0[pid]["proc"], s1[pid]["proc"]
        peer = {"pid": pid, "alive": p1 is not None}
        if p0 and p1:
            peer["cpu_pct"] = (p1[1] - p0[1]) / HZ / dt * 100
        by_name = {}
        for tid, (comm, ticks1) in s1[pid]["threads"].items():
            ticks0 = s0[pid]["threads"].get(tid, (comm, 0))[1]
            comm = FULL_NAMES.get(comm, comm)
            d = by_name.setdefault(comm, {"threads": 0, "cpu_pct": 0.0})
            d["threads"] += 1
            d["cpu_pct"] += (ticks1 - ticks0) / HZ / dt * 100
        peer["threads"] = dict(sorted(by_name.items(), key=lambda kv: -kv[1]["cpu_pct"]))
        # Threads that ended inside the window are in the process total, not in the list.
        if "cpu_pct" in peer:
            peer["threads_ended_pct"] = peer["cpu_pct"] - sum(
                d["cpu_pct"] for d in by_name.values()
            )
        res["peers"][label] = peer
    for v in a.veth:
        if v0[v] and v1[v]:
            res["veth_mbit_s"][v] = {
                k: (v1[v][k] - v0[v][k]) * 8 / dt / 1e6 for k in ("tx", "rx")
            }
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"error": f"{path}: {e}"}


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def log_lines(path):
    """The log's lines without colour codes (tracing colours its output even into a file)."""
    try:
        with open(path, errors="replace") as f:
            return [ANSI.sub("", line) for line in f]
    except OSError:
        return []


def count_log(lines, needle):
    return sum(needle in line for line in lines)


def max_field(lines, needle, field):
    """Largest `field=N` on the lines containing needle, per source (the word after the
    `livecast_server::source:` target), summed over the sources: each counter is cumulative
    and logged at powers of two, so this is a lower bound."""
    best = {}
    for line in lines:
        if needle not in line:
            continue
        m = re.search(rf"\b{field}=(\d+)", line)
        src = re.search(r"::source: (\w+) ", line)
        key = src.group(1) if src else ""
        if m:
            best[key] = max(best.get(key, 0), int(m.group(1)))
    return sum(best.values())


def cmd_run(a):
    d = a.dir
    run = {
        "name": a.name,
        "args": a.args,
        "loss_pct": a.loss,
        "rust_log": a.rust_log,
        "load": {"start": a.load_start, "end": a.load_end, "waited_s": a.waited, "idle": a.idle},
        "cpu": load_json(os.path.join(d, "cpu.json")),
        "peers": {},
    }
    for who, frm in (("alice", "bob"), ("bob", "alice")):
        s = load_json(os.path.join(d, f"{who}.json"))
        c = s.get("call", {})
        conn, end = c.get("connected_unix_ms"), c.get("ended_unix_ms")
        words = sum(len(x.get("text", "").split()) for x in s.get("captions", []))
        log = log_lines(os.path.join(d, f"{who}.log"))
        run["peers"][who] = {
            # What this peer received: the other's stream.
            "direction": f"{frm} -> {who}",
            "error": s.get("error"),
            "video_latency_ms": s.get("latency_ms"),
            "audio_latency_ms": s.get("audio_latency_ms"),
            "video": s.get("video"),
            "audio_frames_decoded": s.get("audio", {}).get("frames_decoded"),
            "audio_decode_errors": s.get("audio", {}).get("decode_errors"),
            "audio_output": s.get("audio", {}).get("output"),
            "rtp": s.get("rtp"),
            "first_frame_ms": s.get("first_frame_ms"),
            "caption_lines": len(s.get("captions", [])),
            "caption_words": words,
            "connected_s": (end - conn) / 1000 if conn and end else None,
            "calling_attempts": c.get("calling_attempts"),
            "ended_by": c.get("ended_by"),
            "server": c.get("server"),
            "final_state": s.get("final_state"),
            "nft_dropped": a.dropped.get(who) if a.dropped else None,
            "log_warnings": count_log(log, " WARN "),
            # A debug line of the playback loop (not logged at info: then unknown).
            "log_caught_up": count_log(log, "caught up with live")
            if "playback=debug" in a.rust_log or a.rust_log.strip() in ("debug", "trace")
            else None,
            # Frames the sources could not hand to the encoders (queue full), and source ticks
            # skipped because a source thread got no CPU in time (machine overloaded).
            "log_frames_dropped": max_field(log, "dropping frames", "dropped"),
            "log_ticks_skipped": max_field(log, "fell behind real time", "total"),
        }
    with open(os.path.join(d, "run.json"), "w") as f:
        json.dump(run, f, indent=2)


def fmt(x, nd=1):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{0.0 if abs(x) < 0.5 * 10**-nd else x:.{nd}f}"
    return str(x)


def cmd_summary(a):
    runs = []
    for p in sorted(glob.glob(os.path.join(a.dir, "*", "run.json"))):
        r = load_json(p)
        r["dir"] = os.path.basename(os.path.dirname(p))
        runs.append(r)
    L = []
    L.append(f"# Two-way call benchmark: {a.dir}\n")
    if a.header and os.path.exists(a.header):
        with open(a.header) as f:
            L.append(f.read())
    L.append("## One-way delay, capture to ready-to-show (ms, shared clock)\n")
    L.append(
        "| run | loss | direction | video p50 | video p95 | video n | audio p50 | audio p95 | audio n "
        "| frames decoded / shown | shown per s | RTP received / lost | jitter ms | call s | caption words | load start → end |"
    )
    L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        for who in ("bob", "alice"):
            p = r["peers"].get(who, {})
            v = p.get("video_latency_ms") or {}
            au = p.get("audio_latency_ms") or {}
            vid = p.get("video") or {}
            rtp = p.get("rtp") or {}
            ld = r["load"]
            L.append(
                f"| {r['dir']} | {fmt(r.get('loss_pct'))} % | {p.get('direction')} "
                f"| {fmt(v.get('p50'))} | {fmt(v.get('p95'))} | {fmt(v.get('samples'))} "
                f"| {fmt(au.get('p50'))} | {fmt(au.get('p95'))} | {fmt(au.get('samples'))} "
                f"| {fmt(vid.get('frames_decoded'))} / {fmt(vid.get('frames_shown'))} "
                f"| {fmt(vid['frames_shown'] / p['connected_s'] if vid.get('frames_shown') is not None and p.get('connected_s') else None)} "
                f"| {fmt(rtp.get('packets_received'))} / {fmt(rtp.get('packets_lost'))} "
                f"| {fmt(rtp.get('jitter_ms'), 2)} | {fmt(p.get('connected_s'))} "
                f"| {fmt(p.get('caption_words'))} | {ld['start']} → {ld['end']} |"
            )
    L.append("")
    L.append("## CPU, % of one core, over the window (both peers on this machine)\n")
    names = set()
    for r in runs:
        for peer in (r.get("cpu", {}).get("peers") or {}).values():
            names.update(peer.get("threads", {}).keys())
    for r in runs:
        cpu = r.get("cpu", {})
        if "peers" not in cpu:
            continue
        L.append(
            f"### {r['dir']} ({' '.join(r.get('args') or [])})\n\n"
            f"window {fmt(cpu.get('window_s'))} s from {fmt(cpu.get('start_after_s'))} s after start; "
            f"load {cpu.get('load_start')} → {cpu.get('load_end')}; machine busy "
            f"{fmt(cpu.get('machine_busy_cores'), 2)} of {os.cpu_count()} cores; "
            f"veth Mbit/s (tx): "
            + ", ".join(
                f"{k.split(':')[0][-1]} {fmt(v['tx'], 3)}"
                for k, v in cpu.get("veth_mbit_s", {}).items()
            )
            + "\n"
        )
        L.append("| thread (count) | alice | bob |")
        L.append("|---|---:|---:|")
        peers = cpu["peers"]
        both = [peers.get(w, {}).get("cpu_pct") for w in ("alice", "bob")]
        L.append(
            f"| **process** (both: {fmt(sum(both) if None not in both else None)}) "
            f"| **{fmt(both[0])}** | **{fmt(both[1])}** |"
        )
        tnames = sorted(
            {n for p in peers.values() for n in p.get("threads", {})},
            key=lambda n: -sum(p.get("threads", {}).get(n, {}).get("cpu_pct", 0) for p in peers.values()),
        )
        for n in tnames:
            cells = []
            for who in ("alice", "bob"):
                t = peers.get(who, {}).get("threads", {}).get(n)
                cells.append(f"{t['cpu_pct']:.1f} ({t['threads']})" if t else "–")
            L.append(f"| {n} | {cells[0]} | {cells[1]} |")
        L.append(
            f"| (threads ended in the window) | {fmt(peers.get('alice', {}).get('threads_ended_pct'))} "
            f"| {fmt(peers.get('bob', {}).get('threads_ended_pct'))} |"
        )
        L.append("")
        L.append("Busiest processes at the window's start (ps, lifetime %CPU):\n")
        L.append("```")
        L.extend(cpu.get("top_at_window_start", []))
        L.append("```\n")
    L.append("## Per-peer checks\n")
    L.append("| run | peer | connected | ended by | sessions peak/after | captions | nft drops (input) | WARN lines | live catch-ups | frames dropped before the encoders | source ticks skipped (overload) |")
    L.append("|---|---|---|---|---|---|---:|---:|---:|---:|---:|")
    for r in runs:
        for who in ("alice", "bob"):
            p = r["peers"].get(who, {})
            sv = p.get("server") or {}
            L.append(
                f"| {r['dir']} | {who} | {fmt(p.get('connected_s'))} s | {p.get('ended_by')} "
                f"| {sv.get('sessions_peak')}/{sv.get('sessions_after')} | {sv.get('captions')} "
                f"| {fmt(p.get('nft_dropped'))} | {fmt(p.get('log_warnings'))} | {fmt(p.get('log_caught_up'))} "
                f"| {fmt(p.get('log_frames_dropped'))} | {fmt(p.get('log_ticks_skipped'))} |"
            )
    L.append("")
    with open(os.path.join(a.dir, "summary.md"), "w") as f:
        f.write("\n".join(L))
    print("\n".join(L))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cpu")
    c.add_argument("--pids", nargs=2, required=True)
    c.add_argument("--labels", nargs=2, default=["alice", "bob"])
    c.add_argument("--start-after", type=float, required=True)
    c.add_argument("--window", type=float, required=True)
    c.add_argument("--veth", nargs="*", default=[], help="NS:DEV, byte counters")
    c.add_argument("--out", required=True)
    r = sub.add_parser("run")
    r.add_argument("--dir", required=True)
    r.add_argument("--name", required=True)
    r.add_argument("--loss", type=float, default=0.0)
    r.add_argument("--load-start", default="")
    r.add_argument("--load-end", default="")
    r.add_argument("--waited", type=int, default=0)
    r.add_argument("--idle", default="")
    r.add_argument("--rust-log", default="", help="the peers' RUST_LOG")
    r.add_argument("--dropped", type=json.loads, default=None, help='{"alice": N, "bob": M}')
    r.add_argument("--args", nargs=argparse.REMAINDER, default=[])
    s = sub.add_parser("summary")
    s.add_argument("--dir", required=True)
    s.add_argument("--header")
    a = ap.parse_args()
    {"cpu": cmd_cpu, "run": cmd_run, "summary": cmd_summary}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
