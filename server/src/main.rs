//! `livecast-server`: stream a camera and microphone (or test sources, or files) over RTSP.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use livecast_proto::rtsp::Limits;
use livecast_server::cli::MediaArgs;
use livecast_server::net::{local_addresses, rtsp_url};
use livecast_server::rtsp_server::RtspConfig;
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

    #[command(flatten)]
    media: MediaArgs,

    /// Stream path: the stream is rtsp://HOST:PORT/PATH.
    #[arg(long, default_value = "live")]
    path: String,

    /// Seconds without keep-alive (RTSP request or RTCP report) after which a session is closed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=3600))]
    session_timeout: u64,

    /// Viewers served at most; one more is refused with 453 Not Enough Bandwidth (and a log
    /// line). Without it, new viewers are refused only while the video fan-out cannot keep up.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_viewers: Option<u64>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(livecast_server::DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
        livecast_server::cli::default_listen()
    } else {
        args.listen.clone()
    };
    let path = args.path.trim_matches('/').to_string();
    let cfg = ServerConfig {
        listen,
        media: args.media.media_config((1280, 720), 2_000_000),
        rtsp: RtspConfig {
            path: path.clone(),
            session_timeout: Duration::from_secs(args.session_timeout),
            limits: Limits::default(),
            max_viewers: args.max_viewers.map(|n| n as usize),
        },
        captions: args.media.caption_config(),
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
    // Waits (blocking, at exit) for the captioner to finish its pass: a process must not exit
    // with whisper still running.
    server.shutdown();
    Ok(())
}
