//! `livecast-server`: stream a camera and microphone (or test sources, or files) over RTSP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use livecast_proto::rtsp::publisher::PublishTransport;
use livecast_proto::rtsp::server::{AuthConfig, Roles};
use livecast_proto::rtsp::Limits;
use livecast_server::cli::{tls_addresses, MediaArgs, TlsListen};
use livecast_server::net::{local_addresses, rtsp_url};
use livecast_server::push::{check_url, PublishTarget};
use livecast_server::rtsp_server::{PublishOptions, RtspConfig};
use livecast_server::users::{default_users_path, Users, DEFAULT_USER};
use livecast_server::ServerConfig;
use tracing_subscriber::EnvFilter;

/// A line on standard output for the user; a closed stdout (`livecast-server | head -1`) is
/// not an error: the server goes on streaming.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// Live-stream a camera and microphone over RTSP 1.0 / RTP, playable by ffplay, ffmpeg, mpv,
/// GStreamer, VLC and livecast-player.
///
/// Watch with: ffplay rtsp://HOST:8554/live
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Let anyone who reaches the port watch (no Digest authentication).
    #[arg(long)]
    no_auth: bool,

    /// The users file (who may watch: names, roles, Digest HA1s). Default:
    /// ~/.local/share/livecast/users ($XDG_DATA_HOME/livecast/users), created on first start
    /// with the user viewer and a random password, printed once.
    #[arg(long, value_name = "FILE", global = true)]
    users: Option<PathBuf>,

    /// Address to accept RTSP connections on; repeat for several. Default: 0.0.0.0:8554 and
    /// [::]:8554 (every IPv4 and IPv6 address).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,

    /// RTSPS (RTSP over TLS, media interleaved in the TLS connection): address to accept on;
    /// repeat for several; off for none. Default: port 8322 on the --listen addresses, or
    /// 0.0.0.0:8322 and [::]:8322.
    #[arg(long, value_name = "ADDR:PORT|off")]
    tls_listen: Vec<TlsListen>,

    /// RTSPS certificate chain (PEM), with --tls-key. Default: a self-signed certificate
    /// generated on first start and kept in the data folder (~/.local/share/livecast).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

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

    /// Refuse publishers (ANNOUNCE and RECORD get 405). By default any path but PATH can be
    /// published to (ffmpeg -f rtsp, GStreamer rtspclientsink, OBS-class tools) and is served
    /// to viewers at rtsp://HOST:PORT/THAT-PATH; with authentication on, publishing needs the
    /// publish role of the users file.
    #[arg(long)]
    refuse_publishers: bool,

    /// A second publisher of a path drops the first instead of being refused with 453.
    #[arg(long)]
    takeover: bool,

    /// How many published paths get live captions at once (captions on, Opus audio): each
    /// takes about as much CPU as the stream's own captions; the paths past it are served
    /// without. 0: none.
    #[arg(long, default_value_t = livecast_server::rtsp_server::CAPTIONED_PATHS, value_name = "N")]
    caption_paths: usize,

    /// Offer the stream at several sizes (e.g. 1280x720,640x360), one encode each of the same
    /// pictures: the first at rtsp://HOST:PORT/PATH (it replaces --size), each other at
    /// PATH/WxH, at the bit rate scaled by pixel count; every description lists them all
    /// (a=x-livecast-renditions).
    #[arg(long, value_name = "WxH,...", value_parser = parse_renditions)]
    renditions: Option<Sizes>,

    /// Also push the stream into a relay (MediaMTX, another livecast-server, any RTSP server
    /// that takes ANNOUNCE/RECORD): rtsp://[USER:PASSWORD@]HOST[:PORT]/PATH. Repeat for
    /// several. Reconnects with backoff when the relay goes away or refuses.
    #[arg(long, value_name = "URL")]
    publish: Vec<String>,

    /// How --publish sends the media: tcp (interleaved in the RTSP connection) or udp.
    #[arg(long, default_value = "tcp", value_name = "tcp|udp", value_parser = parse_publish_transport)]
    publish_transport: PublishTransport,

    /// Record the stream to DIR/<path>-<UTC start>.mp4 (fragmented MP4: H.264, Opus, captions
    /// as text) with the captions in a .vtt beside it; playable up to its last second or two
    /// even if the server is killed.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,

    /// Length of each recorded file (a new one starts at the next keyframe): 1h, 30m, 90s.
    #[arg(long, default_value = "1h", value_name = "TIME", value_parser = livecast_server::record::parse_duration)]
    record_segment: Duration,
}

fn parse_publish_transport(s: &str) -> Result<PublishTransport, String> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok(PublishTransport::Tcp),
        "udp" => Ok(PublishTransport::Udp),
        _ => Err(format!("{s:?}: expected tcp or udp")),
    }
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Manage the users file (--users FILE, or the default one).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
}

#[derive(clap::Subcommand, Debug)]
enum UserAction {
    /// Add a user; the password comes from --password-file, else stdin (a prompt on a terminal).
    Add {
        name: String,
        /// Roles, comma separated: read (watch), publish (send a stream to another path with ANNOUNCE/RECORD).
        #[arg(long, default_value = "read")]
        role: String,
        /// Read the password from the first line of FILE.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Set a user's password (as for add).
    Passwd {
        name: String,
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Remove a user.
    Remove { name: String },
    /// List the users and their roles.
    List,
}

/// The first line of `file`, or of stdin (after a prompt with echo off on a terminal).
fn read_password(file: Option<&Path>) -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _};
    let line = match file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", f.display()))?
            .lines()
            .next()
            .unwrap_or("")
            .to_owned(),
        None => {
            let tty = std::io::stdin().is_terminal();
            if tty {
                eprint!("password: ");
                let _ = std::process::Command::new("stty").arg("-echo").status();
            }
            let mut line = String::new();
            let r = std::io::stdin().lock().read_line(&mut line);
            if tty {
                let _ = std::process::Command::new("stty").arg("echo").status();
                eprintln!();
            }
            r?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if line.is_empty() {
        anyhow::bail!("empty password");
    }
    Ok(line)
}

/// `livecast-server user ...`.
#[allow(clippy::print_stdout)]
fn user_command(path: &Path, action: UserAction) -> anyhow::Result<()> {
    let (mut users, created) = Users::load_or_create(path)?;
    if let Some(pw) = created {
        println!(
            "created {} with the user {DEFAULT_USER}, password {pw} (printed only now)",
            path.display()
        );
    }
    match action {
        UserAction::Add {
            name,
            role,
            password_file,
        } => {
            let roles = Roles::parse(&role).map_err(anyhow::Error::msg)?;
            livecast_server::users::check_name(&name)?;
            if users.get(&name).is_some() {
                anyhow::bail!("user {name} exists (livecast-server user passwd {name})");
            }
            let pw = read_password(password_file.as_deref())?;
            users.set(&name, &pw, Some(roles), true)?;
        }
        UserAction::Passwd {
            name,
            password_file,
        } => {
            if users.get(&name).is_none() {
                anyhow::bail!("no user {name} (livecast-server user add {name})");
            }
            let pw = read_password(password_file.as_deref())?;
            users.set(&name, &pw, None, false)?;
        }
        UserAction::Remove { name } => users.remove(&name)?,
        UserAction::List => {
            for u in &users.users {
                println!("{} {}", u.name, u.roles);
            }
            return Ok(());
        }
    }
    users.save(path)
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
    let mut args = Args::parse();
    let users_path = match args.users.clone().or_else(default_users_path) {
        Some(p) => p,
        None if args.no_auth && args.command.is_none() => PathBuf::new(),
        None => {
            eprintln!(
                "livecast-server: no HOME or XDG_DATA_HOME for the users file: give --users FILE"
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(Command::User { action }) = args.command.take() {
        return match user_command(&users_path, action) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("livecast-server: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
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
    match rt.block_on(run(args, users_path)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("livecast-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, users_path: PathBuf) -> anyhow::Result<()> {
    let listen = if args.listen.is_empty() {
        livecast_server::cli::default_listen()
    } else {
        args.listen.clone()
    };
    let path = args.path.trim_matches('/').to_string();
    let mut publish_targets = Vec::new();
    for url in &args.publish {
        check_url(url)?;
        publish_targets.push(PublishTarget {
            url: url.clone(),
            transport: args.publish_transport,
        });
    }
    // Who may watch: the users file, created with a viewer on first start.
    let (auth, new_password) = if args.no_auth {
        tracing::warn!("--no-auth: anyone who can reach the server may watch");
        (None, None)
    } else {
        let (users, pw) = Users::load_or_create(&users_path)?;
        if users.users.is_empty() {
            tracing::warn!(
                "{} has no users: nobody can watch (livecast-server user add NAME)",
                users_path.display()
            );
        }
        (Some(AuthConfig::new(users.users)), pw)
    };
    let authed = auth.is_some();
    // RTSPS: the certificate before anything starts, so a bad one stops us at once.
    let tls_listen = tls_addresses(&args.tls_listen, &args.listen);
    let tls = if tls_listen.is_empty() {
        None
    } else {
        Some(livecast_server::tls::load_or_generate(
            args.tls_cert.as_deref(),
            args.tls_key.as_deref(),
            livecast_server::data_dir().as_deref(),
        )?)
    };
    // The printed URLs carry the credentials when the password is known (just generated).
    let url_user = match &new_password {
        Some(pw) => format!("{DEFAULT_USER}:{pw}@"),
        None => String::new(),
    };
    let with_user = |url: String| url.replacen("://", &format!("://{url_user}"), 1);
    let mut media = args.media.media_config((1280, 720), 2_000_000);
    if let Some(Sizes(sizes)) = &args.renditions {
        (media.video_cfg.width, media.video_cfg.height) = sizes[0];
        media.renditions = sizes[1..].to_vec();
    }
    let renditions = media.renditions.len();
    let rendition_sizes = media.renditions.clone();
    let cfg = ServerConfig {
        listen,
        media,
        rtsp: RtspConfig {
            path: path.clone(),
            session_timeout: Duration::from_secs(args.session_timeout),
            limits: Limits::default(),
            max_viewers: args.max_viewers.map(|n| n as usize),
            auth,
            publishers: (!args.refuse_publishers).then_some(PublishOptions {
                takeover: args.takeover,
                captioned_paths: args.caption_paths,
            }),
        },
        captions: args.media.caption_config(),
        title: "Livecast".into(),
        chat: false,
        publish: publish_targets,
        adapt: false,
    };
    let mut server = livecast_server::start(cfg).await?;
    if let Some((t, _)) = &tls {
        server.serve_tls(&tls_listen, t.config.clone())?;
    }
    let recorder = match &args.record {
        Some(dir) => Some(livecast_server::record::Recorder::record_tracks(
            livecast_server::record::RecordConfig {
                dir: dir.clone(),
                name: path.clone(),
                segment: args.record_segment,
            },
            // The main path's tracks; the renditions' are the same pictures again.
            &server.rtsp.tracks()[..server.rtsp.tracks().len() - renditions],
        )?),
        None => None,
    };
    // Published paths are recorded too, each to its own files.
    let published_recorder = args.record.as_ref().map(|dir| {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(livecast_server::record::Recorder::record_published(
            livecast_server::record::RecordConfig {
                dir: dir.clone(),
                name: String::new(),
                segment: args.record_segment,
            },
            server.rtsp.paths().clone(),
            stopped,
        ));
        (stop, task)
    });
    let p = &server.pipeline.video_params;
    {
        // Sources that name their size (the test card: "testsrc 1280x720@30") are not told
        // it twice.
        let source = server.pipeline.video_source.to_string();
        let size = if source.contains(&format!("{}x{}", p.width, p.height)) {
            String::new()
        } else {
            format!(" ({}x{} @ {} fps)", p.width, p.height, p.fps)
        };
        say!(
            "livecast-server: streaming {source}{size} + {}{}",
            server.pipeline.audio_source,
            if server.captions {
                " + live captions"
            } else {
                ""
            }
        );
        let rtsps = |url: String| url.replacen("rtsp://", "rtsps://", 1);
        let listeners = (server.listening.iter().map(|l| (l, false)))
            .chain(server.listening_tls.iter().map(|l| (l, true)));
        for (l, tls) in listeners {
            let ips = if l.ip().is_unspecified() {
                local_addresses()
                    .into_iter()
                    .filter(|ip| ip.is_ipv4() == l.is_ipv4())
                    .collect()
            } else {
                vec![l.ip()]
            };
            for ip in ips {
                let url = rtsp_url(ip, l.port(), &path);
                let url = if tls { rtsps(url) } else { url };
                say!("  {}", with_user(url));
            }
        }
        if !rendition_sizes.is_empty() {
            let others: Vec<String> = rendition_sizes
                .iter()
                .map(|(w, h)| format!("{w}x{h} at /{path}/{w}x{h}"))
                .collect();
            say!(
                "renditions: {}x{} at /{path}, {} (livecast-player picks one by itself; \
                 --rendition WxH fixes one)",
                p.width,
                p.height,
                others.join(", ")
            );
        }
        if let Some((t, source)) = &tls {
            use livecast_server::tls::CertSource;
            let whence = match source {
                CertSource::Given(p) => format!("{}", p.display()),
                CertSource::Generated(p) => format!("self-signed, new in {}", p.display()),
                CertSource::Kept(p) => format!("self-signed, {}", p.display()),
            };
            say!("rtsps:// certificate SHA-256 {} ({whence})", t.fingerprint);
        }
        let port = server.listening.first().map_or(8554, |l| l.port());
        let local = format!("rtsp://127.0.0.1:{port}/{path}");
        let local = if authed && new_password.is_none() {
            local.replacen("rtsp://", "rtsp://USER:PASSWORD@", 1)
        } else {
            with_user(local)
        };
        say!("watch with: ffplay {local}");
        if new_password.is_some() {
            say!(
                "created {} with the user {DEFAULT_USER}; its password is shown only now",
                users_path.display()
            );
        } else if authed {
            say!(
                "access: Digest, users in {} (rtsp://USER:PASSWORD@HOST:{port}/{path}; \
                 set a password with: livecast-server user passwd {DEFAULT_USER})",
                users_path.display()
            );
        }
    }
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    if let Some(r) = recorder {
        r.stop();
    }
    if let Some((stop, task)) = published_recorder {
        let _ = stop.send(());
        let _ = task.await;
    }
    // Waits (blocking, at exit) for the captioner to finish its pass: a process must not exit
    // with whisper still running.
    server.shutdown();
    Ok(())
}

/// `--renditions`: sizes, best first.
#[derive(Clone, Debug)]
struct Sizes(Vec<(u32, u32)>);

/// See [`livecast_proto::rendition::parse_size_list`].
fn parse_renditions(s: &str) -> Result<Sizes, String> {
    livecast_proto::rendition::parse_size_list(s)
        .map(Sizes)
        .map_err(|e| e.to_string())
}
