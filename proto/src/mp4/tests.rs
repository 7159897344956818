use super::boxes::{FLAGS_NON_SYNC, FLAGS_SYNC};
use super::*;

/// Top-level boxes of `buf`: (type, body).
fn boxes(buf: &[u8]) -> Vec<(String, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= buf.len() {
        let size = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        assert!(
            size >= 8 && at + size <= buf.len(),
            "box at {at}: size {size}"
        );
        let kind = String::from_utf8_lossy(&buf[at + 4..at + 8]).into_owned();
        out.push((kind, &buf[at + 8..at + size]));
        at += size;
    }
    assert_eq!(at, buf.len(), "trailing bytes");
    out
}

/// The body of the box at `path` (`"moov/trak"`, first match at each level); `skip` bytes of
/// header fields are skipped in container boxes with fields before their children.
fn find<'a>(buf: &'a [u8], path: &str) -> &'a [u8] {
    let mut cur = buf;
    for part in path.split('/') {
        let (name, skip) = match part.split_once('+') {
            Some((n, s)) => (n, s.parse().unwrap()),
            None => (part, 0),
        };
        cur = boxes(cur)
            .into_iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("no {name} in {path}"))
            .1;
        cur = &cur[skip..];
    }
    cur
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

const SPS: [u8; 4] = [0x67, 0x42, 0xc0, 0x1f];
const PPS: [u8; 3] = [0x68, 0xce, 0x3c];

fn writer() -> Mp4Writer {
    Mp4Writer::new(vec![
        TrackConfig::H264 {
            width: 640,
            height: 360,
            sps: SPS.to_vec(),
            pps: PPS.to_vec(),
        },
        TrackConfig::Opus {
            channels: 2,
            pre_skip: 312,
        },
        TrackConfig::Text,
    ])
}

#[test]
fn init_segment_layout() {
    let init = writer().init_segment();
    let top: Vec<String> = boxes(&init).into_iter().map(|b| b.0).collect();
    assert_eq!(top, ["ftyp", "moov"]);
    assert_eq!(find(&init, "ftyp"), b"iso6\0\0\0\0iso6iso5isomavc1mp41");
    let moov: Vec<String> = boxes(find(&init, "moov"))
        .into_iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(moov, ["mvhd", "trak", "trak", "trak", "mvex"]);
    let trex: Vec<_> = boxes(find(&init, "moov/mvex"));
    assert_eq!(trex.len(), 3);
    assert_eq!(be32(trex[2].1, 4), 3, "third trex is track 3");
    // avc1 in the first track: 640x360, avcC from the SPS/PPS.
    let stsd = find(&init, "moov/trak/mdia/minf/stbl/stsd+8");
    let avc1 = find(stsd, "avc1");
    assert_eq!(&avc1[24..28], &[0x02, 0x80, 0x01, 0x68]);
    let avcc = find(&avc1[78..], "avcC");
    assert_eq!(
        avcc,
        [
            1, 0x42, 0xc0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x42, 0xc0, 0x1f, 1, 0, 3, 0x68, 0xce,
            0x3c
        ]
    );
    // Opus with dOps in the second.
    let moov = find(&init, "moov");
    let traks: Vec<_> = boxes(moov).into_iter().filter(|b| b.0 == "trak").collect();
    let stsd = find(traks[1].1, "mdia/minf/stbl/stsd+8");
    let opus = find(stsd, "Opus");
    assert_eq!(u16::from_be_bytes([opus[16], opus[17]]), 2, "channelcount");
    assert_eq!(
        find(&opus[28..], "dOps"),
        [0, 2, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]
    );
    assert_eq!(&find(traks[1].1, "mdia/hdlr")[8..12], b"soun");
    assert_eq!(be32(find(traks[1].1, "mdia/mdhd"), 12), 48_000);
    // tx3g text in the third.
    let stsd = find(traks[2].1, "mdia/minf/stbl/stsd+8");
    assert_eq!(boxes(stsd)[0].0, "tx3g");
    assert_eq!(&find(traks[2].1, "mdia/hdlr")[8..12], b"text");
    assert_eq!(be32(find(traks[2].1, "mdia/mdhd"), 12), 1000);
}

/// (track id, tfdt, [(duration, size, flags)], data offset) of each traf of a fragment.
type Run = (u32, u64, Vec<(u32, u32, u32)>, u32);

fn runs(frag: &[u8]) -> Vec<Run> {
    let top = boxes(frag);
    assert_eq!(top.len(), 2);
    assert_eq!((top[0].0.as_str(), top[1].0.as_str()), ("moof", "mdat"));
    let mut out = Vec::new();
    for (k, traf) in boxes(top[0].1) {
        if k != "traf" {
            assert_eq!(k, "mfhd");
            continue;
        }
        let tfhd = find(traf, "tfhd");
        assert_eq!(be32(tfhd, 0), 0x0002_0000, "default-base-is-moof only");
        let tfdt = find(traf, "tfdt");
        assert_eq!(tfdt[0], 1, "tfdt version 1");
        let trun = find(traf, "trun");
        assert_eq!(be32(trun, 0), 0x0701);
        let n = be32(trun, 4) as usize;
        let samples = (0..n)
            .map(|i| {
                let at = 12 + 12 * i;
                (be32(trun, at), be32(trun, at + 4), be32(trun, at + 8))
            })
            .collect();
        out.push((
            be32(tfhd, 4),
            u64::from_be_bytes(tfdt[4..12].try_into().unwrap()),
            samples,
            be32(trun, 8),
        ));
    }
    out
}

#[test]
fn fragments_start_at_keyframes_after_a_second() {
    let mut w = writer();
    let mut frags = Vec::new();
    // 2.5 s of 10 fps video with a keyframe every 0.5 s, 20 ms audio.
    let mut events: Vec<(u64, usize)> = (0..25).map(|i| (i * 100, 0)).collect();
    events.extend((0..125).map(|i| (i * 20, 1)));
    events.sort();
    for (ms, track) in events {
        let (time, sync, data) = if track == 0 {
            let key = ms % 500 == 0;
            (ms * 90, key, vec![if key { 5 } else { 1 }; 10])
        } else {
            (ms * 48, true, vec![0xfc; 3])
        };
        if let Some(f) = w.push(track, time, sync, data).unwrap() {
            frags.push((ms, f));
        }
    }
    w.push_text(2, 300, 1200, "hello").unwrap();
    frags.push((9999, w.finish().unwrap()));
    let cut_at: Vec<u64> = frags.iter().map(|f| f.0).collect();
    // Cut at the keyframes at 1.0 s and 2.0 s (audio at the same ms comes after video here).
    assert_eq!(cut_at, [1000, 2000, 9999]);
    let first = runs(&frags[0].1);
    assert_eq!(first.len(), 2, "video and audio");
    let (id, base, samples, offset) = &first[0];
    assert_eq!((*id, *base), (1, 0));
    assert_eq!(samples.len(), 10);
    assert_eq!(samples[0], (9000, 10, FLAGS_SYNC));
    assert_eq!(samples[1], (9000, 10, FLAGS_NON_SYNC));
    assert_eq!(samples[5], (9000, 10, FLAGS_SYNC));
    let moof_len = be32(&frags[0].1, 0);
    assert_eq!(*offset, moof_len + 8, "video data first in mdat");
    let (id, base, samples, offset) = &first[1];
    assert_eq!((*id, *base), (2, 0));
    assert_eq!(
        samples.len(),
        49,
        "audio up to 980 ms (the 1000 ms one was held)"
    );
    assert_eq!(samples[0], (960, 3, FLAGS_SYNC));
    assert_eq!(*offset, moof_len + 8 + 100);
    // Data bytes where trun says.
    let f = &frags[0].1;
    assert_eq!(&f[*offset as usize..*offset as usize + 3], [0xfc; 3]);
    assert_eq!(f[moof_len as usize + 8], 5);
    let second = runs(&frags[1].1);
    assert_eq!(second[0].1, 90_000, "video tfdt continues");
    assert_eq!(second[1].1, 49 * 960);
    let last = runs(&frags[2].1);
    assert_eq!(last.len(), 3);
    let (id, base, samples, _) = &last[0];
    assert_eq!((*id, *base), (1, 180_000));
    assert_eq!(
        samples.len(),
        5,
        "2.0 .. 2.4 s, the last one with the previous duration"
    );
    assert_eq!(samples[4].0, 9000);
    let (id, base, samples, _) = &last[2];
    assert_eq!((*id, *base), (3, 0));
    assert_eq!(
        samples,
        &[(300, 2, FLAGS_SYNC), (1200, 7, FLAGS_SYNC)],
        "an empty sample, then the cue"
    );
    assert_eq!(w.track_end(0), Some(225_000));
}

#[test]
fn text_samples_never_overlap_and_errors() {
    let mut w = writer();
    w.push_text(2, 0, 1000, "a").unwrap();
    w.push_text(2, 500, 1000, "b").unwrap();
    w.push_text(2, 100, 200, "gone").unwrap();
    w.push_text(2, 3000, 0, "never shown").unwrap();
    assert_eq!(w.track_end(2), Some(1500));
    let r = runs(&w.fragment().unwrap());
    assert_eq!(r[0].2, [(1000, 3, FLAGS_SYNC), (500, 3, FLAGS_SYNC)]);
    assert_eq!(w.push_text(0, 0, 1, "x"), Err(Mp4Error::WrongKind(0)));
    assert_eq!(w.push(2, 0, true, vec![]), Err(Mp4Error::WrongKind(2)));
    assert_eq!(w.push(7, 0, true, vec![]), Err(Mp4Error::NoSuchTrack(7)));
    w.push(1, 960, true, vec![1]).unwrap();
    assert!(matches!(
        w.push(1, 10, true, vec![1]),
        Err(Mp4Error::TimeWentBack { track: 1, .. })
    ));
}

#[test]
fn annexb_and_vtt() {
    let au = [
        0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, 0x65, 1, 2, 0, 0, 1, 0x41, 3,
    ];
    assert_eq!(
        annexb_to_avcc(&au),
        [0, 0, 0, 3, 0x65, 1, 2, 0, 0, 0, 2, 0x41, 3]
    );
    assert_eq!(
        webvtt_cue(3_723_004, 3_725_000, "hi --> there\n"),
        "01:02:03.004 --> 01:02:05.000\nhi -> there\n\n"
    );
    assert_eq!(utc_stamp(1_764_902_096), "20251205-023456");
    assert_eq!(utc_stamp(951_782_400), "20000229-000000");
}

#[test]
fn reorder_gives_rising_decode_times_and_offsets() {
    let f = 3000; // 30 fps at 90 kHz
                  // In order: out at once, decode time = presentation time, offset 0.
    let mut r = Reorder::default();
    for k in 0..5u64 {
        assert_eq!(r.push(k * f, k), vec![(k * f, 0, k)]);
    }
    // x264 with two B-frames, decode order I0 P3 B1 B2 P6 B4 B5 P9 B7 B8 ...
    let mut r = Reorder::default();
    let mut order = vec![0u64];
    for g in 0..10u64 {
        order.extend([3 * g + 3, 3 * g + 1, 3 * g + 2]);
    }
    let mut out = Vec::new();
    for &k in &order {
        out.extend(r.push(k * f, k));
    }
    while let Some(s) = r.pop() {
        out.push(s);
    }
    // Every sample once, in decode order.
    assert_eq!(out.iter().map(|s| s.2).collect::<Vec<_>>(), order);
    // Decode times rise; decode time + offset is the presentation time.
    assert!(out.windows(2).all(|w| w[1].0 > w[0].0), "{out:?}");
    assert!(out
        .iter()
        .all(|&(dts, off, k)| dts as i64 + i64::from(off) == (k * f) as i64));
    // Before the first B-frame: I0 and P3 at their own times; after the start, each
    // decodes one frame after the last.
    assert_eq!(out[0].0, 0);
    assert_eq!(out[1].0, 3 * f);
    assert_eq!(out.last().unwrap().0, 30 * f);
}

#[test]
fn b_frames_are_written_with_signed_composition_offsets() {
    let mut w = writer();
    let _ = w.init_segment();
    let mut frags = Vec::new();
    // I0 P2 B1 P4 B3 with their offsets.
    for (k, dts, off) in [
        (0, 0, 0),
        (1, 3000, 3000),
        (2, 3001, -2998),
        (3, 6000, 6000),
        (4, 9000, -3000),
    ] {
        frags.extend(
            w.push_offset(0, dts, off, k == 0, vec![0, 0, 0, 1, 0x41])
                .unwrap(),
        );
    }
    frags.extend(w.finish());
    assert_eq!(frags.len(), 1);
    let traf = find(boxes(&frags[0])[0].1, "traf");
    let trun = find(traf, "trun");
    // version 1, flags: data offset, duration, size, flags, composition offset.
    assert_eq!(be32(trun, 0), 0x0100_0f01);
    let offsets: Vec<i32> = (0..5)
        .map(|i| be32(trun, 12 + 16 * i + 12) as i32)
        .collect();
    assert_eq!(offsets, [0, 3000, -2998, 6000, -3000]);
    // Durations from the decode times.
    assert_eq!(be32(trun, 12), 3000);
    assert_eq!(be32(trun, 12 + 16), 1);
}
