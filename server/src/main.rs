//! `livecast-server`: stream a camera and microphone (or test sources, or files) over RTSP.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use livecast_proto::rtsp::Limits;
use livecast_server::captions::{CaptionConfig, CaptionMode};
use livecast_server::net::{local_addresses, rtsp_url};
use livecast_server::pipeline::MediaConfig;
use livecast_server::rtsp_server::RtspConfig;
use livecast_server::source::{AudioSpec, VideoConfig, VideoSpec};
use livecast_server::ServerConfig;
use tracing_subscriber::EnvFilter;

/// Live-stream a camera and microphone over RTSP 1.0 / RTP, playable by ffplay, ffmpeg, mpv,
/// GStreamer, VLC and livecast-player.
///
/// Watch with: ffplay rtsp://HOST:8554/live
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Address to accept RTSP connections on; repeat for several. Default: 0.0.0.0:8554 and
    /// [::]:8554 (every IPv4 and IPv6 address).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,

    /// Video source: auto (camera if present, else testsrc), testsrc (moving test card with
    /// clock, frame number, and a white flash every second), camera[:INDEX], file:PATH.y4m.
    #[arg(long, default_value = "auto", value_name = "SOURCE")]
    video: VideoSpec,

    /// Audio source: auto (microphone if present, else tone), tone (silence with a 50 ms beep
    /// at each white flash of testsrc), mic[:NAME], file:PATH.wav.
    #[arg(long, default_value = "auto", value_name = "SOURCE")]
    audio: AudioSpec,

    /// Picture size of testsrc and the camera, WIDTHxHEIGHT (files keep their own size).
    #[arg(long, default_value = "1280x720", value_parser = parse_size, value_name = "WxH")]
    size: (u32, u32),

    /// Frames per second of testsrc and the camera.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=120))]
    fps: u32,

    /// H.264 bit rate in bit/s (suffixes k and M allowed: 2M, 800k).
    #[arg(long, default_value = "2M", value_parser = parse_bitrate, value_name = "BITS")]
    bitrate: u32,

    /// Opus bit rate in bit/s (6k to 510k).
    #[arg(long, default_value = "64k", value_parser = parse_bitrate, value_name = "BITS")]
    audio_bitrate: u32,

    /// Seconds between periodic IDR (key) frames. One second keeps seeking in a player's
    /// recording under 100 ms (decoding from the keyframe) at a small bit-rate cost.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=60))]
    idr_interval: u32,

    /// Stream path: the stream is rtsp://HOST:PORT/PATH.
    #[arg(long, default_value = "live")]
    path: String,

    /// Seconds without keep-alive (RTSP request or RTCP report) after which a session is closed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=3600))]
    session_timeout: u64,

    /// Live captions (speech-to-text with whisper, sent as a T.140 text track): auto (on when
    /// a speech model is installed), on, off.
    #[arg(long, default_value = "auto", value_name = "MODE")]
    captions: CaptionMode,

    /// whisper.cpp ggml model for captions. Default: ggml-tiny.en.bin in $LIVECAST_MODEL_DIR,
    /// else ~/.local/share/livecast/models (scripts/install-model.sh installs it there).
    #[arg(long, value_name = "FILE")]
    model: Option<std::path::PathBuf>,

    /// Spoken language for captions: en, auto (detect), or a code such as de or fr
    /// (other than en needs a multilingual model).
    #[arg(long, default_value = "en", value_name = "LANG")]
    language: String,

    /// Threads whisper may use for captions.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    caption_threads: u32,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("'{s}' is not WIDTHxHEIGHT, e.g. 1280x720"))?;
    let w: u32 = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in '{s}'"))?;
    let h: u32 = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in '{s}'"))?;
    if !(16..=7680).contains(&w) || !(16..=4320).contains(&h) || w % 2 != 0 || h % 2 != 0 {
        return Err(format!(
            "size {w}x{h}: width and height must be even, 16..7680 x 16..4320"
        ));
    }
    Ok((w, h))
}

fn parse_bitrate(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000.0),
        Some('m' | 'M') => (&t[..t.len() - 1], 1_000_000.0),
        _ => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a bit rate like 2M or 800k"))?;
    let bits = v * mult;
    if !(1_000.0..=100_000_000.0).contains(&bits) {
        return Err(format!("bit rate {s} out of range (1k..100M)"));
    }
    Ok(bits as u32)
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // Every session uses a socket or two; don't let the default soft limit of 1024 cap them.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("livecast-server: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("livecast-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let listen = if args.listen.is_empty() {
        let mut v: Vec<SocketAddr> = vec!["0.0.0.0:8554".parse()?];
        // Only add IPv6 if the machine has it.
        if std::net::TcpListener::bind("[::1]:0").is_ok() {
            v.push("[::]:8554".parse()?);
        }
        v
    } else {
        args.listen.clone()
    };
    let path = args.path.trim_matches('/').to_string();
    let cfg = ServerConfig {
        listen,
        media: MediaConfig {
            video: args.video.clone(),
            audio: args.audio.clone(),
            video_cfg: VideoConfig {
                width: args.size.0,
                height: args.size.1,
                fps: args.fps,
            },
            video_bitrate: args.bitrate,
            audio_bitrate: args.audio_bitrate,
            idr_interval_secs: args.idr_interval,
            hooks: Default::default(),
        },
        rtsp: RtspConfig {
            path: path.clone(),
            session_timeout: Duration::from_secs(args.session_timeout),
            limits: Limits::default(),
        },
        captions: CaptionConfig {
            mode: args.captions,
            model: args.model.clone(),
            language: args.language.clone(),
            threads: args.caption_threads as usize,
        },
        title: "Livecast".into(),
        chat: false,
    };
    let server = livecast_server::start(cfg).await?;
    let p = &server.pipeline.video_params;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "livecast-server: streaming {} ({}x{} @ {} fps) + {}{}",
            server.pipeline.video_source,
            p.width,
            p.height,
            p.fps,
            server.pipeline.audio_source,
            if server.captions {
                " + live captions"
            } else {
                ""
            }
        );
        for l in &server.listening {
            if l.ip().is_unspecified() {
                for ip in local_addresses()
                    .into_iter()
                    .filter(|ip| ip.is_ipv4() == l.is_ipv4())
                {
                    println!("  {}", rtsp_url(ip, l.port(), &path));
                }
            } else {
                println!("  {}", rtsp_url(l.ip(), l.port(), &path));
            }
        }
        println!(
            "watch with: ffplay rtsp://127.0.0.1:{}/{path}",
            server.listening.first().map_or(8554, |l| l.port())
        );
    }
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    Ok(())
}
