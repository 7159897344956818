//! Command-line options shared by `livecast-server` and `livecast-player --call` (which runs a
//! server too): sources, sizes, bit rates, captions.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::captions::{CaptionAccuracy, CaptionConfig, CaptionMode};
use crate::pipeline::MediaConfig;
use crate::source::{AudioSpec, VideoConfig, VideoSpec};

/// What to capture and how to encode it.
#[derive(clap::Args, Debug, Clone)]
pub struct MediaArgs {
    /// Video source: auto (camera if present, else testsrc), testsrc (moving test card with
    /// clock, frame number, and a white flash every second), camera[:INDEX], file:PATH (Y4M,
    /// encoded here; or MP4/MOV/MKV/WebM with H.264, streamed as it is, no re-encoding).
    #[arg(long, default_value = "auto", value_name = "SOURCE")]
    pub video: VideoSpec,

    /// Audio source: auto (microphone if present, else tone), tone (silence with a 50 ms beep
    /// at each white flash of testsrc), mic[:NAME], file:PATH.wav.
    #[arg(long, default_value = "auto", value_name = "SOURCE")]
    pub audio: AudioSpec,

    /// Picture size of testsrc and the camera, WIDTHxHEIGHT (files keep their own size).
    /// Default: 1280x720; 640x480 in a call.
    #[arg(long, value_parser = parse_size, value_name = "WxH")]
    pub size: Option<(u32, u32)>,

    /// Frames per second of testsrc and the camera.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=120))]
    pub fps: u32,

    /// H.264 bit rate in bit/s (suffixes k and M allowed: 2M, 800k). Default: 2M; 1M in a
    /// call.
    #[arg(long, value_parser = parse_bitrate, value_name = "BITS")]
    pub bitrate: Option<u32>,

    /// Opus bit rate in bit/s (6k to 510k).
    #[arg(long, default_value = "64k", value_parser = parse_bitrate, value_name = "BITS")]
    pub audio_bitrate: u32,

    /// Seconds between periodic IDR (key) frames. One second keeps seeking in a player's
    /// recording under 100 ms (decoding from the keyframe) at a small bit-rate cost.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub idr_interval: u32,

    /// Threads sending each track to the viewers, each to its share of them; 0: one per core.
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=64))]
    pub fanout_threads: u16,

    /// Live captions (speech-to-text with whisper, sent as a T.140 text track): auto (on when
    /// a speech model is installed), on, off.
    #[arg(long, default_value = "auto", value_name = "MODE")]
    pub captions: CaptionMode,

    /// Speech model for captions: tiny.en (the default: English, fastest), base (multilingual,
    /// slower, more accurate; scripts/install-model.sh --base installs it), or a whisper.cpp
    /// ggml FILE. Models are looked for in $LIVECAST_MODEL_DIR, else
    /// ~/.local/share/livecast/models, where scripts/install-model.sh installs them.
    #[arg(long, value_name = "NAME|FILE")]
    pub model: Option<PathBuf>,

    /// Spoken language for captions: en, auto (detect), or a code such as de or fr
    /// (other than en needs a multilingual model).
    #[arg(long, default_value = "en", value_name = "LANG")]
    pub language: String,

    /// Threads whisper may use for captions.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub caption_threads: u32,

    /// Captions: normal (text about 1 s after the words) or high (beam search: about a
    /// fifth fewer word errors, text about 2 s after the words; same CPU).
    #[arg(long, default_value = "normal", value_name = "normal|high")]
    pub caption_accuracy: CaptionAccuracy,
}

impl MediaArgs {
    /// The encoders' configuration; `size` and `bitrate` fall back to the given defaults.
    pub fn media_config(&self, size: (u32, u32), bitrate: u32) -> MediaConfig {
        let (width, height) = self.size.unwrap_or(size);
        MediaConfig {
            video: self.video.clone(),
            audio: self.audio.clone(),
            video_cfg: VideoConfig {
                width,
                height,
                fps: self.fps,
            },
            video_bitrate: self.bitrate.unwrap_or(bitrate),
            audio_bitrate: self.audio_bitrate,
            idr_interval_secs: self.idr_interval,
            hooks: Default::default(),
            fanout_threads: usize::from(self.fanout_threads),
            renditions: Vec::new(),
        }
    }

    pub fn caption_config(&self) -> CaptionConfig {
        CaptionConfig {
            mode: self.captions,
            model: self.model.clone(),
            language: self.language.clone(),
            threads: self.caption_threads as usize,
            accuracy: self.caption_accuracy,
        }
    }
}

/// Where to listen when `--listen` is not given: every IPv4 address on port 8554, and every
/// IPv6 one too if the machine has IPv6.
pub fn default_listen() -> Vec<SocketAddr> {
    default_listen_on(8554)
}

/// Every IPv4 address on `port`, and every IPv6 one too if the machine has IPv6.
pub fn default_listen_on(port: u16) -> Vec<SocketAddr> {
    let mut v = vec![SocketAddr::from(([0, 0, 0, 0], port))];
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        v.push(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)));
    }
    v
}

/// Default RTSPS port (gortsplib/MediaMTX's; 322 needs root).
pub const DEFAULT_TLS_PORT: u16 = 8322;

/// `--tls-listen`: an address, or `off` for no RTSPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsListen {
    Off,
    On(SocketAddr),
}

impl std::str::FromStr for TlsListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(TlsListen::Off);
        }
        s.parse()
            .map(TlsListen::On)
            .map_err(|_| format!("'{s}' is neither ADDR:PORT (0.0.0.0:8322, [::]:8322) nor off"))
    }
}

/// The RTSPS addresses `--tls-listen` asks for: none if any is `off`; if none is given,
/// [`DEFAULT_TLS_PORT`] on the addresses of `--listen` (`listen`, when given: a server kept
/// to one address keeps RTSPS there too), else on every address.
pub fn tls_addresses(given: &[TlsListen], listen: &[SocketAddr]) -> Vec<SocketAddr> {
    if given.contains(&TlsListen::Off) {
        return Vec::new();
    }
    let addrs: Vec<SocketAddr> = given
        .iter()
        .filter_map(|l| match l {
            TlsListen::On(a) => Some(*a),
            TlsListen::Off => None,
        })
        .collect();
    if !addrs.is_empty() {
        return addrs;
    }
    if listen.is_empty() {
        return default_listen_on(DEFAULT_TLS_PORT);
    }
    let mut v: Vec<SocketAddr> = listen
        .iter()
        .map(|a| SocketAddr::new(a.ip(), DEFAULT_TLS_PORT))
        .collect();
    v.dedup();
    v
}

/// `WIDTHxHEIGHT`, even, 16..7680 x 16..4320.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
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
    if !(16..=7680).contains(&w)
        || !(16..=4320).contains(&h)
        || !w.is_multiple_of(2)
        || !h.is_multiple_of(2)
    {
        return Err(format!(
            "size {w}x{h}: width and height must be even, 16..7680 x 16..4320"
        ));
    }
    Ok((w, h))
}

/// A bit rate such as `2M`, `800k` or `64000`, 1k..100M.
pub fn parse_bitrate(s: &str) -> Result<u32, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_listen_addresses() {
        let on = |s: &str| TlsListen::On(s.parse().unwrap());
        assert_eq!("OFF".parse(), Ok(TlsListen::Off));
        assert_eq!("127.0.0.1:9322".parse(), Ok(on("127.0.0.1:9322")));
        assert_eq!(
            "8322".parse::<TlsListen>(),
            Err("'8322' is neither ADDR:PORT (0.0.0.0:8322, [::]:8322) nor off".into())
        );
        let addrs =
            |v: &[&str]| -> Vec<SocketAddr> { v.iter().map(|a| a.parse().unwrap()).collect() };
        let listen = addrs(&["127.0.0.1:8554", "127.0.0.1:9554", "[::1]:8554"]);
        assert_eq!(tls_addresses(&[TlsListen::Off], &[]), addrs(&[]));
        assert_eq!(
            tls_addresses(&[on("127.0.0.1:9322"), TlsListen::Off], &listen),
            addrs(&[])
        );
        assert_eq!(
            tls_addresses(&[on("127.0.0.1:9322")], &listen),
            addrs(&["127.0.0.1:9322"])
        );
        assert_eq!(
            tls_addresses(&[], &listen),
            addrs(&["127.0.0.1:8322", "[::1]:8322"])
        );
        assert_eq!(tls_addresses(&[], &[])[0], "0.0.0.0:8322".parse().unwrap());
    }

    #[test]
    fn sizes_and_bitrates() {
        assert_eq!(parse_size("640x480"), Ok((640, 480)));
        assert_eq!(parse_size(" 320 X 240"), Ok((320, 240)));
        assert!(parse_size("641x480").is_err());
        assert!(parse_size("640").is_err());
        assert!(parse_size("8x8").is_err());
        assert_eq!(parse_bitrate("2M"), Ok(2_000_000));
        assert_eq!(parse_bitrate("800k"), Ok(800_000));
        assert_eq!(parse_bitrate("64000"), Ok(64_000));
        assert!(parse_bitrate("fast").is_err());
        assert!(parse_bitrate("500").is_err());
    }
}
