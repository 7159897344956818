//! `livecast-player`: watch an RTSP stream (recording it all, so you can pause, seek, rewind,
//! fast-forward and go back to live), or play a recording.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use livecast_player::engine::{self, EngineConfig, Source, TransportPref};

/// Plays RTSP streams (livecast-server, GStreamer, IP cameras…) and records the whole session.
///
/// Keys: space play/pause, ←/→ 10 s back/forward, [ ] speed, l or End live, ↑/↓ volume,
/// m mute, c captions, i statistics, f fullscreen (Esc leaves it), s stop/resume receiving.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// rtsp://HOST[:PORT]/PATH to watch, or a recording file to play.
    source: String,

    /// How RTP reaches us: auto (UDP, falling back to TCP when UDP brings nothing within 2 s),
    /// udp, or tcp (interleaved in the RTSP connection).
    #[arg(long, default_value = "auto", value_parser = parse_transport)]
    transport: TransportPref,

    /// Keep the recording in FILE (else a temporary file, removed at exit).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,

    /// Run without a window (for tests, benchmarks and scripts).
    #[arg(long)]
    headless: bool,

    /// Headless: stop after this many seconds (default: until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,

    /// Headless: write measurements as JSON to FILE at the end.
    #[arg(long, value_name = "FILE")]
    stats_json: Option<PathBuf>,

    /// Don't open an audio device (play silently).
    #[arg(long)]
    no_audio: bool,

    /// Initial volume, 0 to 100.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
    volume: u8,

    /// Start in fullscreen.
    #[arg(long)]
    fullscreen: bool,

    /// At exit, write the session's captions to FILE: WebVTT (.vtt), or SubRip (.srt). The
    /// window's "Export captions" button writes here too (default: livecast-captions.vtt in
    /// the current directory).
    #[arg(long, value_name = "FILE")]
    captions_out: Option<PathBuf>,
}

fn parse_transport(s: &str) -> Result<TransportPref, String> {
    match s.to_ascii_lowercase().as_str() {
        "auto" => Ok(TransportPref::Auto),
        "udp" => Ok(TransportPref::Udp),
        "tcp" => Ok(TransportPref::Tcp),
        _ => Err(format!("'{s}': use auto, udp or tcp")),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,wgpu=warn,naga=warn,iced=warn,cosmic_text=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("livecast-player: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let source = if args.source.contains("://") {
        if !args.source.starts_with("rtsp://") {
            anyhow::bail!(
                "'{}': only rtsp:// URLs (or recording files) can be played",
                args.source
            );
        }
        Source::Url(args.source.clone())
    } else {
        let p = PathBuf::from(&args.source);
        if !p.exists() {
            anyhow::bail!(
                "'{}': no such file (give an rtsp:// URL or a recording)",
                p.display()
            );
        }
        Source::File(p)
    };
    let mut cfg = EngineConfig::new(source);
    cfg.transport = args.transport;
    cfg.record = args.record.clone();
    cfg.audio_output = !args.no_audio;
    cfg.volume = f32::from(args.volume) / 100.0;
    cfg.captions_out = args.captions_out.clone();
    if args.headless {
        headless(cfg, &args)
    } else {
        gui(cfg, &args)
    }
}

fn gui(cfg: EngineConfig, args: &Args) -> anyhow::Result<()> {
    livecast_player::gui::run(
        cfg,
        livecast_player::gui::GuiOptions {
            title: format!("Livecast — {}", args.source),
            fullscreen: args.fullscreen,
        },
    )
}

fn headless(cfg: EngineConfig, args: &Args) -> anyhow::Result<()> {
    let handle = engine::start(cfg)?;
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        // Ctrl-C / SIGTERM end the session cleanly (TEARDOWN, stats written).
        let _ = ctrlc_handler(move || stop.store(true, std::sync::atomic::Ordering::Relaxed));
    }
    let mut last_state = String::new();
    let mut last_captions: Vec<String> = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let st = handle.status();
        let state = format!("{:?}", st.conn);
        if state != last_state {
            tracing::info!("connection: {state}");
            last_state = state;
        }
        if st.caption_text != last_captions {
            if !st.caption_text.is_empty() {
                tracing::info!("captions: {}", st.caption_text.join(" / "));
            }
            last_captions = st.caption_text.clone();
        }
        if matches!(st.conn, engine::ConnState::Failed(_)) {
            break;
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed)
            || deadline.is_some_and(|d| Instant::now() >= d)
        {
            break;
        }
    }
    let report = handle.report();
    let failed = match handle.status().conn {
        engine::ConnState::Failed(m) => Some(m),
        _ => None,
    };
    handle.shutdown();
    let json = serde_json::to_string_pretty(&report)?;
    match &args.stats_json {
        Some(p) => std::fs::write(p, &json)?,
        None => {
            #[allow(clippy::print_stdout)]
            {
                println!("{json}");
            }
        }
    }
    match failed {
        Some(m) => anyhow::bail!("{m}"),
        None => Ok(()),
    }
}

/// Installs a SIGINT/SIGTERM handler through a small tokio runtime thread.
fn ctrlc_handler(f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(t) => t,
                        Err(_) => return,
                    };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
                f();
            })
        })?;
    Ok(())
}
