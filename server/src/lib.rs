//! # livecast-server
//!
//! The broadcaster's side of Livecast: captures a camera and a microphone (or built-in test
//! sources, or files), encodes them once (H.264 with openh264, Opus), and serves the live stream
//! over RTSP 1.0 (RFC 2326) to any number of players, with RTP/RTCP (RFC 3550) on separate UDP
//! ports per track or interleaved in the RTSP TCP connection.
//!
//! ## Design
//! - [`source`]: capture threads, paced in real time, stamping every frame with its wall-clock
//!   capture time. The built-in test card and tone share one clock so lip sync can be measured.
//! - [`encode`]: openh264 / libopus wrappers.
//! - [`pipeline`]: one encoder thread and one fan-out thread per track.
//! - [`track`]: the fan-out: the same packets to every client, sequence numbers rewritten per
//!   client, keyframe gating for joiners, RTCP sender reports.
//! - [`record`]: `--record`: the packets each track fans out, tapped off to a thread that
//!   writes fragmented MP4 ([`livecast_proto::mp4`]) and WebVTT files.
//! - [`rtsp_server`]: the sockets and tasks around [`livecast_proto::rtsp::server`], the Sans-IO
//!   state machine that handles requests, sessions and their time-outs; the shell carries out
//!   its effects (subscribe a client to a track, keyframe requests, sender reports).
//! - [`publish`]: streams published into the server (ANNOUNCE/RECORD) on other paths, and the
//!   registry of those paths; their tracks are re-served with the same fan-out.
//!
//! ## Limitations
//! One stream of our own per server (`/live`), plus what publishers send to other paths
//! ([`publish`]); no multicast; Digest authentication ([`users`], on in the `livecast-server`
//! binary, off in [`ServerConfig`] by default); RTSPS ([`tls`], [`RunningServer::serve_tls`])
//! carries media interleaved in the TLS connection only (no SRTP); RTSP 2.0 clients get `505`.

pub mod adapt;
pub mod captions;
pub mod chat;
pub mod cli;
pub mod encode;
pub mod hooks;
pub mod net;
pub mod pipeline;
pub mod publish;
pub mod publish_captions;
pub mod push;

pub mod record;
pub mod rtsp_server;
pub mod sdp;
pub mod source;
pub mod tls;
pub mod track;
pub mod users;

/// The log filter when `RUST_LOG` is not set: our `info` lines (a handful at start), and
/// whisper.cpp's own model-loading report (about 35 lines at its INFO) only from `RUST_LOG=debug`
/// on; its warnings and errors still show.
pub const DEFAULT_LOG_FILTER: &str = "info,whisper_rs=warn,symphonia_core=error,symphonia_format_isomp4=error,symphonia_format_mkv=error,symphonia_format_ogg=error,symphonia_bundle_mp3=error,symphonia_codec_aac=error";

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use livecast_proto::time::Ssrc;
use tracing::debug;

use crate::captions::CaptionConfig;
use crate::pipeline::{MediaConfig, Pipeline};
use crate::rtsp_server::{RtspConfig, RtspServer};
use crate::source::{AudioSpec, MediaClock, VideoConfig, VideoSpec};
use crate::track::{Track, TrackInfo, TrackKind, TrackSockets};

/// Everything `livecast-server` needs to run.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub media: MediaConfig,
    pub rtsp: RtspConfig,
    pub captions: CaptionConfig,
    /// The SDP session name (`s=`): "Livecast", or in a call the caller's name.
    pub title: String,
    /// Call mode: add a chat track (T.140 text the user types, see [`chat`]).
    pub chat: bool,
    /// Relays the stream is pushed into (`--publish`).
    pub publish: Vec<push::PublishTarget>,
    /// Adapt the video's rate, size and frame rate to the viewer's reception reports (a call:
    /// one viewer). See [`adapt`].
    pub adapt: bool,
}

impl ServerConfig {
    /// The test card and a tone at `video_cfg` and `video_bitrate` (bit/s), 64 kbit/s audio, an
    /// IDR every 2 s, default RTSP settings, no captions: for tests and benchmarks.
    pub fn test_sources(listen: SocketAddr, video_cfg: VideoConfig, video_bitrate: u32) -> Self {
        ServerConfig {
            listen: vec![listen],
            media: MediaConfig {
                video: VideoSpec::TestSrc,
                audio: AudioSpec::Tone,
                video_cfg,
                video_bitrate,
                audio_bitrate: 64_000,
                idr_interval_secs: 2,
                hooks: Default::default(),
                fanout_threads: 0,
                renditions: Vec::new(),
            },
            rtsp: RtspConfig::default(),
            captions: Default::default(),
            title: "Livecast".into(),
            chat: false,
            publish: Vec::new(),
            adapt: false,
        }
    }
}

/// The data folder: `$XDG_DATA_HOME/livecast`, else `~/.local/share/livecast` (users,
/// models, the RTSPS certificate, the player's known hosts).
pub fn data_dir() -> Option<std::path::PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Some(std::path::PathBuf::from(d).join("livecast"));
    }
    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/share/livecast"))
}

/// A running server: its RTSP state, its media pipeline and the addresses it listens on.
pub struct RunningServer {
    pub rtsp: Arc<RtspServer>,
    pub pipeline: Pipeline,
    pub listening: Vec<SocketAddr>,
    /// The RTSPS listeners ([`RunningServer::serve_tls`]).
    pub listening_tls: Vec<SocketAddr>,
    /// Whether the stream has a caption track.
    pub captions: bool,
    /// The chat track's input, when [`ServerConfig::chat`] is set.
    pub chat: Option<chat::ChatInput>,
    captioner: Option<captions::CaptionWorker>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Accepts RTSPS on each of `addrs` too (an IPv6 one that this machine cannot bind is
    /// skipped, as for plain RTSP's default); returns the addresses bound.
    pub fn serve_tls(
        &mut self,
        addrs: &[SocketAddr],
        tls: Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> anyhow::Result<Vec<SocketAddr>> {
        let mut bound = Vec::new();
        for addr in addrs {
            let listener = match bind_listener(*addr) {
                Ok(l) => l,
                Err(e) if addr.is_ipv6() && addrs.len() > 1 && addr.ip().is_unspecified() => {
                    tracing::debug!("no IPv6 for RTSPS on {addr}: {e}");
                    continue;
                }
                Err(e) => {
                    let why =
                        format!("listening (RTSPS) on {addr} (--tls-listen ADDR:PORT or off)");
                    return Err(e.context(why));
                }
            };
            bound.push(listener.local_addr()?);
            self.tasks.push(tokio::spawn(
                self.rtsp.clone().serve_tls(listener, tls.clone()),
            ));
        }
        self.listening_tls.extend(&bound);
        Ok(bound)
    }

    /// Stops serving: closes the listeners and every session (clients see the server go away)
    /// and stops capture and encoding.
    pub fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.rtsp.close_all();
        drop(self.pipeline);
        // The sources stop, the audio encoder drops its caption tap, and the captioner ends
        // after its current pass (at most a second or so of whisper).
        if let Some(w) = &self.captioner {
            if !w.wait(Duration::from_secs(10)) {
                tracing::warn!("the captioner did not stop within 10 s");
            }
        }
        self.rtsp.paths().stop_captions(Duration::from_secs(10));
    }
}

pub const VIDEO_PT: u8 = 96;
pub const AUDIO_PT: u8 = 97;
/// RFC 4588 retransmissions of the video (`a=fmtp:100 apt=96`)...
pub const VIDEO_RTX_PT: u8 = 100;
/// ... and of the audio (`a=fmtp:101 apt=97`).
pub const AUDIO_RTX_PT: u8 = 101;
pub use captions::{RED_PT, T140_PT};

fn make_track(
    index: usize,
    kind: TrackKind,
    pt: u8,
    clock_rate: u32,
    clock: MediaClock,
    shards: usize,
) -> anyhow::Result<Arc<Track>> {
    let (rtp_v4, rtcp_v4) = match net::bind_rtp_pair(net::any_v4())? {
        Some((a, b)) => (Some(Arc::new(a)), Some(Arc::new(b))),
        None => (None, None),
    };
    let (rtp_v6, rtcp_v6) = match net::bind_rtp_pair(net::any_v6())? {
        Some((a, b)) => (Some(Arc::new(a)), Some(Arc::new(b))),
        None => (None, None),
    };
    let ssrc = Ssrc(rand::random());
    let info = TrackInfo {
        index,
        kind,
        payload_type: pt,
        clock_rate,
        ssrc,
        cname: format!("livecast-{:08x}@{}", rand::random::<u32>(), hostname()),
        // Video and audio. Opus's in-band FEC covers speech only (SILK and hybrid modes;
        // music and tones are CELT, which carries none), and the player's playout delay
        // leaves time for a round trip while packets are being lost.
        nack: kind != TrackKind::Text,
        rtx_payload_type: match kind {
            TrackKind::Video => Some(VIDEO_RTX_PT),
            TrackKind::Audio => Some(AUDIO_RTX_PT),
            TrackKind::Text => None,
        },
    };
    if rtp_v6.is_none() {
        track::warn_missing_family(&info, true);
    }
    Ok(Arc::new(
        Track::new(
            info,
            TrackSockets {
                rtp_v4,
                rtcp_v4,
                rtp_v6,
                rtcp_v6,
            },
            clock.epoch_wall,
        )
        .with_shards(shards),
    ))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// How old a kept keyframe may be to start a joiner from, for a file passed through: longer
/// than the keyframe interval of most files (x264's default is 250 frames: 10 s at 25 fps).
const PASSTHROUGH_RECENT_WINDOW: std::time::Duration = std::time::Duration::from_secs(12);

/// Starts sources, encoders, sockets and listeners; returns once the server accepts clients.
/// Must be called inside a tokio runtime.
pub async fn start(cfg: ServerConfig) -> anyhow::Result<RunningServer> {
    let clock = MediaClock::now();
    let shards = cfg.media.fanout_threads();
    let mut video = make_track(0, TrackKind::Video, VIDEO_PT, 90_000, clock, shards)?;
    if pipeline::is_passthrough(&cfg.media.video) {
        // A file's H.264 has keyframes only where the file has them: joiners start from
        // the last one, however old (within the fan-out's packet bound).
        if let Some(t) = Arc::get_mut(&mut video) {
            t.set_recent_window(PASSTHROUGH_RECENT_WINDOW);
        }
    }
    let audio = make_track(
        1,
        TrackKind::Audio,
        AUDIO_PT,
        livecast_proto::codec::opus::CLOCK_RATE,
        clock,
        shards,
    )?;
    let ccfg = cfg.captions.clone();
    let models = tokio::task::spawn_blocking(move || captions::load(&ccfg))
        .await
        .context("loading the speech model")?;
    let caption_models = models.as_ref().map(captions::Models::source);
    let (text, tap, captioner) = match models {
        Some(t) => {
            let text = make_track(2, TrackKind::Text, RED_PT, 1000, clock, 1)?;
            let (tap, worker) = captions::start(t, text.clone())?;
            (Some(text), Some(tap), Some(worker))
        }
        None => (None, None, None),
    };
    let (chat_track, chat_input) = if cfg.chat {
        let index = if text.is_some() { 3 } else { 2 };
        let t = make_track(index, TrackKind::Text, RED_PT, 1000, clock, 1)?;
        let input = chat::start(t.clone())?;
        (Some(t), Some(input))
    } else {
        (None, None)
    };
    // Renditions: one more video track each, numbered after all the main path's.
    let first_rendition = 2 + usize::from(text.is_some()) + usize::from(chat_track.is_some());
    let mut rendition_tracks = Vec::new();
    for i in 0..cfg.media.renditions.len() {
        let index = first_rendition + i;
        rendition_tracks.push(make_track(
            index,
            TrackKind::Video,
            VIDEO_PT,
            90_000,
            clock,
            shards,
        )?);
    }
    let media = cfg.media.clone();
    let (v2, a2, r2) = (video.clone(), audio.clone(), rendition_tracks.clone());
    let pipeline =
        tokio::task::spawn_blocking(move || pipeline::start(&media, clock, v2, a2, tap, r2))
            .await
            .context("pipeline start-up")??;
    let mut text_tracks = Vec::new();
    if let Some(t) = &text {
        text_tracks.push((&t.info, sdp::TextRole::Captions));
    }
    if let Some(t) = &chat_track {
        text_tracks.push((&t.info, sdp::TextRole::Chat));
    }
    let mut sdp = sdp::describe(
        &pipeline.video_params,
        &video.info,
        &audio.info,
        &text_tracks,
        cfg.media.video_bitrate,
        cfg.media.audio_bitrate,
        &cfg.title,
    );
    let mut own_paths = Vec::new();
    if !cfg.media.renditions.is_empty() {
        let path = cfg.rtsp.path.trim_matches('/');
        let mut sizes = vec![(cfg.media.video_cfg.width, cfg.media.video_cfg.height)];
        sizes.extend(&cfg.media.renditions);
        let listed = livecast_proto::rendition::renditions_for(&format!("/{path}"), &sizes);
        livecast_proto::rendition::set_in_sdp(&mut sdp, &listed);
        for ((r, params), (track, size)) in listed[1..]
            .iter()
            .zip(&pipeline.rendition_params)
            .zip(rendition_tracks.iter().zip(&cfg.media.renditions))
        {
            // The rendition's video is its trackID=0; the other tracks are the main path's.
            let mut vinfo = track.info.clone();
            vinfo.index = 0;
            let mut rsdp = sdp::describe(
                params,
                &vinfo,
                &audio.info,
                &text_tracks,
                cfg.media.rendition_bitrate(*size),
                cfg.media.audio_bitrate,
                &cfg.title,
            );
            livecast_proto::rendition::set_in_sdp(&mut rsdp, &listed);
            let mut ids = vec![track.info.index];
            ids.extend(1..first_rendition);
            own_paths.push(livecast_proto::rtsp::server::OwnPath {
                path: r.path.trim_matches('/').to_string(),
                sdp: rsdp,
                tracks: ids,
            });
        }
    }
    let has_captions = text.is_some();
    let mut tracks = vec![video, audio];
    tracks.extend(text);
    tracks.extend(chat_track);
    let announced = push::announced_sdp(&sdp);
    let main_tracks = tracks.clone();
    tracks.extend(rendition_tracks);
    let rtsp = RtspServer::with_own_paths(cfg.rtsp.clone(), tracks.clone(), sdp, own_paths);
    if let Some(m) = caption_models {
        rtsp.caption_published_with(m);
    }
    if cfg.adapt {
        let v = cfg.media.video_cfg;
        rtsp.adapt_with(adapt::Adapter::new(
            cfg.media.hooks.controls.clone(),
            Box::new({
                let video = tracks[0].clone();
                move || video.octets_sent()
            }),
            v.width,
            v.height,
            v.fps,
            cfg.media.video_bitrate,
        ));
    }
    for (i, t) in tracks.iter().enumerate() {
        for s in [&t.sockets.rtcp_v4, &t.sockets.rtcp_v6]
            .into_iter()
            .flatten()
        {
            net::spawn_rtcp_reader(s, rtsp.clone(), i);
        }
    }
    let mut listening = Vec::new();
    let mut tasks = Vec::new();
    for addr in &cfg.listen {
        let listener = bind_listener(*addr).with_context(|| format!("listening on {addr}"))?;
        listening.push(listener.local_addr()?);
        tasks.push(tokio::spawn(rtsp.clone().serve(listener)));
    }
    for (i, target) in cfg.publish.iter().enumerate() {
        tasks.push(tokio::spawn(push::run(
            i,
            target.clone(),
            main_tracks.clone(),
            announced.clone(),
        )));
    }
    tasks.push(tokio::spawn(rtsp.clone().timer_loop()));
    tasks.extend(rtsp.spawn_ingest());
    tasks.push(tokio::spawn(track::sender_report_loop(
        tracks,
        Duration::from_secs(5),
    )));
    debug!(video = %pipeline.video_source, audio = %pipeline.audio_source, "serving");
    Ok(RunningServer {
        rtsp,
        pipeline,
        listening,
        listening_tls: Vec::new(),
        captions: has_captions,
        chat: chat_input,
        captioner,
        tasks,
    })
}

/// A TCP listener; IPv6 ones are v6-only so `0.0.0.0:8554` and `[::]:8554` can both be bound.
fn bind_listener(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(s.into())?)
}
