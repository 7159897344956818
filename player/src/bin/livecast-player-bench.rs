//! Player seek benchmark: time from a seek to a picture ready to show, decode included, in a
//! one-hour 720p30 recording of real H.264.
//!
//! 1. Encodes `--distinct-gops` GOPs (30 frames, IDR first, SPS/PPS in band) of a detailed
//!    texture panning under a moving box with livecast-server's own encoder (constrained
//!    baseline, bit-rate control at `--kbps`, one thread; `--temporal-layers 2` puts every
//!    other picture in a non-reference layer, as the server does not), and reports the
//!    pictures' PSNR (luma, decoded against the source). Encoding a full
//!    hour on a shared 2-core machine would take about 15 min, so these GOPs are **replicated**
//!    with continuous timestamps to fill `--duration-s`. Opus packets (random bytes, 160 B per
//!    20 ms) are interleaved as in a live recording; seeks do not decode audio.
//! 2. Writes the recording with [`RecordingWriter`] (the player's own format) and reopens it
//!    with [`RecordingReader::open`], as `livecast-player FILE` does.
//! 3. For each of `--seeks` random targets does what the playback loop does on a seek
//!    (`Playback::reposition`, with `Index::seek_plan`): finds the keyframe at or before the target and the last frame
//!    at or before it, resets the decoder, reads every frame from the keyframe through the
//!    target and decodes those other pictures refer to (`h264::is_disposable`: with two
//!    temporal layers every other one; `--decode-all` also decodes every one, as the player
//!    did before) and the target, and converts the last one to RGBA. The time to that RGBA picture is
//!    the seek time. A seek from another group is decoded by the seek decoder (libavcodec with
//!    frame threads, `engine::fast_seek`), as the player does while paused; the same targets
//!    are then timed with openh264 alone ("openh264 alone": the player's seeks while
//!    playing, and all of them before), side by side. Done twice: with the file in the page cache ("warm") and, with
//!    `--cold`, after dropping the file's cached pages before each seek
//!    (`dd iflag=nocache count=0`; not timed).
//! 4. Dragging the timeline knob, on the same targets (`VideoPresenter::preview`): the
//!    first picture when the knob enters a group (its keyframe, decoded afresh), and the
//!    release at once at the target after it (the decoder goes on from the keyframe, which
//!    is not decoded again). A knob that rests before the release needs nothing more: the
//!    player goes on toward it while it rests.
//!
//! ```text
//! cargo build --release -p livecast-player --bin livecast-player-bench
//! target/release/livecast-player-bench [--duration-s 3600] [--seeks 200] [--cold] [--decode-all]
//!     [--temporal-layers 1|2] [--json FILE]
//! ```

mod bench_common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use livecast_player::engine::decode::VideoDecoder;
use livecast_player::engine::recording::RecordingReader;
use livecast_player::engine::unit::MediaKind;
use livecast_proto::codec::h264;
use livecast_server::encode::h264::{H264Config, H264Encoder};
use livecast_server::source::VideoFrame;
use rand::rngs::StdRng;
use rand::{RngCore as _, SeedableRng as _};

#[derive(Parser, Debug)]
#[command(about = "Seek to picture-ready time in a one-hour recording of real H.264")]
struct Args {
    /// Length of the recording, seconds.
    #[arg(long, default_value_t = 3600)]
    duration_s: u64,
    /// Video bit rate, kbit/s.
    #[arg(long, default_value_t = 2000)]
    kbps: u32,
    /// GOPs (1 s each) actually encoded; the recording repeats them.
    #[arg(long, default_value_t = 5)]
    distinct_gops: usize,
    /// Number of random seeks to time.
    #[arg(long, default_value_t = 200)]
    seeks: usize,
    /// Also time seeks with the file's pages dropped from the page cache before each one.
    #[arg(long)]
    cold: bool,
    /// Temporal layers of the encoded stream (1: the server's stream; 3 would make the
    /// keyframe period 32 pictures, not the 30 this bench lays out).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    temporal_layers: u8,
    /// Decode every frame from the keyframe to the target, the non-reference ones too (the
    /// player before it skipped them), after the skipping run, on the same recording.
    #[arg(long)]
    decode_all: bool,
    /// Where to write the recording (default: the system temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

const W: usize = 1280;
const H: usize = 720;
const FPS: u64 = 30;
/// Frames per GOP: the server's default IDR interval (`--idr-interval 1`) at 30 fps.
const GOP: usize = 30;
/// Seed of the seek targets: the decode-all run replays the warm run's.
const SEEK_SEED: u64 = 0x0DDB_1A5E_5BAD_5EED;
const T0: i64 = 1_795_392_000_000_000; // 2026-11-22T00:00:00Z

struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A smooth random texture twice the frame size: panning it gives camera-like detail and
/// motion, enough for openh264 to use its whole 2 Mbit/s (the test card alone needs ~0.4).
struct Pan {
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl Pan {
    const TW: usize = W * 2;
    const TH: usize = H * 2;

    fn new() -> Self {
        let (tw, th) = (Self::TW, Self::TH);
        let mut rng = StdRng::seed_from_u64(0x2545_f491_4f6c_dd1d);
        let noise: Vec<u32> = (0..tw * th)
            .map(|_| (rng.next_u64() >> 56) as u32)
            .collect();
        let mut y = vec![0u8; tw * th];
        for row in 0..th {
            for col in 0..tw {
                let mut sum = 0;
                for dy in 0..3 {
                    for dx in 0..3 {
                        sum += noise[((row + dy) % th) * tw + (col + dx) % tw];
                    }
                }
                y[row * tw + col] = (16 + sum / 9 * 219 / 255) as u8;
            }
        }
        let chroma = |phase: f64| -> Vec<u8> {
            (0..th / 2)
                .flat_map(|r| (0..tw / 2).map(move |c| (c, r)))
                .map(|(c, r)| {
                    (128.0 + 60.0 * ((c as f64 / 37.0 + phase).sin() * (r as f64 / 23.0).cos()))
                        as u8
                })
                .collect()
        };
        Self {
            y,
            u: chroma(0.0),
            v: chroma(1.7),
        }
    }

    /// Frame `k`: the window moves 4 px right and 2 px down per frame; a white box slides
    /// across, one trip per GOP, so every frame of a GOP differs from the others.
    fn render(&self, k: usize) -> Vec<u8> {
        let ox = ((k * 4) % (Self::TW - W)) & !1;
        let oy = ((k * 2) % (Self::TH - H)) & !1;
        let mut i420 = Vec::with_capacity(W * H * 3 / 2);
        for row in 0..H {
            let s = (oy + row) * Self::TW + ox;
            i420.extend_from_slice(&self.y[s..s + W]);
        }
        for plane in [&self.u, &self.v] {
            for row in 0..H / 2 {
                let s = (oy / 2 + row) * (Self::TW / 2) + ox / 2;
                i420.extend_from_slice(&plane[s..s + W / 2]);
            }
        }
        let bx = (k % GOP) * (W - 160) / GOP;
        for row in 280..440 {
            i420[row * W + bx..row * W + bx + 160].fill(235);
        }
        i420
    }
}

/// The server's own encoder (server/src/encode/h264.rs), a keyframe each second.
fn encoder(kbps: u32, temporal_layers: u8) -> anyhow::Result<H264Encoder> {
    H264Encoder::with_temporal_layers(
        &H264Config {
            width: W as u32,
            height: H as u32,
            fps: FPS as u32,
            bitrate_bps: kbps * 1000,
            idr_interval_secs: (GOP as u64 / FPS) as u32,
        },
        temporal_layers,
    )
}

/// Squared luma error of a decoded picture against the source I420 `src`.
fn luma_sse(p: &openh264::decoder::DecodedYUV<'_>, src: &[u8]) -> f64 {
    use openh264::formats::YUVSource as _;
    let (stride, _, _) = p.strides();
    let y = p.y();
    (0..H)
        .flat_map(|r| (0..W).map(move |c| (r, c)))
        .map(|(r, c)| {
            let d = f64::from(y[r * stride + c]) - f64::from(src[r * W + c]);
            d * d
        })
        .sum()
}

/// NAL unit types of an Annex B access unit.
fn nal_types(annexb: &[u8]) -> Vec<u8> {
    livecast_proto::codec::h264::split_annexb(annexb)
        .map(livecast_proto::codec::h264::nal_type)
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pick(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Drops `path`'s pages from the page cache (GNU dd: `iflag=nocache count=0`).
fn drop_cache(path: &Path) -> anyhow::Result<()> {
    let st = std::process::Command::new("dd")
        .arg(format!("if={}", path.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status()
        .context("running dd")?;
    anyhow::ensure!(st.success(), "dd iflag=nocache failed");
    Ok(())
}

#[derive(Default, serde::Serialize)]
struct SeekStats {
    seeks: usize,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    mean_frames_decoded: f64,
    max_frames_decoded: usize,
    mean_read_ms: f64,
    mean_decode_ms: f64,
    /// Decoding + RGBA conversion of the target frame alone.
    mean_last_frame_ms: f64,
    no_picture: usize,
}

/// What a timed seek does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// To the picture at the target, from a decoder in another group (`Playback::reposition`):
    /// by the seek decoder (libavcodec, `engine::fast_seek`), as the player does.
    Exact,
    /// The same with openh264, the player's other decoder, as before the seek decoder (and
    /// where libavcodec cannot decode a group).
    ExactOpenh264,
    /// The first picture while the timeline knob is dragged into the target's group: its
    /// keyframe (`VideoPresenter::preview`).
    Preview,
    /// Letting the knob go at once at the target after that preview: on from the keyframe to
    /// the target (the preview itself is done first, not timed).
    Release,
}

struct SeekRun {
    mode: Mode,
    /// Drop the file's cached pages before each seek.
    cold: bool,
    /// Decode the non-reference pictures on the way too.
    decode_all: bool,
}

fn seeks(
    path: &Path,
    reader: &mut RecordingReader,
    index: &livecast_player::engine::recording::Index,
    n: usize,
    run: SeekRun,
    rng: &mut StdRng,
) -> anyhow::Result<SeekStats> {
    let v = index
        .find_track(MediaKind::Video)
        .context("no video track")?;
    let start = index.start_us().context("empty recording")?;
    let span = index.duration_us().max(1) as u64;
    let mut dec = VideoDecoder::new()?;
    let mut fast = livecast_player::engine::fast_seek::FastSeek::new()?;
    let (mut times, mut frames, mut read_t, mut dec_t, mut last_t) =
        (Vec::with_capacity(n), Vec::with_capacity(n), 0.0, 0.0, 0.0);
    let mut no_picture = 0;
    for _ in 0..n {
        let target = start + (rng.next_u64() % span) as i64;
        if run.cold {
            drop_cache(path)?;
        }
        let next = if run.mode == Mode::Release {
            // The preview, not timed: the keyframe shown, the decoder just after it.
            let k = index
                .seek_plan(v, target, None)
                .context("no keyframe")?
                .keyframe;
            dec.reset()?;
            dec.decode(&reader.read(&index.entries(v)[k])?.data, true, true)
                .context("the keyframe gave no picture")?;
            Some(k + 1)
        } else {
            None
        };
        // What VideoPresenter::reposition (or ::preview) does.
        let t = Instant::now();
        let mut plan = index.seek_plan(v, target, next).context("no keyframe")?;
        if run.mode == Mode::Preview {
            plan.last = plan.keyframe;
        }
        if plan.fresh() {
            dec.reset()?;
        }
        let entries = &index.entries(v)[plan.from..plan.last + 1];
        let mut pic = None;
        let mut decoded = 0;
        let by_fast = run.mode == Mode::Exact && plan.fresh();
        if by_fast {
            fast.begin();
        }
        for (i, e) in entries.iter().enumerate() {
            let r0 = Instant::now();
            let unit = reader.read(e)?;
            let r1 = Instant::now();
            let is_last = i + 1 == entries.len();
            read_t += ms(r1 - r0);
            if !run.decode_all && !is_last && h264::is_disposable(&unit.data) {
                continue;
            }
            decoded += 1;
            if by_fast {
                fast.push(&unit.data, e.keyframe());
                if is_last {
                    pic = fast.finish();
                }
            } else {
                pic = dec.decode(&unit.data, e.keyframe(), is_last);
            }
            let r2 = Instant::now();
            dec_t += ms(r2 - r1);
            if is_last {
                last_t += ms(r2 - r1);
            }
        }
        let elapsed = t.elapsed();
        match pic {
            Some(p) if p.width as usize == W && p.rgba.len() == W * H * 4 => {}
            // Released on the keyframe itself: the preview already shows the picture.
            _ if entries.is_empty() => {}
            _ => no_picture += 1,
        }
        times.push(ms(elapsed));
        frames.push(decoded);
    }
    times.sort_by(f64::total_cmp);
    let nf = n.max(1) as f64;
    Ok(SeekStats {
        seeks: n,
        p50_ms: pick(&times, 0.5),
        p95_ms: pick(&times, 0.95),
        p99_ms: pick(&times, 0.99),
        max_ms: pick(&times, 1.0),
        mean_frames_decoded: frames.iter().sum::<usize>() as f64 / nf,
        max_frames_decoded: frames.iter().copied().max().unwrap_or(0),
        mean_read_ms: read_t / nf,
        mean_decode_ms: dec_t / nf,
        mean_last_frame_ms: last_t / nf,
        no_picture,
    })
}

/// VmRSS (KiB) that each decoder adds once it has decoded the recording's first group (30
/// pictures): the seek decoder first, then openh264 (both kept until the end).
fn decoder_memory(
    reader: &mut RecordingReader,
    index: &livecast_player::engine::recording::Index,
) -> anyhow::Result<(u64, u64)> {
    let v = index
        .find_track(MediaKind::Video)
        .context("no video track")?;
    let units = index.entries(v)[..GOP]
        .iter()
        .map(|e| Ok((reader.read(e)?.data, e.keyframe())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rss = || bench_common::vm_kib("VmRSS:").unwrap_or(0);
    let r0 = rss();
    let mut fast = livecast_player::engine::fast_seek::FastSeek::new()?;
    fast.begin();
    for (u, k) in &units {
        fast.push(u, *k);
    }
    fast.finish().context("the seek decoder gave no picture")?;
    let r1 = rss();
    let mut dec = VideoDecoder::new()?;
    for (u, k) in &units {
        dec.decode(u, *k, true);
    }
    let r2 = rss();
    drop((fast, dec));
    Ok((r1.saturating_sub(r0), r2.saturating_sub(r1)))
}

#[derive(serde::Serialize)]
struct Output {
    duration_s: u64,
    distinct_gops: usize,
    temporal_layers: u8,
    encoded_kbps: f64,
    psnr_y_db: f64,
    file_mb: f64,
    encode_s: f64,
    write_s: f64,
    reopen_s: f64,
    /// VmRSS each decoder adds (KiB): the seek decoder, openh264.
    decoder_memory_kib: (u64, u64),
    warm: SeekStats,
    /// The warm run's targets, decoded by openh264 alone.
    warm_openh264: SeekStats,
    cold: Option<SeekStats>,
    decode_all: Option<SeekStats>,
    preview: SeekStats,
    release: SeekStats,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut out = std::io::stdout().lock();

    // 1. Encode the distinct GOPs.
    let t = Instant::now();
    let pan = Pan::new();
    let mut enc = encoder(args.kbps, args.temporal_layers)?;
    let mut check = openh264::decoder::Decoder::new().context("openh264 decoder")?;
    let (mut sse, mut pictures) = (0.0, 0usize);
    let mut aus: Vec<Vec<u8>> = Vec::with_capacity(args.distinct_gops * GOP);
    for k in 0..args.distinct_gops * GOP {
        let source = pan.render(k);
        let frame = VideoFrame {
            width: W as u32,
            height: H as u32,
            i420: source.clone(),
            capture: std::time::UNIX_EPOCH + Duration::from_millis(k as u64 * 1000 / FPS),
            index: k as u64,
        };
        let au = enc
            .encode(&frame)?
            .context("the encoder gave no picture")?
            .annexb;
        let types = nal_types(&au);
        let key = k % GOP == 0;
        anyhow::ensure!(
            !key || (types.contains(&7) && types.contains(&8) && types.contains(&5)),
            "frame {k}: expected SPS, PPS and IDR, got NAL types {types:?}"
        );
        anyhow::ensure!(
            key || !types.contains(&5),
            "frame {k}: unexpected IDR (NAL types {types:?})"
        );
        // The quality of what was encoded (not timed: encoding is not what is measured).
        if let Ok(Some(p)) = check.decode(&au) {
            sse += luma_sse(&p, &source);
            pictures += 1;
        }
        aus.push(au);
    }
    let encode_s = t.elapsed().as_secs_f64();
    let psnr_y = 10.0 * (255.0f64 * 255.0 * (pictures * W * H) as f64 / sse.max(1.0)).log10();
    let bytes: usize = aus.iter().map(Vec::len).sum();
    let kbps = bytes as f64 * 8.0 / (aus.len() as f64 / FPS as f64) / 1000.0;
    writeln!(
        out,
        "encoded {} frames ({} GOPs, {} temporal layers) of 1280x720 pan texture in {encode_s:.1} s: \
         {kbps:.0} kbit/s, IDR {:.0} KB, PSNR-Y {psnr_y:.2} dB",
        aus.len(),
        args.distinct_gops,
        args.temporal_layers,
        aus[0].len() as f64 / 1e3
    )?;

    // 2. Write the recording, replicating the GOPs.
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!(
        "livecast-player-bench-{}.lcrec",
        std::process::id()
    ));
    let _cleanup = RemoveOnDrop(path.clone());
    let t = Instant::now();
    {
        let mut w = bench_common::create_recording(&path, false)?;
        let mut rng = StdRng::seed_from_u64(0x1234_5678_9ABC_DEF1);
        let end_us = args.duration_s as i64 * 1_000_000;
        let (mut v, mut a) = (0i64, 0i64);
        let mut unit = bench_common::blank_unit(0);
        loop {
            let tv = v * 1_000_000 / FPS as i64;
            let ta = a * 20_000;
            let t = tv.min(ta);
            if t >= end_us {
                break;
            }
            unit.data.clear();
            if t == tv {
                let i = v as usize % aus.len();
                unit.track = 0;
                unit.keyframe = i.is_multiple_of(GOP);
                unit.rtp_timestamp = (tv * 9 / 100) as u32;
                unit.data.extend_from_slice(&aus[i]);
                v += 1;
            } else {
                unit.track = 1;
                unit.keyframe = true;
                unit.rtp_timestamp = (ta * 48 / 1000) as u32;
                unit.data.extend((0..160).map(|_| rng.next_u64() as u8));
                a += 1;
            }
            unit.capture_us = T0 + t;
            unit.arrival_us = T0 + t + 50_000;
            w.append(&unit)?;
        }
        w.flush()?;
    }
    let write_s = t.elapsed().as_secs_f64();
    let file_mb = std::fs::metadata(&path)?.len() as f64 / 1e6;
    let t = Instant::now();
    let (mut reader, index) = RecordingReader::open(&path)?;
    let reopen_s = t.elapsed().as_secs_f64();
    writeln!(
        out,
        "recording: {} s, {file_mb:.0} MB, written in {write_s:.1} s, reopened (scan + index) in {reopen_s:.2} s",
        args.duration_s
    )?;

    // 3. Seeks.
    let (mem_fast, mem_openh264) = decoder_memory(&mut reader, &index)?;
    writeln!(
        out,
        "resident memory a decoder adds after decoding a whole group: seek decoder {:.1} MiB, \
         openh264 {:.1} MiB",
        mem_fast as f64 / 1024.0,
        mem_openh264 as f64 / 1024.0
    )?;
    let mut rng = StdRng::seed_from_u64(SEEK_SEED);
    // Warm-up: one seek so that first-use costs (allocations, code pages) are not counted.
    let exact = |cold| SeekRun {
        mode: Mode::Exact,
        cold,
        decode_all: false,
    };
    seeks(&path, &mut reader, &index, 1, exact(false), &mut rng)?;
    let warm = seeks(
        &path,
        &mut reader,
        &index,
        args.seeks,
        exact(false),
        &mut rng,
    )?;
    let line = |name: &str, s: &SeekStats| {
        format!(
            "{name}: {} seeks to an RGBA picture: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             {:.1} frames decoded on average (max {}); per seek: read {:.2} ms, decode {:.1} ms \
             (of which the target frame + RGBA {:.1} ms); without a picture: {}",
            s.seeks, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms, s.mean_frames_decoded,
            s.max_frames_decoded, s.mean_read_ms, s.mean_decode_ms, s.mean_last_frame_ms,
            s.no_picture
        )
    };
    writeln!(out, "{}", line("warm page cache", &warm))?;
    // The same targets with openh264 alone, as the player seeked before the seek decoder.
    let warm_openh264 = {
        let run = || SeekRun {
            mode: Mode::ExactOpenh264,
            ..exact(false)
        };
        let mut rng = StdRng::seed_from_u64(SEEK_SEED);
        seeks(&path, &mut reader, &index, 1, run(), &mut rng)?;
        seeks(&path, &mut reader, &index, args.seeks, run(), &mut rng)?
    };
    writeln!(out, "{}", line("warm, openh264 alone", &warm_openh264))?;
    let cold = if args.cold {
        let c = seeks(
            &path,
            &mut reader,
            &index,
            args.seeks,
            exact(true),
            &mut rng,
        )?;
        writeln!(out, "{}", line("file dropped from the page cache", &c))?;
        Some(c)
    } else {
        None
    };
    let decode_all = if args.decode_all {
        // The same targets as the warm run.
        let all = || SeekRun {
            decode_all: true,
            ..exact(false)
        };
        let mut rng = StdRng::seed_from_u64(SEEK_SEED);
        seeks(&path, &mut reader, &index, 1, all(), &mut rng)?;
        let a = seeks(&path, &mut reader, &index, args.seeks, all(), &mut rng)?;
        writeln!(out, "{}", line("warm, decoding every frame", &a))?;
        Some(a)
    } else {
        None
    };
    // Dragging the timeline knob, on the warm run's targets: the first picture in a new
    // group, and letting go there at once.
    let mut scrub = |mode| -> anyhow::Result<SeekStats> {
        let run = || SeekRun {
            mode,
            ..exact(false)
        };
        let mut rng = StdRng::seed_from_u64(SEEK_SEED);
        seeks(&path, &mut reader, &index, 1, run(), &mut rng)?;
        seeks(&path, &mut reader, &index, args.seeks, run(), &mut rng)
    };
    let preview = scrub(Mode::Preview)?;
    writeln!(
        out,
        "{}",
        line("knob dragged into a group: its keyframe", &preview)
    )?;
    let release = scrub(Mode::Release)?;
    writeln!(out, "{}", line("knob let go at once after that", &release))?;
    if let Some(j) = &args.json {
        let o = Output {
            duration_s: args.duration_s,
            distinct_gops: args.distinct_gops,
            temporal_layers: args.temporal_layers,
            encoded_kbps: kbps,
            psnr_y_db: psnr_y,
            file_mb,
            encode_s,
            write_s,
            reopen_s,
            decoder_memory_kib: (mem_fast, mem_openh264),
            warm,
            warm_openh264,
            cold,
            decode_all,
            preview,
            release,
        };
        std::fs::write(j, serde_json::to_string_pretty(&o)? + "\n")?;
    }
    Ok(())
}
