//! Measurements of a playback session, written as JSON by `--stats-json` and read by the
//! benchmarks. Field names are the ones the issue asks for.

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct VideoReport {
    pub frames_decoded: u64,
    /// Pictures put on screen (not those decoded only to reach a later one).
    pub frames_shown: u64,
    /// Pictures decoded before the first one shown and not shown: a joiner starts at the
    /// server's last keyframe and catches up to live from there.
    pub frames_before_first: u64,
    /// Pictures decoded after the first one shown and not shown: they came (or were decoded)
    /// after the playhead had passed their time.
    pub frames_late: u64,
    /// Pictures not decoded at all: playback fell so far behind (a slow or starved machine)
    /// that it went on at the next keyframe.
    pub frames_skipped: u64,
    /// Units not decoded while the decoder waited for a keyframe: at the start, after a seek,
    /// or after a unit that failed to decode (a loss nothing recovered).
    pub frames_awaiting_keyframe: u64,
    /// Units recorded and not yet due when the report was made (ahead of the playhead; units
    /// due and not decoded, a stalled playback's, are not counted here).
    pub frames_pending: u64,
    /// The longest time between two pictures shown while playing (pause and seeks start the
    /// count again), ms; 0 before two pictures.
    pub longest_freeze_ms: f64,
    /// Every wait of 250 ms or more between two pictures: (ms since the start when it ended,
    /// its length in ms).
    pub freezes: Vec<(f64, f64)>,
    pub width: u32,
    pub height: u32,
    pub decode_errors: u64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct AudioReport {
    pub frames_decoded: u64,
    pub decode_errors: u64,
    /// Lost 20 ms frames made up by packet loss concealment.
    pub concealed: u64,
    /// Lost frames recovered from the next packet's Opus in-band FEC.
    pub recovered: u64,
    /// Where the audio went: a device name or "none (silent)".
    pub output: String,
    /// Output blocks that found no audio queued once playing had started (gaps heard).
    pub underruns: u64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RtpReport {
    pub packets_received: u64,
    pub packets_lost: i64,
    pub jitter_ms: f64,
    pub tcp: bool,
    /// Media came as SRTP over UDP (`rtsps://`).
    pub srtp: bool,
    /// SRTP/SRTCP packets dropped (failed authentication, replays).
    pub srtp_rejected: u64,
    /// Retransmissions asked for (sequence numbers in RTCP generic NACKs, each request
    /// counted).
    pub nack_sent: u64,
    /// RFC 4588 retransmission packets received.
    pub retransmissions_received: u64,
    /// Missing packets that came by retransmission in time to be used.
    pub recovered: u64,
    /// Non-reference pictures damaged by a loss and skipped, with no keyframe to wait for
    /// (streams with such pictures: ours, in two temporal layers).
    pub dropped_pictures: u64,
    /// Round trip to the server as measured (RTSP exchanges, answered NACKs), ms.
    pub rtt_ms: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub samples: usize,
}

impl Percentiles {
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let pick = |q: f64| -> Option<f64> {
            if v.is_empty() {
                return None;
            }
            let i = ((v.len() - 1) as f64 * q).round() as usize;
            v.get(i).copied()
        };
        Self {
            p50: pick(0.5),
            p95: pick(0.95),
            samples: v.len(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct CaptionReport {
    pub start_ms: i64,
    pub end_ms: i64,
    pub text: String,
}

/// One block of caption text as received: when its first word was spoken (sender's clock,
/// from the RTCP sender reports) and when it arrived, both ms since the Unix epoch. What the
/// caption-delay benchmark works from.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct CaptionBlockReport {
    pub spoken_unix_ms: i64,
    pub arrival_unix_ms: i64,
    pub text: String,
}

/// One chat message received (call mode); times as in [`CaptionBlockReport`].
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ChatReport {
    pub sent_unix_ms: i64,
    pub arrival_unix_ms: i64,
    pub text: String,
}

/// The whole report.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Report {
    pub source: String,
    pub duration_s: f64,
    pub video: VideoReport,
    pub audio: AudioReport,
    pub rtp: RtpReport,
    /// From engine start to the first decoded picture shown.
    pub first_frame_ms: Option<f64>,
    /// The stream's name (SDP `s=`).
    pub title: Option<String>,
    /// Video: capture time (sender's wall clock via RTCP SR) to ready-to-show, ms.
    pub latency_ms: Percentiles,
    /// Audio: capture time to the moment it is due at the output (handed over
    /// [`AUDIO_LEAD_MS`] earlier), ms. The device's own buffer comes on top.
    pub audio_latency_ms: Percentiles,
    /// Video flash shown minus audio beep heard, ms (median over the flashes matched; positive
    /// means video late). Measured on livecast-server's test card.
    pub av_offset_ms: Option<f64>,
    pub av_pairs: usize,
    pub recorded_s: f64,
    pub recording: Option<String>,
    pub captions: Vec<CaptionReport>,
    pub caption_blocks: Vec<CaptionBlockReport>,
    pub chat: Vec<ChatReport>,
    pub reconnects: u64,
    /// The rendition received at the end (`WxH`), where the stream lists renditions.
    pub rendition: Option<String>,
    /// Moves from one rendition to another.
    pub rendition_switches: u64,
    pub final_state: String,
}

/// How far ahead of its time audio is handed to the output, ms.
pub const AUDIO_LEAD_MS: i64 = 20;

/// Pairs video flashes with audio beeps on the timeline and returns the median presentation
/// offset (video − audio) in ms, and how many pairs there were. Each event is (timeline µs,
/// presentation time µs on one local clock).
pub fn av_offset(video: &[(i64, i64)], audio: &[(i64, i64)]) -> (Option<f64>, usize) {
    let mut beeps = audio.to_vec();
    beeps.sort_by_key(|&(ta, _)| ta);
    let mut offs = Vec::new();
    for &(tv, pv) in video {
        // The beep whose timeline time is nearest the flash's, within half a second: the
        // last one before it or the first one after.
        let i = beeps.partition_point(|&(ta, _)| ta < tv);
        let nearest = [i.checked_sub(1), Some(i)]
            .into_iter()
            .flatten()
            .filter_map(|j| beeps.get(j))
            .filter(|(ta, _)| (ta - tv).abs() < 500_000)
            .min_by_key(|(ta, _)| (ta - tv).abs());
        if let Some(&(_, pa)) = nearest {
            offs.push((pv - pa) as f64 / 1000.0);
        }
    }
    (Percentiles::of(&offs).p50, offs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let p = Percentiles::of(&[5.0, 1.0, 3.0, 2.0, 4.0, f64::NAN]);
        assert_eq!(p.p50, Some(3.0));
        assert_eq!(p.p95, Some(5.0));
        assert_eq!(p.samples, 5);
        assert_eq!(Percentiles::of(&[]).p50, None);
    }

    #[test]
    fn av_offset_pairs_nearest_events() {
        // Flashes at 1 s and 2 s shown 10 ms after the beeps were heard; a stray beep far off.
        let video = [(1_000_000, 5_010_000), (2_000_000, 6_010_000)];
        let audio = [
            (1_000_500, 5_000_000),
            (2_000_000, 6_000_000),
            (9_000_000, 1),
        ];
        let (off, n) = av_offset(&video, &audio);
        assert_eq!(n, 2);
        assert_eq!(off, Some(10.0));
        assert_eq!(av_offset(&video, &[]), (None, 0));
        // Heard out of timeline order (after a seek back): the same pairs.
        let shuffled = [audio[2], audio[1], audio[0]];
        assert_eq!(av_offset(&video, &shuffled), (Some(10.0), 2));
    }
}
