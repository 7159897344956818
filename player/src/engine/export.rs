//! A recording (or part of one) to fragmented MP4 + WebVTT, without re-encoding: the recorded
//! H.264 access units and Opus packets go into the file as they are, the captions as a `tx3g`
//! track and as cues in a `.vtt` beside it. The same writer as the server's `--record`
//! ([`livecast_proto::mp4`]).
//!
//! The file starts at the video keyframe at or before `from` (decoding has to start at one),
//! and ends at the last unit before `to`. Damaged video (a unit with lost packets) is left out
//! up to the next keyframe.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use livecast_proto::codec::h264;
use livecast_proto::mp4::{self, Mp4Writer, TrackConfig};

use super::captions;
use super::recording::{Index, RecordingReader};
use super::unit::MediaKind;

/// What an export wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportSummary {
    pub mp4: PathBuf,
    pub vtt: PathBuf,
    /// Where the file starts, µs after the recording's start (the keyframe at or before
    /// `from`).
    pub start_us: i64,
    /// Length of the longest track written, µs.
    pub duration_us: i64,
    pub video_frames: usize,
    pub audio_packets: usize,
    pub cues: usize,
}

/// The `.vtt` path beside `mp4`.
pub fn vtt_path(mp4: &Path) -> PathBuf {
    mp4.with_extension("vtt")
}

/// Exports the recording file `recording` from `from_us` to `to_us` (µs after its start; the
/// whole of it by default) to `out` and its `.vtt`.
pub fn export_file(
    recording: &Path,
    out: &Path,
    from_us: Option<i64>,
    to_us: Option<i64>,
) -> anyhow::Result<ExportSummary> {
    let (mut reader, index) = RecordingReader::open(recording)
        .with_context(|| format!("opening the recording {}", recording.display()))?;
    export(&mut reader, &index, out, from_us, to_us)
}

/// [`export_file`] from an open recording and its index (the player's current session).
pub fn export(
    reader: &mut RecordingReader,
    index: &Index,
    out: &Path,
    from_us: Option<i64>,
    to_us: Option<i64>,
) -> anyhow::Result<ExportSummary> {
    let Some(origin) = index.start_us() else {
        bail!("the recording is empty");
    };
    let end = index.end_us().unwrap_or(origin) + 1;
    let from = origin + from_us.unwrap_or(0).max(0);
    let to = to_us.map_or(end, |t| (origin + t).min(end));
    if to <= from {
        bail!("nothing to export: --to is not after --from");
    }
    let video = index.find_track(MediaKind::Video);
    let audio = index.find_track(MediaKind::Audio);
    let text = index.find_track(MediaKind::Captions);

    // The start: the video keyframe at or before `from`.
    let (start, first_video) = match video {
        Some(v) => {
            let i = index
                .keyframe_at_or_before(v, from)
                .or_else(|| index.keyframe_at_or_after(v, from))
                .context("the recording has no video keyframe to start from")?;
            (index.entries(v)[i].time_us, Some(i))
        }
        None => (from, None),
    };
    if start >= to {
        bail!("no video keyframe before the end of the range");
    }

    let mut configs = Vec::new();
    let mut vout = None;
    let mut aout = None;
    let mut tout = None;
    if let (Some(v), Some(i)) = (video, first_video) {
        let unit = reader.read(&index.entries(v)[i])?;
        let (mut sps, mut pps) = (None, None);
        for nal in h264::split_annexb(&unit.data) {
            match h264::nal_type(nal) {
                7 => sps = Some(nal.to_vec()),
                8 => pps = Some(nal.to_vec()),
                _ => {}
            }
        }
        if sps.is_none() || pps.is_none() {
            let (s, p) = index
                .track(v)
                .map(|t| h264::sprop_sps_pps(&t.fmtp))
                .unwrap_or_default();
            sps = sps.or(s);
            pps = pps.or(p);
        }
        let (Some(sps), Some(pps)) = (sps, pps) else {
            bail!("no H.264 parameter sets (SPS/PPS) in the recording");
        };
        let info = h264::parse_sps(&sps).map_err(|e| anyhow::anyhow!("H.264 SPS: {e:?}"))?;
        configs.push(TrackConfig::H264 {
            width: info.width as u16,
            height: info.height as u16,
            sps,
            pps,
        });
        vout = Some(configs.len() - 1);
    }
    if audio.is_some_and(|a| {
        index
            .track(a)
            .is_some_and(|t| t.codec == livecast_proto::codec::Codec::Opus)
    }) {
        configs.push(TrackConfig::Opus {
            channels: 2,
            pre_skip: 312,
        });
        aout = Some(configs.len() - 1);
    }
    if text.is_some() {
        configs.push(TrackConfig::Text);
        tout = Some(configs.len() - 1);
    }
    if configs.is_empty() {
        bail!("the recording has neither H.264 video nor Opus audio");
    }

    let vtt = vtt_path(out);
    let mut file =
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut writer = Mp4Writer::new(configs);
    let put = |file: &mut std::fs::File, bytes: &[u8]| {
        file.write_all(bytes)
            .with_context(|| format!("writing {}", out.display()))
    };
    put(&mut file, &writer.init_segment())?;

    // Units of video and audio in time order, so fragments hold both.
    let mut units: Vec<(i64, usize, usize)> = Vec::new();
    for (track, out_track, first) in [
        (video, vout, first_video),
        (
            audio,
            aout,
            audio.and_then(|a| index.first_at_or_after(a, start)),
        ),
    ] {
        let (Some(track), Some(ot), Some(first)) = (track, out_track, first) else {
            continue;
        };
        // The index's times rise (made monotonic when recorded), so video keeps its decode
        // order; a unit's own capture time is its presentation time (B-frames).
        for (i, e) in index.entries(track).iter().enumerate().skip(first) {
            if e.time_us >= to {
                break;
            }
            units.push((e.time_us, ot, i));
        }
    }
    units.sort_by_key(|u| (u.0, u.1));
    // Decode times and composition offsets for the video (B-frames), from presentation times.
    let mut reorder: mp4::Reorder<(bool, Vec<u8>)> = mp4::Reorder::default();
    let (mut frames, mut packets, mut broken, mut last_end) = (0, 0, false, start);
    for (_, ot, i) in units {
        let (track, ts) = if Some(ot) == vout {
            (video.expect("vout implies video"), 90_000)
        } else {
            (audio.expect("aout implies audio"), 48_000)
        };
        let e = index.entries(track)[i];
        let unit = reader.read(&e)?;
        // Presentation time: the unit's capture time (the index's is made monotonic); never
        // before the keyframe the export starts at.
        let t = if Some(ot) == vout {
            unit.capture_us.max(start)
        } else {
            e.time_us
        };
        let time = ((t - start) * ts / 1_000_000) as u64;
        let fragment = if Some(ot) == vout {
            if e.keyframe() && !e.damaged() {
                broken = false;
            }
            if broken || e.damaged() {
                broken = true;
                continue;
            }
            frames += 1;
            reorder
                .push(time, (e.keyframe(), mp4::annexb_to_avcc(&unit.data)))
                .into_iter()
                .map(|(dts, off, (kf, data))| writer.push_offset(ot, dts, off, kf, data))
                .collect()
        } else {
            packets += 1;
            vec![writer.push(ot, time, true, unit.data)]
        };
        last_end = last_end.max(t);
        for f in fragment {
            match f {
                Ok(Some(f)) => put(&mut file, &f)?,
                Ok(None) => {}
                Err(e) => tracing::warn!("export: {e}"),
            }
        }
    }
    if let Some(ot) = vout {
        while let Some((dts, off, (kf, data))) = reorder.pop() {
            match writer.push_offset(ot, dts, off, kf, data) {
                Ok(Some(f)) => put(&mut file, &f)?,
                Ok(None) => {}
                Err(e) => tracing::warn!("export: {e}"),
            }
        }
    }

    // Captions: every cue that overlaps the range, clipped to it.
    let mut vtt_text = String::from(mp4::WEBVTT_HEADER);
    let mut cue_count = 0;
    if let (Some(tt), Some(ot)) = (text, tout) {
        let mut blocks = Vec::new();
        for e in index.entries(tt) {
            if e.time_us >= to {
                break;
            }
            let u = reader.read(e)?;
            blocks.push((e.time_us, String::from_utf8_lossy(&u.data).into_owned()));
        }
        for c in captions::cues(&blocks) {
            let (s, e) = (c.start_us.max(start), c.end_us.min(to));
            if e <= s {
                continue;
            }
            let (s_ms, e_ms) = (((s - start) / 1000) as u64, ((e - start) / 1000) as u64);
            if e_ms <= s_ms {
                continue;
            }
            let _ = writer.push_text(ot, s_ms, (e_ms - s_ms) as u32, &c.text);
            vtt_text.push_str(&mp4::webvtt_cue(s_ms, e_ms, &c.text));
            cue_count += 1;
        }
    }
    if let Some(f) = writer.finish() {
        put(&mut file, &f)?;
    }
    std::fs::write(&vtt, vtt_text).with_context(|| format!("writing {}", vtt.display()))?;
    let duration_us = [vout, aout]
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let ts = if Some(t) == vout { 90_000 } else { 48_000 };
            writer.track_end(t).map(|e| e as i64 * 1_000_000 / ts)
        })
        .max()
        .unwrap_or(last_end - start);
    Ok(ExportSummary {
        mp4: out.to_path_buf(),
        vtt,
        start_us: start - origin,
        duration_us,
        video_frames: frames,
        audio_packets: packets,
        cues: cue_count,
    })
}

/// `MM:SS`, `HH:MM:SS` or seconds (fractions allowed) as µs.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let bad = || format!("'{s}' is not a time like 10:00, 1:02:03 or 75.5");
    let mut us: f64 = 0.0;
    for part in s.trim().split(':') {
        let v: f64 = part.trim().parse().map_err(|_| bad())?;
        if v.is_nan() || v < 0.0 {
            return Err(bad());
        }
        us = us * 60.0 + v;
    }
    if s.trim().split(':').count() > 3 {
        return Err(bad());
    }
    Ok((us * 1_000_000.0).round() as i64)
}

pub use livecast_proto::mp4::utc_stamp;

/// `H:MM:SS.mmm` of µs, for messages.
pub fn format_time(us: i64) -> String {
    let ms = us.max(0) / 1000;
    format!(
        "{}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("10:00"), Ok(600_000_000));
        assert_eq!(parse_time("25:30"), Ok(1_530_000_000));
        assert_eq!(parse_time("1:02:03.5"), Ok(3_723_500_000));
        assert_eq!(parse_time("75.25"), Ok(75_250_000));
        assert!(parse_time("ten").is_err());
        assert!(parse_time("-3").is_err());
        assert!(parse_time("1:2:3:4").is_err());
        assert_eq!(format_time(3_723_500_000), "1:02:03.500");
    }
}
