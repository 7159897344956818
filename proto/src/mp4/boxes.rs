//! The boxes, byte by byte (ISO/IEC 14496-12 section numbers in the comments).

use super::TrackConfig;

/// Brands: `iso6` (the major: `tfdt` v1 and `default-base-is-moof` are ISO 6 features that
/// Chromium's MSE and ffmpeg expect from fragmented files), `iso5`, `isom`, `avc1`, `mp41`.
const BRANDS: [&[u8; 4]; 5] = [b"iso6", b"iso5", b"isom", b"avc1", b"mp41"];

/// `sample_flags` (§8.8.3.1): sample_depends_on = 2 (an I-frame, audio, text).
pub(super) const FLAGS_SYNC: u32 = 0x0200_0000;
/// sample_depends_on = 1, sample_is_non_sync_sample = 1.
pub(super) const FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// Unity matrix of `mvhd` and `tkhd` (§8.2.2.3).
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// A box under construction: `open` writes a size placeholder, `close` fills it in.
struct W {
    buf: Vec<u8>,
    open: Vec<usize>,
}

impl W {
    fn new() -> Self {
        Self {
            buf: Vec::with_capacity(1024),
            open: Vec::new(),
        }
    }
    fn open(&mut self, kind: &[u8; 4]) {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(kind);
    }
    /// A full box (§4.2): version and 24-bit flags after the type.
    fn open_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) {
        self.open(kind);
        self.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
    }
    fn close(&mut self) {
        let start = self.open.pop().expect("close matches an open in this file");
        let size = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
    }
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
}

pub(super) fn init_segment(tracks: &[&TrackConfig]) -> Vec<u8> {
    let mut w = W::new();
    // ftyp (§4.3)
    w.open(b"ftyp");
    w.bytes(BRANDS[0]);
    w.u32(0);
    for b in BRANDS {
        w.bytes(b);
    }
    w.close();
    w.open(b"moov");
    // mvhd (§8.2.2): times 0, timescale 1000, duration 0 (fragmented: unknown).
    w.open_full(b"mvhd", 0, 0);
    w.u32(0);
    w.u32(0);
    w.u32(1000);
    w.u32(0);
    w.u32(0x0001_0000); // rate 1.0
    w.u16(0x0100); // volume 1.0
    w.zeros(10);
    for m in MATRIX {
        w.u32(m);
    }
    w.zeros(24); // pre_defined
    w.u32(tracks.len() as u32 + 1); // next_track_ID
    w.close();
    for (i, t) in tracks.iter().enumerate() {
        trak(&mut w, i as u32 + 1, t);
    }
    // mvex (§8.8.1): announces fragments; trex (§8.8.3) defaults, all overridden in trun.
    w.open(b"mvex");
    for i in 0..tracks.len() {
        w.open_full(b"trex", 0, 0);
        w.u32(i as u32 + 1);
        w.u32(1); // default_sample_description_index
        w.u32(0);
        w.u32(0);
        w.u32(0);
        w.close();
    }
    w.close();
    w.close();
    w.buf
}

fn trak(w: &mut W, id: u32, t: &TrackConfig) {
    let (width, height) = match t {
        TrackConfig::H264 { width, height, .. } => (*width, *height),
        _ => (0, 0),
    };
    w.open(b"trak");
    // tkhd (§8.3.2): enabled | in_movie.
    w.open_full(b"tkhd", 0, 3);
    w.u32(0);
    w.u32(0);
    w.u32(id);
    w.u32(0);
    w.u32(0); // duration
    w.zeros(8);
    w.u16(0); // layer
    w.u16(0); // alternate_group
    w.u16(if matches!(t, TrackConfig::Opus { .. }) {
        0x0100
    } else {
        0
    });
    w.u16(0);
    for m in MATRIX {
        w.u32(m);
    }
    w.u32(u32::from(width) << 16);
    w.u32(u32::from(height) << 16);
    w.close();
    w.open(b"mdia");
    // mdhd (§8.4.2): language "und".
    w.open_full(b"mdhd", 0, 0);
    w.u32(0);
    w.u32(0);
    w.u32(t.timescale());
    w.u32(0);
    w.u16(0x55c4);
    w.u16(0);
    w.close();
    // hdlr (§8.4.3)
    let (handler, name): (&[u8; 4], &[u8]) = match t {
        TrackConfig::H264 { .. } => (b"vide", b"Livecast video\0"),
        TrackConfig::Opus { .. } => (b"soun", b"Livecast audio\0"),
        TrackConfig::Text => (b"text", b"Livecast captions\0"),
    };
    w.open_full(b"hdlr", 0, 0);
    w.u32(0);
    w.bytes(handler);
    w.zeros(12);
    w.bytes(name);
    w.close();
    w.open(b"minf");
    match t {
        // vmhd (§12.1.2), smhd (§12.2.2), nmhd (§8.4.5.2)
        TrackConfig::H264 { .. } => {
            w.open_full(b"vmhd", 0, 1);
            w.zeros(8);
        }
        TrackConfig::Opus { .. } => {
            w.open_full(b"smhd", 0, 0);
            w.zeros(4);
        }
        TrackConfig::Text => w.open_full(b"nmhd", 0, 0),
    }
    w.close();
    // dinf/dref (§8.7.1, §8.7.2): the media are in this file.
    w.open(b"dinf");
    w.open_full(b"dref", 0, 0);
    w.u32(1);
    w.open_full(b"url ", 0, 1);
    w.close();
    w.close();
    w.close();
    w.open(b"stbl");
    w.open_full(b"stsd", 0, 0);
    w.u32(1);
    sample_entry(w, t);
    w.close();
    // Empty sample tables: every sample is in a fragment.
    for kind in [b"stts", b"stsc", b"stco"] {
        w.open_full(kind, 0, 0);
        w.u32(0);
        w.close();
    }
    w.open_full(b"stsz", 0, 0);
    w.u32(0);
    w.u32(0);
    w.close();
    w.close(); // stbl
    w.close(); // minf
    w.close(); // mdia
    w.close(); // trak
}

fn sample_entry(w: &mut W, t: &TrackConfig) {
    match t {
        TrackConfig::H264 {
            width,
            height,
            sps,
            pps,
        } => {
            // VisualSampleEntry (§12.1.3) 'avc1'
            w.open(b"avc1");
            w.zeros(6);
            w.u16(1); // data_reference_index
            w.zeros(16);
            w.u16(*width);
            w.u16(*height);
            w.u32(0x0048_0000); // 72 dpi
            w.u32(0x0048_0000);
            w.u32(0);
            w.u16(1); // frame_count
            w.zeros(32); // compressorname
            w.u16(0x0018); // depth
            w.u16(0xffff); // pre_defined = -1
                           // AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1)
            w.open(b"avcC");
            w.u8(1);
            w.u8(sps.get(1).copied().unwrap_or(66));
            w.u8(sps.get(2).copied().unwrap_or(0));
            w.u8(sps.get(3).copied().unwrap_or(31));
            w.u8(0xff); // lengthSizeMinusOne = 3
            w.u8(0xe1); // one SPS
            w.u16(sps.len() as u16);
            w.bytes(sps);
            w.u8(1); // one PPS
            w.u16(pps.len() as u16);
            w.bytes(pps);
            w.close();
            w.close();
        }
        TrackConfig::Opus { channels, pre_skip } => {
            // AudioSampleEntry (§12.2.3) 'Opus'
            w.open(b"Opus");
            w.zeros(6);
            w.u16(1);
            w.zeros(8);
            w.u16(u16::from(*channels));
            w.u16(16); // samplesize
            w.u32(0);
            w.u32(48_000 << 16);
            // OpusSpecificBox (Opus in ISOBMFF §4.3.2)
            w.open(b"dOps");
            w.u8(0); // Version
            w.u8(*channels);
            w.u16(*pre_skip);
            w.u32(48_000); // InputSampleRate
            w.u16(0); // OutputGain
            w.u8(0); // ChannelMappingFamily
            w.close();
            w.close();
        }
        TrackConfig::Text => {
            // TextSampleEntry (3GPP TS 26.245 §5.16) 'tx3g'
            w.open(b"tx3g");
            w.zeros(6);
            w.u16(1);
            w.u32(0); // displayFlags
            w.u8(1); // horizontal-justification: centre
            w.u8(0xff); // vertical-justification: bottom (-1)
            w.u32(0); // background-color-rgba
            w.zeros(8); // BoxRecord
                        // StyleRecord: chars 0..0, font 1, plain, 18 px, white
            w.u16(0);
            w.u16(0);
            w.u16(1);
            w.u8(0);
            w.u8(18);
            w.u32(0xffff_ffff);
            w.open(b"ftab");
            w.u16(1);
            w.u16(1);
            w.u8(10);
            w.bytes(b"Sans-Serif");
            w.close();
            w.close();
        }
    }
}

/// One track's samples in a fragment: (duration, sync, data) each.
pub(super) struct Traf {
    pub track_id: u32,
    pub base_time: u64,
    /// (duration, sync, composition time offset, data) per sample.
    pub samples: Vec<(u32, bool, i32, Vec<u8>)>,
}

/// `moof` + `mdat` (§8.8.4, §8.1.1).
pub(super) fn fragment(sequence: u32, trafs: &[Traf]) -> Vec<u8> {
    let mut w = W::new();
    w.open(b"moof");
    w.open_full(b"mfhd", 0, 0);
    w.u32(sequence);
    w.close();
    // Each trun's data_offset is patched once the moof's size is known.
    let mut offset_at = Vec::new();
    for t in trafs {
        w.open(b"traf");
        // tfhd (§8.8.7): default-base-is-moof.
        w.open_full(b"tfhd", 0, 0x02_0000);
        w.u32(t.track_id);
        w.close();
        // tfdt (§8.8.12) version 1.
        w.open_full(b"tfdt", 1, 0);
        w.u64(t.base_time);
        w.close();
        // trun (§8.8.8): data-offset, sample duration, size and flags; with B-frames also
        // each sample's composition time offset (version 1: signed).
        let offsets = t.samples.iter().any(|s| s.2 != 0);
        let (version, flags) = if offsets {
            (1, 0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800)
        } else {
            (0, 0x0001 | 0x0100 | 0x0200 | 0x0400)
        };
        w.open_full(b"trun", version, flags);
        w.u32(t.samples.len() as u32);
        offset_at.push(w.buf.len());
        w.u32(0);
        for (duration, sync, offset, data) in &t.samples {
            w.u32(*duration);
            w.u32(data.len() as u32);
            w.u32(if *sync { FLAGS_SYNC } else { FLAGS_NON_SYNC });
            if offsets {
                w.u32(*offset as u32);
            }
        }
        w.close();
        w.close();
    }
    w.close();
    let moof_len = w.buf.len();
    let mut data_offset = moof_len + 8;
    for (t, at) in trafs.iter().zip(offset_at) {
        w.buf[at..at + 4].copy_from_slice(&(data_offset as u32).to_be_bytes());
        data_offset += t.samples.iter().map(|s| s.3.len()).sum::<usize>();
    }
    w.open(b"mdat");
    for t in trafs {
        for (_, _, _, data) in &t.samples {
            w.bytes(data);
        }
    }
    w.close();
    w.buf
}

/// A `tx3g` sample: text length and UTF-8 text (3GPP TS 26.245 §5.17), at most 65535 bytes.
pub(super) fn text_sample(text: &str) -> Vec<u8> {
    let mut end = text.len().min(usize::from(u16::MAX));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(2 + end);
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&text.as_bytes()[..end]);
    out
}

/// An Annex B access unit (start codes) as MP4 samples want it: each NAL unit preceded by its
/// 4-byte big-endian length (the `avcC` says 4). Access unit delimiters are left out.
pub fn annexb_to_avcc(annexb: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(annexb.len() + 16);
    for nal in crate::codec::h264::split_annexb(annexb) {
        if nal.is_empty() || crate::codec::h264::nal_type(nal) == 9 {
            continue;
        }
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}
