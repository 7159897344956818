//! Echo-cancellation benchmark (issue 5, docs/benchmarks.md "Echo cancellation (call mode)").
//!
//! A far-end speech WAV is "played through a simulated room response into the mic input": the
//! mic signal is the far end convolved with a room impulse response (a direct path after
//! `--direct-ms`, then an exponentially decaying noise tail of `--tail-ms`, -60 dB at its
//! end), optionally plus a different near-end talker and white noise. The mic is then cleaned
//! by [`livecast_player::aec`] through its public API, as call mode drives it:
//!
//! * the "output callback" pushes the far end (stereo, to go through the downmix) in
//!   `--far-chunk` frames, `--output-ahead-ms` before they are played;
//! * the "encoder thread" hands 20 ms interleaved stereo i16 mic frames to
//!   `NearEnd::process_stereo_i16`.
//!
//! Timeline: far-end speech alone (echo only) from 0; with `--near`, the near-end talker also
//! speaks over the end of the far-end speech (double talk), then once more alone, 0.5 s after
//! the far end has stopped (near end only).
//!
//! Reported, per engine:
//! * ERLE = 10 log10(echo energy / output energy) where the mic holds only the echo (and the
//!   noise, if any): per 1 s and overall after `--converge-s`;
//! * for the near-end segments, against a reference run (the near-end talker alone through
//!   the same canceller, the far end playing silence, which has the same ~9 ms filter-bank
//!   delay and colouring): how much of the near-end speech is kept (the least-squares gain of
//!   the reference in the output, 0 dB = all of it) and the signal-to-distortion ratio
//!   10 log10(reference energy / energy of (output - reference)), which counts residual echo,
//!   suppression and distortion together;
//! * the canceller's output delay (whole samples, from the reference run);
//! * CPU time of the process (all threads, from /proc/self/task/*/schedstat) over the
//!   processing loop, as a percentage of one core for the audio's duration: the lowest of
//!   `--repeat` identical runs.
//!
//! ```text
//! cargo build --release -p livecast-player --features aec-compare --bin livecast-aec-bench
//! target/release/livecast-aec-bench --far far.wav [--near near.wav] [--engine sonora,aec3]
//! ```
//! (`scripts/bench-aec.sh` makes the WAVs with espeak-ng and runs it.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::Parser;
use livecast_player::aec::{self, Canceller};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

const RATE: usize = 48_000;
/// Samples per channel of a server mic frame (20 ms).
const MIC_FRAME: usize = RATE / 50;

#[derive(Parser, Debug)]
#[command(
    about = "Echo cancellation benchmark: ERLE, near-end distortion and CPU",
    allow_negative_numbers = true
)]
struct Args {
    /// Far-end speech (what the loudspeaker plays): 48 kHz PCM16 WAV, any channel count.
    #[arg(long)]
    far: PathBuf,
    /// Near-end talker for the double-talk and near-end-only segments (48 kHz PCM16 WAV).
    #[arg(long)]
    near: Option<PathBuf>,
    /// Engines to run, comma separated: sonora (the one used), aec3 (needs a build with
    /// `--features aec-compare`).
    #[arg(long, default_value = "sonora", value_delimiter = ',')]
    engine: Vec<String>,
    /// Delay of the direct path from loudspeaker to mic, ms.
    #[arg(long, default_value_t = 40)]
    direct_ms: usize,
    /// Length of the reverberant tail after the direct path, ms (-60 dB at its end).
    #[arg(long, default_value_t = 200)]
    tail_ms: usize,
    /// Gain of the direct path (echo return loss of the direct sound).
    #[arg(long, default_value_t = 0.5)]
    direct_gain: f32,
    /// Energy of the tail relative to the direct path, dB.
    #[arg(long, default_value_t = -3.0)]
    tail_db: f32,
    /// White noise added to the mic, dBFS RMS (default: none).
    #[arg(long)]
    noise_dbfs: Option<f32>,
    /// Far-end frames per output callback.
    #[arg(long, default_value_t = 480)]
    far_chunk: usize,
    /// How long before it is played the output callback queues a chunk, ms.
    #[arg(long, default_value_t = 20)]
    output_ahead_ms: usize,
    /// Time allowed for convergence before the overall ERLE is taken, s.
    #[arg(long, default_value_t = 2.0)]
    converge_s: f64,
    /// Runs per engine; the CPU figure is the lowest (the output must be the same each time).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Write mic.wav and out-ENGINE.wav here, to listen to.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Where the talkers are, in samples.
struct Scene {
    /// Far end as played.
    far: Vec<f32>,
    /// Echo alone, as it reaches the mic.
    echo: Vec<f32>,
    /// Near-end talker alone, as it reaches the mic.
    near: Vec<f32>,
    /// What the mic records (echo + near + noise).
    mic: Vec<f32>,
    /// Echo only: [0, echo_end).
    echo_end: usize,
    /// Double talk and near only, if a near-end talker was given.
    double_talk: Option<(usize, usize)>,
    near_only: Option<(usize, usize)>,
}

#[derive(Debug, serde::Serialize)]
struct EngineResult {
    engine: String,
    erle_overall_db: f64,
    erle_per_second_db: Vec<Option<f64>>,
    /// AEC3's own ERLE estimate and delay estimate at the end of the echo-only segment.
    reported_erle_db: f64,
    reported_delay_ms: i32,
    double_talk: Option<NearResult>,
    near_only: Option<NearResult>,
    /// Delay of the canceller's output behind its input, samples (on the near end alone,
    /// whole samples: the filter bank's delay is not a whole number of samples).
    output_delay_samples: usize,
    cpu_percent_of_one_core: f64,
    wall_ms: f64,
    far_dropped: u64,
    far_stale: u64,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
struct NearResult {
    /// Least-squares gain of the reference (near end alone through the canceller) in the
    /// output, dB (0 = all kept).
    kept_db: f64,
    /// 10 log10(reference energy / (output - reference) energy), dB.
    sdr_db: f64,
    /// Near-end to echo energy ratio in the mic, dB (before the canceller).
    sdr_mic_db: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let engines = args
        .engine
        .iter()
        .map(|e| parse_engine(e))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let far = read_wav_mono(&args.far)?;
    let near = args.near.as_deref().map(read_wav_mono).transpose()?;
    let scene = build_scene(&args, far, near);
    let room = room_response(&args);
    let secs = scene.mic.len() as f64 / RATE as f64;

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "scene: {secs:.1} s; echo only 0-{:.1} s{}{}",
        scene.echo_end as f64 / RATE as f64,
        span("double talk", scene.double_talk),
        span("near end only", scene.near_only),
    )?;
    writeln!(
        out,
        "room: direct path {} ms gain {}, tail {} ms at {} dB, {} taps; far end {:.1} dBFS, \
         echo {:.1} dBFS (ERL {:.1} dB){}{}",
        args.direct_ms,
        args.direct_gain,
        args.tail_ms,
        args.tail_db,
        room.len(),
        rms_dbfs(&scene.far[..scene.echo_end]),
        rms_dbfs(&scene.echo[..scene.echo_end]),
        db(
            energy(&scene.far[..scene.echo_end]),
            energy(&scene.echo[..scene.echo_end])
        ),
        scene
            .double_talk
            .map(|(a, b)| format!(", near end {:.1} dBFS", rms_dbfs(&scene.near[a..b])))
            .unwrap_or_default(),
        args.noise_dbfs
            .map(|n| format!(", mic noise {n} dBFS"))
            .unwrap_or_default(),
    )?;
    writeln!(
        out,
        "delivery: far end in {}-frame pushes {} ms ahead of playout; mic in 20 ms stereo i16 frames",
        args.far_chunk, args.output_ahead_ms
    )?;

    let mut results = Vec::new();
    for name in engines {
        let (output, mut r) = run_engine(name, &args, &scene.far, &scene.mic, scene.echo_end)?;
        // On a shared machine, the least disturbed of a few identical runs.
        for _ in 1..args.repeat {
            let (again, r2) = run_engine(name, &args, &scene.far, &scene.mic, scene.echo_end)?;
            anyhow::ensure!(again == output, "{name}: a second run gave another output");
            if r2.cpu_s < r.cpu_s {
                r = r2;
            }
        }
        // The near-end talker alone through the same canceller, the far end playing silence:
        // what the canceller does to speech when there is no echo to remove.
        let silence = vec![0.0f32; scene.far.len()];
        let (reference, _) = run_engine(name, &args, &silence, &scene.near, 0)?;
        let res = evaluate(&args, &scene, &output, &reference, name, r);
        if let Some(dir) = &args.out_dir {
            std::fs::create_dir_all(dir)?;
            write_wav(&dir.join(format!("out-{name}.wav")), &output)?;
        }
        results.push(res);
    }
    if let Some(dir) = &args.out_dir {
        write_wav(&dir.join("mic.wav"), &scene.mic)?;
    }

    // Per-second ERLE, engines side by side.
    write!(
        out,
        "\nERLE per second (echo only; - = too little echo to measure)\n  s  echo dBFS"
    )?;
    for r in &results {
        write!(out, " {:>9}", r.engine)?;
    }
    writeln!(out)?;
    for s in 0..scene.echo_end.div_ceil(RATE) {
        let w = s * RATE..((s + 1) * RATE).min(scene.echo_end);
        write!(out, "{s:>3}  {:>9.1}", rms_dbfs(&scene.echo[w]))?;
        for r in &results {
            match r.erle_per_second_db.get(s).copied().flatten() {
                Some(v) => write!(out, " {v:>9.1}")?,
                None => write!(out, " {:>9}", "-")?,
            }
        }
        writeln!(out)?;
    }
    writeln!(out)?;
    for r in &results {
        writeln!(
            out,
            "{}: ERLE {:.1} dB after {} s (own estimate {:.1} dB, delay {} ms); CPU {:.2} % of one core \
             ({:.0} ms wall for {secs:.1} s); output {} samples late; far end dropped {} stale {}",
            r.engine,
            r.erle_overall_db,
            args.converge_s,
            r.reported_erle_db,
            r.reported_delay_ms,
            r.cpu_percent_of_one_core,
            r.wall_ms,
            r.output_delay_samples,
            r.far_dropped,
            r.far_stale,
        )?;
        for (what, n) in [
            ("double talk", r.double_talk),
            ("near end only", r.near_only),
        ] {
            if let Some(n) = n {
                let mic = if n.sdr_mic_db >= 200.0 {
                    "no echo".to_string()
                } else {
                    format!("{:.1} dB", n.sdr_mic_db)
                };
                writeln!(
                    out,
                    "  {what}: near-end speech kept {:+.2} dB, SDR {:.1} dB (near-to-echo in the mic {mic})",
                    n.kept_db, n.sdr_db
                )?;
            }
        }
    }
    if let Some(j) = &args.json {
        std::fs::write(j, serde_json::to_string_pretty(&results)? + "\n")?;
    }
    Ok(())
}

fn parse_engine(name: &str) -> anyhow::Result<&'static str> {
    match name {
        "sonora" => Ok("sonora"),
        #[cfg(feature = "aec-compare")]
        "aec3" => Ok("aec3"),
        #[cfg(not(feature = "aec-compare"))]
        "aec3" => bail!("aec3 needs a build with --features aec-compare"),
        other => bail!("unknown engine {other:?} (sonora, aec3)"),
    }
}

/// [`run`] with the engine called `name`.
fn run_engine(
    name: &str,
    args: &Args,
    far: &[f32],
    mic: &[f32],
    echo_end: usize,
) -> anyhow::Result<(Vec<f32>, RunOutput)> {
    match name {
        #[cfg(feature = "aec-compare")]
        "aec3" => run::<aec::Aec3>(args, far, mic, echo_end),
        _ => run::<aec::Sonora>(args, far, mic, echo_end),
    }
}

/// What one run of the canceller over the scene gave.
struct RunOutput {
    cpu_s: f64,
    wall_s: f64,
    stats_at_echo_end: aec::AecStats,
    stats: aec::AecStats,
}

/// Drives the public API as call mode does; returns the cleaned mic (channel 0, as f32).
fn run<C: Canceller>(
    args: &Args,
    far: &[f32],
    mic: &[f32],
    echo_end: usize,
) -> anyhow::Result<(Vec<f32>, RunOutput)> {
    let (far_end, mut near_end) = aec::echo_canceller_with::<C>()?;
    let mic_i16: Vec<i16> = mic.iter().map(|&s| to_i16(s)).collect();
    let chunk = args.far_chunk.max(1);
    let ahead = args.output_ahead_ms * RATE / 1000;
    let mut stereo = vec![0.0f32; 2 * chunk];
    let mut frame = vec![0i16; 2 * MIC_FRAME];
    let mut output = Vec::with_capacity(mic.len());
    let mut pushed = 0usize; // far-end samples handed to the output callback so far
    let mut stats_at_echo_end = None;

    let cpu0 = process_cpu_s()?;
    let t0 = Instant::now();
    for start in (0..mic_i16.len()).step_by(MIC_FRAME) {
        let end = (start + MIC_FRAME).min(mic_i16.len());
        // Every output callback due by the end of this mic frame has run.
        while pushed < end + ahead {
            let played = &far[pushed.min(far.len())..];
            stereo.iter_mut().for_each(|s| *s = 0.0);
            for (i, &s) in played.iter().take(chunk).enumerate() {
                stereo[2 * i] = s;
                stereo[2 * i + 1] = s;
            }
            far_end.push_interleaved(&stereo, 2);
            pushed += chunk;
        }
        let frame = &mut frame[..2 * (end - start)];
        for (lr, &m) in frame.chunks_exact_mut(2).zip(&mic_i16[start..end]) {
            lr[0] = m;
            lr[1] = m;
        }
        near_end.process_stereo_i16(frame);
        output.extend(frame.chunks_exact(2).map(|lr| f32::from(lr[0]) / 32_768.0));
        if stats_at_echo_end.is_none() && end >= echo_end {
            stats_at_echo_end = Some(near_end.stats());
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_s = process_cpu_s()? - cpu0;
    let stats = near_end.stats();
    Ok((
        output,
        RunOutput {
            cpu_s,
            wall_s,
            stats_at_echo_end: stats_at_echo_end.unwrap_or(stats),
            stats,
        },
    ))
}

fn evaluate(
    args: &Args,
    scene: &Scene,
    output: &[f32],
    reference: &[f32],
    name: &str,
    r: RunOutput,
) -> EngineResult {
    let conv = ((args.converge_s * RATE as f64) as usize).min(scene.echo_end);
    let erle_overall_db = db(
        energy(&scene.echo[conv..scene.echo_end]),
        energy(&output[conv..scene.echo_end]),
    );
    // A second counts if its echo is within 40 dB of the loudest second's.
    let seconds: Vec<_> = (0..scene.echo_end.div_ceil(RATE))
        .map(|s| s * RATE..((s + 1) * RATE).min(scene.echo_end))
        .collect();
    let loudest = seconds
        .iter()
        .map(|w| energy(&scene.echo[w.clone()]) / w.len() as f64)
        .fold(0.0, f64::max);
    let erle_per_second_db = seconds
        .iter()
        .map(|w| {
            let e = energy(&scene.echo[w.clone()]);
            (e / w.len() as f64 > loudest * 1e-4).then(|| db(e, energy(&output[w.clone()])))
        })
        .collect();
    // Near-end speech is judged against `reference`, the same talker through the same
    // canceller with nothing to cancel: the filter bank's own delay (~9 ms) and colouring
    // are the same in both, and what differs is residual echo and suppression.
    let near_result = |(a, b): (usize, usize)| {
        let want = &reference[a..b];
        let out = &output[a..b];
        let ww = energy(want);
        NearResult {
            kept_db: 20.0 * (dot(out, want) / ww).abs().max(1e-9).log10(),
            sdr_db: db(ww, diff_energy(out, want)),
            sdr_mic_db: db(energy(&scene.near[a..b]), energy(&scene.echo[a..b])),
        }
    };
    let lag = scene
        .near_only
        .map_or(0, |(a, b)| best_lag(&scene.near[a..b], &reference[a..b]));
    let audio_s = scene.mic.len() as f64 / RATE as f64;
    EngineResult {
        engine: name.to_string(),
        erle_overall_db,
        erle_per_second_db,
        reported_erle_db: r.stats_at_echo_end.erle_db,
        reported_delay_ms: r.stats_at_echo_end.delay_ms,
        double_talk: scene.double_talk.map(near_result),
        near_only: scene.near_only.map(near_result),
        output_delay_samples: lag,
        cpu_percent_of_one_core: 100.0 * r.cpu_s / audio_s,
        wall_ms: r.wall_s * 1e3,
        far_dropped: r.stats.far_dropped,
        far_stale: r.stats.far_stale,
    }
}

fn build_scene(args: &Args, far: Vec<f32>, near: Option<Vec<f32>>) -> Scene {
    let gap = RATE / 2;
    let f = far.len();
    let (len, double_talk, near_only) = match &near {
        Some(n) => {
            let n = n.len().min(f / 2);
            // Double talk over the end of the far-end speech, then the near end alone.
            let dt = (f - n, f);
            let alone = (f + gap, f + gap + n);
            (alone.1 + gap, Some(dt), Some(alone))
        }
        None => (f + gap, None, None),
    };
    let len = len.next_multiple_of(MIC_FRAME);
    let mut far_played = far;
    far_played.resize(len, 0.0);
    let room = room_response(args);
    let echo = convolve(&far_played, &room);
    let mut near_mic = vec![0.0f32; len];
    if let (Some(n), Some((a, b)), Some((c, d))) = (&near, double_talk, near_only) {
        near_mic[a..b].copy_from_slice(&n[..b - a]);
        near_mic[c..d].copy_from_slice(&n[..d - c]);
    }
    let mut rng = StdRng::seed_from_u64(0x5eed_aec3);
    let noise_rms = args.noise_dbfs.map_or(0.0, |d| 10f32.powf(d / 20.0));
    let mut mic: Vec<f32> = echo
        .iter()
        .zip(&near_mic)
        .map(|(e, n)| e + n + noise_rms * gauss(&mut rng))
        .collect();
    // Keep clear of clipping, all parts scaled alike.
    let peak = mic.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    let scale = if peak > 0.9 { 0.9 / peak } else { 1.0 };
    let mut echo = echo;
    for v in [&mut mic, &mut echo, &mut near_mic] {
        v.iter_mut().for_each(|s| *s *= scale);
    }
    // The i16 mic is what the canceller sees: make the references match it exactly in level.
    Scene {
        far: far_played,
        echo,
        near: near_mic,
        mic,
        echo_end: double_talk.map_or(f, |(a, _)| a),
        double_talk,
        near_only,
    }
}

/// Direct path after `direct_ms`, then a noise tail decaying by 60 dB over `tail_ms`.
fn room_response(args: &Args) -> Vec<f32> {
    let direct = args.direct_ms * RATE / 1000;
    let tail = args.tail_ms * RATE / 1000;
    let mut h = vec![0.0f32; direct + 1 + tail];
    h[direct] = args.direct_gain;
    let mut rng = StdRng::seed_from_u64(0x0000_0200_0040);
    // exp(-tail / tau) = 10^-3 (-60 dB).
    let tau = tail as f32 / (3.0 * std::f32::consts::LN_10);
    for (i, t) in h[direct + 1..].iter_mut().enumerate() {
        *t = gauss(&mut rng) * (-(i as f32) / tau).exp();
    }
    let tail_energy: f32 = h[direct + 1..].iter().map(|t| t * t).sum();
    let want = args.direct_gain.powi(2) * 10f32.powf(args.tail_db / 10.0);
    let k = (want / tail_energy.max(1e-12)).sqrt();
    h[direct + 1..].iter_mut().for_each(|t| *t *= k);
    h
}

/// Direct-form convolution, truncated to `x.len()`; 8 accumulators so that it vectorises.
fn convolve(x: &[f32], h: &[f32]) -> Vec<f32> {
    // Skip the leading zeros of h (the direct-path delay).
    let first = h.iter().position(|&t| t != 0.0).unwrap_or(h.len());
    let taps: Vec<f32> = h[first..].iter().rev().copied().collect();
    let k = taps.len();
    let mut padded = vec![0.0f32; k - 1];
    padded.extend_from_slice(x);
    let mut y = vec![0.0f32; x.len()];
    for (n, out) in y.iter_mut().enumerate().skip(first) {
        // y[n] = sum_j h[first + j] x[n - first - j]
        let m = n - first;
        let window = &padded[m..m + k];
        let mut acc = [0.0f32; 8];
        let (wc, wr) = (window.chunks_exact(8), window.chunks_exact(8).remainder());
        let (tc, tr) = (taps.chunks_exact(8), taps.chunks_exact(8).remainder());
        for (w, t) in wc.zip(tc) {
            for i in 0..8 {
                acc[i] += w[i] * t[i];
            }
        }
        let rest: f32 = wr.iter().zip(tr).map(|(a, b)| a * b).sum();
        *out = acc.iter().sum::<f32>() + rest;
    }
    y
}

/// The lag in [0, MAX_LAG] at which `output` best matches `reference`, searched on the
/// loudest second of the reference.
fn best_lag(reference: &[f32], output: &[f32]) -> usize {
    const MAX_LAG: usize = 2_048;
    let n = reference.len().saturating_sub(MAX_LAG);
    let window = RATE.min(n);
    let start = (0..n.saturating_sub(window))
        .step_by(RATE / 10)
        .max_by(|&a, &b| {
            energy(&reference[a..a + window]).total_cmp(&energy(&reference[b..b + window]))
        })
        .unwrap_or(0);
    let r = &reference[start..start + window];
    (0..=MAX_LAG)
        .max_by(|&a, &b| {
            let ca = dot(r, &output[start + a..start + a + window]);
            let cb = dot(r, &output[start + b..start + b + window]);
            ca.total_cmp(&cb)
        })
        .unwrap_or(0)
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|&s| f64::from(s) * f64::from(s)).sum()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

fn diff_energy(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum()
}

/// 10 log10(num / den), bounded to ±200 dB.
fn db(num: f64, den: f64) -> f64 {
    (10.0 * (num.max(1e-20) / den.max(1e-20)).log10()).clamp(-200.0, 200.0)
}

fn rms_dbfs(x: &[f32]) -> f64 {
    10.0 * (energy(x) / x.len().max(1) as f64).max(1e-20).log10()
}

fn to_i16(s: f32) -> i16 {
    (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
}

/// CPU time (user + system) of every thread of this process, in seconds.
fn process_cpu_s() -> anyhow::Result<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").context("reading /proc/self/task")? {
        let path = task?.path().join("schedstat");
        // A thread may end between the listing and the read.
        if let Ok(s) = std::fs::read_to_string(&path) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .with_context(|| format!("parsing {}", path.display()))?;
        }
    }
    Ok(ns as f64 * 1e-9)
}

/// Reads a 48 kHz PCM16 WAV and averages its channels.
fn read_wav_mono(path: &Path) -> anyhow::Result<Vec<f32>> {
    let mut r =
        hound::WavReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    let spec = r.spec();
    if spec.sample_format != hound::SampleFormat::Int
        || spec.bits_per_sample != 16
        || spec.sample_rate != RATE as u32
        || spec.channels == 0
    {
        bail!(
            "{}: need 48 kHz 16-bit PCM, got {:?} {} Hz {} bit",
            path.display(),
            spec.sample_format,
            spec.sample_rate,
            spec.bits_per_sample
        );
    }
    let channels = usize::from(spec.channels);
    let samples = r
        .samples::<i16>()
        .collect::<Result<Vec<i16>, _>>()
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(samples
        .chunks_exact(channels)
        .map(|frame| frame.iter().map(|&s| f32::from(s) / 32_768.0).sum::<f32>() / channels as f32)
        .collect())
}

/// Writes 48 kHz mono PCM16.
fn write_wav(path: &Path, samples: &[f32]) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE as u32,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let context = || format!("writing {}", path.display());
    let mut w = hound::WavWriter::create(path, spec).with_context(context)?;
    for &s in samples {
        w.write_sample(to_i16(s)).with_context(context)?;
    }
    w.finalize().with_context(context)
}

/// `"; NAME A-B s"` for a span of samples, nothing for none.
fn span(name: &str, span: Option<(usize, usize)>) -> String {
    span.map(|(a, b)| {
        format!(
            "; {name} {:.1}-{:.1} s",
            a as f64 / RATE as f64,
            b as f64 / RATE as f64
        )
    })
    .unwrap_or_default()
}

/// A rough Gaussian (unit variance) from the sum of four uniforms on [-1, 1].
fn gauss(rng: &mut StdRng) -> f32 {
    // Four uniforms on [-1, 1] have variance 4/3; scale to 1.
    (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>() * 0.866
}
