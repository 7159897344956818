//! `livecast-player`: watch an RTSP stream (recording it all, so you can pause, seek, rewind,
//! fast-forward and go back to live), play a recording, or make a two-way call (`--call`).

use anyhow::Context as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::parser::ValueSource;
use clap::{Args as _, CommandFactory, FromArgMatches, Parser};
use livecast_player::call::{self, Call, CallConfig, CallLog, CallState};
use livecast_player::engine::{self, EngineConfig, Report, Source, TransportPref};
use livecast_server::cli::MediaArgs;

/// Plays RTSP streams (livecast-server, GStreamer, IP cameras…) and records the whole session;
/// or calls another Livecast peer (--call).
///
/// Keys: space play/pause, ←/→ 10 s back/forward, [ ] speed, l or End live, ↑/↓ volume,
/// m mute, c captions, i statistics, f fullscreen (Esc leaves it), s stop/resume receiving.
///
/// A call: `livecast-player --call bob.local` on one machine prints a call code;
/// `livecast-player --call alice.local --code CODE` on the other. Each starts its own server
/// (camera and microphone, or the --video / --audio given) and plays the other's, over RTSPS
/// (TLS) with the code as the password; both show a safety code to compare. Headless, each
/// line typed on standard input is sent as a chat message.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// rtsp://HOST[:PORT]/PATH or rtsps://HOST[:PORT]/PATH (TLS) to watch, or a recording file
    /// to play (not with --call).
    #[arg(required_unless_present = "call", conflicts_with = "call")]
    source: Option<String>,

    /// Call a peer: HOST (port 8554), HOST:PORT or rtsps://HOST:PORT/live. Runs our own
    /// server too (RTSPS) and retries until the peer answers.
    #[arg(long, value_name = "PEER")]
    call: Option<String>,

    /// Call mode: where our server accepts RTSPS (TLS) connections; repeat for several.
    /// Default: 0.0.0.0:8554 and [::]:8554.
    #[arg(long, value_name = "ADDR:PORT", requires = "call")]
    listen: Vec<std::net::SocketAddr>,

    /// Call mode: the call code the peer printed (20 digits). Without it, a new code is made
    /// and printed, to give to the peer.
    #[arg(long, value_name = "CODE", requires = "call")]
    code: Option<String>,

    /// Call mode: our name as the peer sees it. Default: user@host.
    #[arg(long, requires = "call")]
    name: Option<String>,

    /// Call mode: no echo cancellation (for headsets; with loudspeakers, leave it on).
    #[arg(long, requires = "call")]
    headset: bool,

    /// Call mode: keep the picture size, frame rate and bit rate fixed instead of adapting
    /// them to what reaches the other side (its RTCP reports of loss and round trip).
    #[arg(long, requires = "call")]
    fixed_quality: bool,

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

    /// Don't ask for retransmissions (RTCP NACK), even where the server offers them: set up
    /// plain RTP/AVP (for comparisons under loss).
    #[arg(long)]
    no_nack: bool,

    /// Where the stream lists renditions (livecast-server --renditions): auto (the default)
    /// moves down one on sustained loss and back up after a clean period; WxH receives that
    /// one.
    #[arg(long, value_name = "WxH|auto", default_value = "auto", value_parser = parse_rendition)]
    rendition: RenditionArg,

    /// User name for a server that asks for one (Digest authentication); the password comes
    /// from --password-file. Without it, a user and password in the URL
    /// (rtsp://USER:PASSWORD@HOST/PATH) are used.
    #[arg(long, value_name = "NAME", requires = "password_file")]
    user: Option<String>,

    /// The password for --user: the first line of FILE.
    #[arg(long, value_name = "FILE", requires = "user")]
    password_file: Option<PathBuf>,

    /// rtsps://: verify the server's certificate against the CA certificates in FILE (PEM)
    /// instead of trusting it on first use.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,

    /// rtsps://: trust the server's certificate even though it is not the one trusted before
    /// (replacing the fingerprint kept in ~/.local/share/livecast/known_hosts). Only when the
    /// server's owner confirms the new fingerprint.
    #[arg(long)]
    accept_new_fingerprint: bool,

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

    /// Export the recording SOURCE (or the part --from/--to) to FILE.mp4 and FILE.vtt (H.264,
    /// Opus and captions as they were received, no re-encoding) and exit.
    #[arg(long, value_name = "FILE", conflicts_with = "call")]
    export: Option<PathBuf>,

    /// With --export: start at this time of the recording (10:00, 1:02:03, 75.5), or rather
    /// at the video keyframe at or before it.
    #[arg(long, value_name = "TIME", requires = "export", value_parser = engine::export::parse_time)]
    from: Option<i64>,

    /// With --export: end at this time of the recording.
    #[arg(long, value_name = "TIME", requires = "export", value_parser = engine::export::parse_time)]
    to: Option<i64>,

    /// Call mode: what our server captures and sends.
    #[command(flatten, next_help_heading = "Call mode: our camera and microphone")]
    media: MediaArgs,
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
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                format!(
                    "{},wgpu=warn,naga=warn,iced=warn,cosmic_text=warn",
                    livecast_server::DEFAULT_LOG_FILTER
                )
                .into()
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    if args.call.is_none() {
        // Our own server's options mean nothing when only watching.
        let server_only = MediaArgs::augment_args(clap::Command::new("media"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .find(|id| matches.value_source(id) == Some(ValueSource::CommandLine));
        if let Some(id) = server_only {
            eprintln!(
                "livecast-player: --{} is for calls (--call PEER)",
                id.replace('_', "-")
            );
            return ExitCode::from(2);
        }
    }
    let result = match (args.call.clone(), args.export.clone()) {
        (Some(peer), _) => run_call(args, peer),
        (None, Some(out)) => export(&args, &out),
        (None, None) => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("livecast-player: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--export FILE REC`: writes the MP4 and the .vtt, and says what they hold.
fn export(args: &Args, out: &std::path::Path) -> anyhow::Result<()> {
    use engine::export::format_time;
    let rec = PathBuf::from(args.source.clone().unwrap_or_default());
    let s = engine::export::export_file(&rec, out, args.from, args.to)?;
    if let Some(from) = args.from {
        if s.start_us != from {
            eprintln!(
                "livecast-player: starting at {} (the keyframe at or before {})",
                format_time(s.start_us),
                format_time(from)
            );
        }
    }
    eprintln!(
        "livecast-player: wrote {} ({}, {} video frames, {} audio packets) and {} ({} captions)",
        s.mp4.display(),
        format_time(s.duration_us),
        s.video_frames,
        s.audio_packets,
        s.vtt.display(),
        s.cues
    );
    Ok(())
}

fn run(args: Args) -> anyhow::Result<()> {
    let src = args.source.clone().unwrap_or_default();
    let source = if src.contains("://") {
        if let Err(e) = livecast_proto::rtsp::RtspUrl::parse(&src) {
            anyhow::bail!("{e} (only rtsp:// and rtsps:// URLs or recording files can be played)");
        }
        Source::Url(src.clone())
    } else {
        let p = PathBuf::from(&src);
        if !p.exists() {
            anyhow::bail!(
                "'{}': no such file (give an rtsp:// URL or a recording)",
                p.display()
            );
        }
        Source::File(p)
    };
    let mut cfg = engine_config(source, &args);
    if let (Some(user), Some(file)) = (&args.user, &args.password_file) {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the password file {}", file.display()))?;
        let password = text.lines().next().unwrap_or("").to_owned();
        cfg.credentials = Some(livecast_proto::rtsp::client::Credentials {
            user: user.clone(),
            password,
        });
    }
    cfg.tls.ca = args.tls_ca.clone();
    cfg.tls.accept_new_fingerprint = args.accept_new_fingerprint;
    if args.headless {
        headless(cfg, &args)
    } else {
        gui(cfg, &args)
    }
}

fn engine_config(source: Source, args: &Args) -> EngineConfig {
    let mut cfg = EngineConfig::new(source);
    cfg.transport = args.transport;
    cfg.record = args.record.clone();
    cfg.audio_output = !args.no_audio;
    cfg.volume = f32::from(args.volume) / 100.0;
    cfg.captions_out = args.captions_out.clone();
    cfg.nack = !args.no_nack;
    cfg.rendition = args.rendition.0;
    cfg
}

/// `--rendition`: a size, or `None` for auto.
#[derive(Clone, Copy, Debug)]
struct RenditionArg(Option<(u32, u32)>);

fn parse_rendition(s: &str) -> Result<RenditionArg, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(RenditionArg(None));
    }
    livecast_proto::rendition::parse_size(s)
        .map(|size| RenditionArg(Some(size)))
        .map_err(|e| e.to_string())
}

fn gui(cfg: EngineConfig, args: &Args) -> anyhow::Result<()> {
    livecast_player::gui::run(
        cfg,
        livecast_player::gui::GuiOptions {
            title: format!("Livecast — {}", args.source.as_deref().unwrap_or_default()),
            fullscreen: args.fullscreen,
        },
    )
}

fn default_name() -> String {
    let user = std::env::var("USER").unwrap_or_default();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    match (user.is_empty(), host.is_empty()) {
        (false, false) => format!("{user}@{host}"),
        (false, true) => user,
        (true, false) => host,
        (true, true) => "Livecast".into(),
    }
}

fn run_call(args: Args, peer: String) -> anyhow::Result<()> {
    let listen = if args.listen.is_empty() {
        livecast_server::cli::default_listen()
    } else {
        args.listen.clone()
    };
    // Fail on a bad peer or code before starting anything.
    call::peer_url(&peer)?;
    let (code, code_generated) = match &args.code {
        Some(c) => (c.parse()?, false),
        None => (call::new_code(), true),
    };
    let mut engine = engine_config(Source::Url(String::new()), &args);
    engine.tls.ca = args.tls_ca.clone();
    engine.tls.accept_new_fingerprint = args.accept_new_fingerprint;
    let cfg = CallConfig {
        peer: peer.clone(),
        listen,
        code,
        code_generated,
        cert_dir: None,
        media: args.media.media_config((640, 480), 1_000_000),
        captions: args.media.caption_config(),
        name: args.name.clone().unwrap_or_else(default_name),
        echo_cancel: !args.headset,
        adapt: !args.fixed_quality,
        self_view: !args.headless,
        engine,
    };
    if args.headless {
        headless_call(cfg, &args)
    } else {
        livecast_player::gui::run_call(
            cfg,
            livecast_player::gui::GuiOptions {
                title: format!("Livecast call — {peer}"),
                fullscreen: args.fullscreen,
            },
        )
    }
}

/// The stats JSON of a call: the player's report plus the call's log.
#[derive(serde::Serialize)]
struct CallStats {
    #[serde(flatten)]
    player: Report,
    call: CallLog,
}

fn headless_call(cfg: CallConfig, args: &Args) -> anyhow::Result<()> {
    let call = Call::start(cfg.clone())?;
    let Call { engine, mut local } = call;
    let mut log = CallLog::new(&cfg, &local);
    #[allow(clippy::print_stdout)]
    {
        println!(
            "livecast-player: calling {} ({}); our server: {}",
            cfg.peer,
            local.url,
            local
                .listening
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        if cfg.code_generated {
            println!(
                "livecast-player: ask the peer to run: {}",
                call::invitation(&local.listening, &cfg.code)
            );
        }
    }
    let end = SessionEnd::new(args);
    let mut auth_failures = 0;
    // Chat: one message per line of standard input, held until the call is up both ways
    // (text sent before the peer's player has joined our stream would reach nobody).
    let (chat_tx, chat_rx) = std::sync::mpsc::channel::<String>();
    let _ = std::thread::Builder::new()
        .name("chat-stdin".into())
        .spawn(move || {
            use std::io::BufRead;
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if chat_tx.send(line).is_err() {
                    break;
                }
            }
        });
    let mut last = None;
    let mut shown_chat = 0;
    let mut last_captions: Vec<String> = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let st = engine.status();
        local.sessions();
        let state = log.observe(&st);
        if last.as_ref() != Some(&state) {
            match &state {
                CallState::Calling { attempt: 0 } => tracing::info!("calling {}...", cfg.peer),
                CallState::Calling { .. } => {}
                CallState::Connected => {
                    tracing::info!("connected to {}", st.title.as_deref().unwrap_or(&cfg.peer))
                }
                CallState::Ended { reason, .. } => tracing::info!("call ended: {reason}"),
            }
            last = Some(state.clone());
        }
        if state == CallState::Connected {
            if let Some(code) = log.note_safety(&mut local) {
                #[allow(clippy::print_stdout)]
                {
                    println!(
                        "livecast-player: safety code {code} (the peer sees the same one \
                         unless someone is in between: compare them)"
                    );
                }
            }
        }
        let failures = local.auth_failures();
        if failures > auth_failures {
            tracing::warn!(
                "our server refused a player with a wrong call code ({failures} so far): \
                 the peer must use our --code"
            );
            auth_failures = failures;
        }
        for m in &st.chat[shown_chat.min(st.chat.len())..] {
            tracing::info!(
                "chat from {}: {}",
                log.peer_name.as_deref().unwrap_or(&cfg.peer),
                m.text
            );
        }
        shown_chat = st.chat.len();
        if st.caption_text != last_captions {
            if !st.caption_text.is_empty() {
                tracing::info!("captions: {}", st.caption_text.join(" / "));
            }
            last_captions = st.caption_text.clone();
        }
        if state == CallState::Connected && local.peer_watching() {
            while let Ok(line) = chat_rx.try_recv() {
                if let Err(e) = local.send_chat(&line) {
                    tracing::warn!("chat not sent: {e}");
                }
            }
        }
        if matches!(state, CallState::Ended { .. }) {
            break;
        }
        if log.check_refused_code(&local) {
            tracing::warn!("call ended: {}", call::WRONG_CODE_FROM_PEER);
            std::thread::sleep(call::REFUSED_LINGER);
            break;
        }
        if end.signalled() {
            log.end("local", "hung up (signal)");
            break;
        }
        if end.timed_out() {
            log.end("local", "hung up (--duration)");
            break;
        }
    }
    // Our server first (BYE: the peer learns at once), then TEARDOWN to the peer's.
    let server = local.hang_up();
    log.finish(&local, server);
    let report = engine.report();
    engine.shutdown();
    drop(local);
    let refused = log
        .refused
        .then(|| log.end_reason.clone().unwrap_or_default());
    let stats = CallStats {
        player: report,
        call: log,
    };
    write_stats(&stats, args)?;
    match refused {
        Some(why) => anyhow::bail!("the call was refused: {why}"),
        None => Ok(()),
    }
}

/// The headless stats: to `--stats-json`, else standard output.
fn write_stats(stats: &impl serde::Serialize, args: &Args) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(stats)?;
    match &args.stats_json {
        Some(p) => std::fs::write(p, &json)?,
        None => {
            #[allow(clippy::print_stdout)]
            {
                println!("{json}");
            }
        }
    }
    Ok(())
}

fn headless(cfg: EngineConfig, args: &Args) -> anyhow::Result<()> {
    let handle = engine::start(cfg)?;
    let end = SessionEnd::new(args);
    let mut last_captions: Vec<String> = Vec::new();
    // The engine logs the connection's states as they change.
    loop {
        let st = handle.status();
        if st.caption_text != last_captions {
            if !st.caption_text.is_empty() {
                tracing::info!("captions: {}", st.caption_text.join(" / "));
            }
            last_captions = st.caption_text.clone();
        }
        if matches!(
            st.conn,
            engine::ConnState::Failed(_) | engine::ConnState::Unauthorized(_)
        ) {
            break;
        }
        if end.signalled() || end.timed_out() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = handle.report();
    let failed = match handle.status().conn {
        engine::ConnState::Failed(m) | engine::ConnState::Unauthorized(m) => Some(m),
        _ => None,
    };
    handle.shutdown();
    write_stats(&report, args)?;
    match failed {
        Some(m) => anyhow::bail!("{m}"),
        None => Ok(()),
    }
}

/// When a headless session ends: at `--duration`, or on Ctrl-C / SIGTERM (cleanly:
/// TEARDOWN, stats written).
struct SessionEnd {
    deadline: Option<Instant>,
    signal: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SessionEnd {
    fn new(args: &Args) -> Self {
        let signal = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = signal.clone();
        let _ = ctrlc_handler(move || s.store(true, std::sync::atomic::Ordering::Relaxed));
        Self {
            deadline: args
                .duration
                .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0))),
            signal,
        }
    }

    fn signalled(&self) -> bool {
        self.signal.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn timed_out(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
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
