//! Opus encoding with libopus (bundled, built with cmake).
//!
//! 48 kHz stereo, one 20 ms frame per packet, VBR at the given bitrate.
//!
//! Application: [`Application::Audio`], not `LowDelay`. `LowDelay` only saves about 4 ms of
//! encoder look-ahead, which is lost in any jitter buffer, and it forces the CELT-only mode,
//! where in-band FEC does not exist (LBRR is a SILK feature) and speech quality at low
//! bitrates is worse. `Audio` lets the encoder pick SILK/hybrid for speech and CELT for music.
//!
//! In-band FEC is on with a 5 % expected-loss hint (without a non-zero hint libopus encodes no
//! FEC data): a receiver that lost packet *n* can recover a lower-quality copy from *n + 1*.

use anyhow::Context as _;
use opus::{Application, Bitrate, Channels, Encoder};

use crate::source::{AudioFrame, AUDIO_CHANNELS, AUDIO_FRAME_SAMPLES, AUDIO_RATE};

/// Expected packet loss hint given to the encoder, in percent.
pub const EXPECTED_LOSS_PERCENT: i32 = 5;
/// Largest packet we accept from the encoder (a 20 ms Opus frame is at most 1275 bytes).
const MAX_PACKET: usize = 1500;

/// A 48 kHz stereo Opus encoder.
pub struct OpusEncoder {
    encoder: Encoder,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// Creates an encoder at `bitrate_bps` (64 000 is a good default for stereo).
    ///
    /// # Errors
    /// A bitrate outside 6 kbit/s..=510 kbit/s, or libopus refusing a setting.
    pub fn new(bitrate_bps: i32) -> anyhow::Result<Self> {
        if !(6_000..=510_000).contains(&bitrate_bps) {
            anyhow::bail!("Opus bitrate {bitrate_bps} bit/s out of range (6 kbit/s to 510 kbit/s)");
        }
        let mut encoder = Encoder::new(AUDIO_RATE, Channels::Stereo, Application::Audio)
            .context("cannot create the Opus encoder")?;
        encoder
            .set_bitrate(Bitrate::Bits(bitrate_bps))
            .context("Opus bitrate")?;
        encoder.set_vbr(true).context("Opus VBR")?;
        encoder.set_inband_fec(true).context("Opus in-band FEC")?;
        encoder
            .set_packet_loss_perc(EXPECTED_LOSS_PERCENT)
            .context("Opus expected loss")?;
        Ok(Self { encoder })
    }

    /// Encoder look-ahead in 48 kHz samples: how much later the decoded sound comes out.
    ///
    /// # Errors
    /// libopus failing the query.
    pub fn lookahead(&mut self) -> anyhow::Result<u32> {
        let n = self.encoder.get_lookahead().context("Opus look-ahead")?;
        u32::try_from(n).context("negative look-ahead")
    }

    /// Encodes one 20 ms frame into one Opus packet (RFC 7587 RTP payload).
    ///
    /// # Errors
    /// A frame that is not 960 stereo sample frames, or an encoder failure.
    pub fn encode(&mut self, frame: &AudioFrame) -> anyhow::Result<Vec<u8>> {
        let want = AUDIO_FRAME_SAMPLES * AUDIO_CHANNELS;
        if frame.samples.len() != want {
            anyhow::bail!(
                "audio frame has {} samples, expected {want} (20 ms of 48 kHz stereo)",
                frame.samples.len()
            );
        }
        self.encoder
            .encode_vec(&frame.samples, MAX_PACKET)
            .context("Opus encoding failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tone;
    use std::time::UNIX_EPOCH;

    fn energy(x: &[i16]) -> f64 {
        x.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / x.len().max(1) as f64
    }

    #[test]
    fn the_beep_survives_a_round_trip() {
        let mut enc = OpusEncoder::new(64_000).unwrap();
        let lookahead = enc.lookahead().unwrap() as usize;
        assert!(lookahead < 480, "{lookahead}");
        let mut dec = opus::Decoder::new(48_000, Channels::Stereo).unwrap();
        let mut left = Vec::new();
        for n in 0..50 {
            let frame = AudioFrame {
                samples: tone::chunk(n),
                capture: UNIX_EPOCH,
            };
            let packet = enc.encode(&frame).unwrap();
            assert!(!packet.is_empty() && packet.len() <= 1275);
            let mut pcm = vec![0i16; 960 * 2];
            assert_eq!(dec.decode(&packet, &mut pcm, false).unwrap(), 960);
            left.extend(pcm.iter().step_by(2));
        }
        assert_eq!(left.len(), 48_000);
        // Shifted by the encoder's look-ahead, the beep is the first 50 ms.
        let beep = &left[lookahead..lookahead + 2400];
        let after = &left[lookahead + 2400 + 480..];
        assert!(energy(beep) > 1e7, "beep energy {}", energy(beep));
        assert!(
            energy(after) < energy(beep) / 1e4,
            "after: {} vs {}",
            energy(after),
            energy(beep)
        );
        // Still 1 kHz: ~100 zero crossings in 50 ms.
        let crossings = beep.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((95..=105).contains(&crossings), "{crossings}");
    }

    #[test]
    fn wrong_sized_frames_and_bitrates_are_errors() {
        let mut enc = OpusEncoder::new(64_000).unwrap();
        let frame = AudioFrame {
            samples: vec![0; 960],
            capture: UNIX_EPOCH,
        };
        let msg = enc.encode(&frame).unwrap_err().to_string();
        assert!(msg.contains("expected 1920"), "{msg}");
        assert!(OpusEncoder::new(1).is_err());
        assert!(OpusEncoder::new(1_000_000).is_err());
    }

    #[test]
    fn fec_is_on() {
        let mut enc = OpusEncoder::new(32_000).unwrap();
        assert!(enc.encoder.get_inband_fec().unwrap());
        assert_eq!(
            enc.encoder.get_packet_loss_perc().unwrap(),
            EXPECTED_LOSS_PERCENT
        );
    }
}
