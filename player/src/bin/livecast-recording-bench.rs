//! Recording benchmark: writes a synthetic session (720p30 H.264 at 2 Mbit/s with a keyframe
//! every 2 s, Opus every 20 ms, a caption every 5 s; one hour by default), reopens it the way
//! `livecast-player FILE` does, and measures:
//!
//! * index build time on reopen (full scan, every record's CRC checked),
//! * resident memory (`VmRSS` from `/proc/self/status`) before and after building the index,
//! * random seeks: plan (binary search) plus reading the records from the keyframe to the
//!   target frame, the audio packet at the target and the captions around it — the I/O and
//!   planning part of "a seek shows its picture"; decoding is measured elsewhere.
//!
//! ```text
//! cargo build --release -p livecast-player --bin livecast-recording-bench
//! target/release/livecast-recording-bench [--duration-s 3600] [--seeks 500] [--dir DIR]
//! ```
//!
//! The file goes into `--dir` (default: the system temp directory) and is deleted afterwards
//! unless `--keep`. Note that the page cache is warm: the file was
//! just written.

mod bench_common;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use livecast_player::engine::recording::{read_index, RecordingReader};
use livecast_player::engine::unit::MediaKind;
use rand::rngs::StdRng;
use rand::{RngCore as _, SeedableRng as _};

#[derive(Parser, Debug)]
#[command(about = "Recording benchmark: index build, seek I/O, resident memory")]
struct Args {
    /// Length of the synthetic session, seconds.
    #[arg(long, default_value_t = 3600)]
    duration_s: u64,
    /// Video bit rate, kbit/s.
    #[arg(long, default_value_t = 2000)]
    video_kbps: u64,
    /// Number of random seeks to time.
    #[arg(long, default_value_t = 500)]
    seeks: usize,
    /// Where to write the recording (default: the system temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the recording (its path is printed).
    #[arg(long)]
    keep: bool,
}

const T0: i64 = 1_795_392_000_000_000; // 2026-11-22T00:00:00Z
const FPS: i64 = 30;
const GOP: i64 = 60;
const AUDIO_BYTES: usize = 160; // Opus at 64 kbit/s, 20 ms

/// Deletes the bench recording however `main` ends.
struct RemoveOnDrop {
    path: PathBuf,
    keep: bool,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut out = std::io::stdout().lock();
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!(
        "livecast-recording-bench-{}.lcrec",
        std::process::id()
    ));
    let _cleanup = RemoveOnDrop {
        path: path.clone(),
        keep: args.keep,
    };

    // Frame sizes: a keyframe is ~8 P-frames; a GOP carries 2 s of the bit rate.
    let gop_bytes = args.video_kbps * 1000 / 8 * (GOP / FPS) as u64;
    let p_bytes = (gop_bytes / (GOP as u64 - 1 + 8)) as usize;
    let i_bytes = p_bytes * 8;
    let mut rng = StdRng::seed_from_u64(0x1234_5678_9ABC_DEF1);
    let pool: Vec<u8> = (0..i_bytes * 2).map(|_| rng.next_u64() as u8).collect();

    writeln!(
        out,
        "writing {} s: 720p30 H.264 {} kbit/s (I {} B, P {} B, GOP {}), Opus {} B / 20 ms, caption / 5 s -> {}",
        args.duration_s,
        args.video_kbps,
        i_bytes,
        p_bytes,
        GOP,
        AUDIO_BYTES,
        path.display()
    )?;
    let rss_start = bench_common::vm_kib("VmRSS:");
    let started = Instant::now();
    let end_us = args.duration_s as i64 * 1_000_000;
    let (mut v, mut a, mut c) = (0i64, 0i64, 0i64);
    let writer_index_bytes;
    {
        let mut w = bench_common::create_recording(&path, true)?;
        let mut unit = bench_common::blank_unit(i_bytes);
        loop {
            let tv = v * 1_000_000 / FPS;
            let ta = a * 20_000;
            let tc = c * 5_000_000 + 2_500_000;
            let t = tv.min(ta).min(tc);
            if t >= end_us {
                break;
            }
            unit.data.clear();
            let start = (rng.next_u64() % i_bytes as u64) as usize;
            if t == tv {
                let key = v % GOP == 0;
                let len = if key { i_bytes } else { p_bytes };
                unit.track = 0;
                unit.keyframe = key;
                unit.rtp_timestamp = (tv * 9 / 100) as u32;
                unit.data.extend_from_slice(&pool[start..start + len]);
                v += 1;
            } else if t == ta {
                unit.track = 1;
                unit.keyframe = true;
                unit.rtp_timestamp = (ta * 48 / 1000) as u32;
                unit.data
                    .extend_from_slice(&pool[start..start + AUDIO_BYTES]);
                a += 1;
            } else {
                unit.track = 2;
                unit.keyframe = true;
                unit.rtp_timestamp = (tc / 1000) as u32;
                unit.data
                    .extend_from_slice(format!("caption number {c}").as_bytes());
                c += 1;
            }
            unit.capture_us = T0 + t;
            unit.arrival_us = T0 + t + 150_000;
            w.append(&unit)?;
        }
        w.flush()?;
        writer_index_bytes = read_index(&w.index()).memory_bytes();
    }
    let write_time = started.elapsed();
    let size = std::fs::metadata(&path)?.len();
    writeln!(
        out,
        "wrote {:.1} MB ({} video, {} audio, {} text units) in {:.2} s ({:.0} MB/s); writer's index {:.1} MiB",
        size as f64 / 1e6,
        v,
        a,
        c,
        write_time.as_secs_f64(),
        size as f64 / 1e6 / write_time.as_secs_f64(),
        writer_index_bytes as f64 / 1048576.0
    )?;

    // Reopen, as `livecast-player FILE` does.
    let rss_before = bench_common::vm_kib("VmRSS:");
    let started = Instant::now();
    let (mut reader, index) = RecordingReader::open(&path)?;
    let open_time = started.elapsed();
    let rss_after = bench_common::vm_kib("VmRSS:");
    writeln!(
        out,
        "reopen (scan + CRC + index): {:.3} s ({:.0} MB/s), {} entries, ignored tail {} B",
        open_time.as_secs_f64(),
        size as f64 / 1e6 / open_time.as_secs_f64(),
        index.len(),
        reader.ignored_tail()
    )?;
    writeln!(
        out,
        "index heap: {:.2} MiB ({:.1} B/entry); VmRSS at start {}, before reopen {}, after {} (VmHWM {})",
        index.memory_bytes() as f64 / 1048576.0,
        index.memory_bytes() as f64 / index.len().max(1) as f64,
        mib(rss_start),
        mib(rss_before),
        mib(rss_after),
        mib(bench_common::vm_kib("VmHWM:"))
    )?;

    // Random seeks.
    let video = index
        .find_track(MediaKind::Video)
        .context("no video track")?;
    let audio = index
        .find_track(MediaKind::Audio)
        .context("no audio track")?;
    let text = index
        .find_track(MediaKind::Captions)
        .context("no text track")?;
    let start = index.start_us().context("empty recording")?;
    let span = index.duration_us().max(1) as u64;
    let mut times = Vec::with_capacity(args.seeks);
    let mut plan_times = Vec::with_capacity(args.seeks);
    let (mut frames, mut bytes) = (0usize, 0usize);
    for _ in 0..args.seeks {
        let target = start + (rng.next_u64() % span) as i64;
        let t = Instant::now();
        let plan = index
            .seek_plan(video, target, None)
            .context("no keyframe")?;
        let planned = t.elapsed();
        let entries = index.entries(video);
        for e in &entries[plan.from..=plan.last] {
            let u = reader.read(e)?;
            bytes += u.data.len();
            frames += 1;
        }
        if let Some(i) = index.first_at_or_after(audio, target) {
            bytes += reader.read(&index.entries(audio)[i])?.data.len();
        }
        for e in index.text_in(text, target - 5_000_000..target + 1) {
            bytes += reader.read(e)?.data.len();
        }
        times.push(t.elapsed());
        plan_times.push(planned);
    }
    times.sort();
    plan_times.sort();
    writeln!(
        out,
        "{} random seeks: plan p50 {:?} max {:?}; plan + read keyframe..target ({:.1} frames, {:.0} KB avg): \
         p50 {:?}, p95 {:?}, p99 {:?}, max {:?}",
        args.seeks,
        percentile(&plan_times, 0.5),
        percentile(&plan_times, 1.0),
        frames as f64 / args.seeks.max(1) as f64,
        bytes as f64 / args.seeks.max(1) as f64 / 1e3,
        percentile(&times, 0.5),
        percentile(&times, 0.95),
        percentile(&times, 0.99),
        percentile(&times, 1.0),
    )?;
    writeln!(
        out,
        "VmRSS at the end {}",
        mib(bench_common::vm_kib("VmRSS:"))
    )?;

    if args.keep {
        writeln!(out, "kept {}", path.display())?;
    }
    Ok(())
}
