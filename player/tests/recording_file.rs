//! The recording file: round trip, recovery from a killed writer (truncation at every byte of
//! the tail, and at random points), corruption, bad files, descriptions changing mid-file,
//! temporary and kept recordings.

use std::fs;
use std::path::{Path, PathBuf};

use livecast_player::engine::recording::{
    read_index, Index, Record, RecordingError, RecordingReader, RecordingWriter, TempRecording,
    FILE_HEADER_LEN, FORMAT_VERSION, MAGIC,
};
use livecast_player::engine::unit::{MediaKind, MediaUnit, TrackDesc};
use livecast_proto::codec::Codec;
use rand::rngs::StdRng;
use rand::{Rng as _, RngCore as _, SeedableRng as _};

const T0: i64 = 1_795_000_000_000_000; // 2026-11-18, µs since the Unix epoch

fn track(index: usize, media: &str, codec: Codec, clock_rate: u32) -> TrackDesc {
    TrackDesc {
        index,
        media: media.into(),
        codec,
        payload_type: 96 + index as u8,
        clock_rate,
        fmtp: vec![("packetization-mode".into(), "1".into())],
        control_url: format!("rtsp://example.test/live/trackID={index}"),
        label: Default::default(),
    }
}

fn tracks() -> Vec<TrackDesc> {
    vec![
        track(0, "video", Codec::H264, 90_000),
        track(1, "audio", Codec::Opus, 48_000),
        track(2, "text", Codec::Unknown, 1000),
    ]
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=Livecast\r\nt=0 0\r\n";

/// A synthetic session of `ms` milliseconds, in arrival order: video every 33.333 ms with a
/// keyframe every 60 units, audio every 20 ms, a caption every 5 s. Sizes are small to keep
/// the truncation tests fast.
fn session(ms: i64, seed: u64) -> Vec<MediaUnit> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut units = Vec::new();
    let (mut v, mut a, mut c) = (0i64, 0i64, 0i64);
    loop {
        let tv = v * 100_000 / 3;
        let ta = a * 20_000;
        let tc = c * 5_000_000 + 1_000_000;
        let t = tv.min(ta).min(tc);
        if t >= ms * 1000 {
            break;
        }
        let (track, keyframe, len, rtp, text) = if t == tv {
            v += 1;
            let key = (v - 1) % 60 == 0;
            let len = if key {
                3000
            } else {
                100 + rng.random_range(0..400) as usize
            };
            (0, key, len, (tv * 9 / 100) as u32, None)
        } else if t == ta {
            a += 1;
            (
                1,
                true,
                40 + rng.random_range(0..60) as usize,
                (ta * 48 / 1000) as u32,
                None,
            )
        } else {
            c += 1;
            (2, true, 0, (tc / 1000) as u32, Some(format!("caption {c}")))
        };
        let data = match text {
            Some(s) => s.into_bytes(),
            None => (0..len).map(|_| rng.next_u64() as u8).collect(),
        };
        units.push(MediaUnit {
            track,
            rtp_timestamp: rtp,
            capture_us: T0 + t,
            capture_from_sr: t > 150_000,
            arrival_us: T0 + t + 120_000,
            keyframe,
            damaged: false,
            data,
        });
    }
    units
}

fn write_session(path: &Path, units: &[MediaUnit]) -> Index {
    let mut w = RecordingWriter::create(path, &tracks(), SDP).expect("create recording");
    for u in units {
        w.append(u).expect("append");
    }
    w.flush().expect("flush");
    let idx = read_index(&w.index()).clone();
    idx
}

/// A session written to `full.lcrec` in a directory of its own (kept while the first value
/// lives): its index, its bytes, and the path `copy` next to it for a damaged copy.
fn damageable(units: &[MediaUnit], copy: &str) -> (tempfile::TempDir, Index, Vec<u8>, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("full.lcrec");
    let full = write_session(&path, units);
    let bytes = fs::read(&path).expect("read back");
    let copy = dir.path().join(copy);
    (dir, full, bytes, copy)
}

/// Every entry of the index with its track, in file order.
fn all_entries(idx: &Index) -> Vec<(usize, livecast_player::engine::recording::IndexEntry)> {
    let mut v: Vec<_> = (0..idx.track_count())
        .flat_map(|t| idx.entries(t).iter().map(move |e| (t, *e)))
        .collect();
    v.sort_by_key(|(_, e)| e.offset);
    v
}

/// Record length on disk for an entry: 32-byte header, data, 4-byte CRC.
fn record_end(e: &livecast_player::engine::recording::IndexEntry) -> u64 {
    e.offset + 36 + u64::from(e.len)
}

#[test]
fn round_trip_index_and_units() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.lcrec");
    let units = session(20_000, 7);
    let written = write_session(&path, &units);
    assert_eq!(written.len(), units.len());
    assert_eq!(written.entries(0).len(), 600);
    assert_eq!(written.entries(1).len(), 1000);
    assert_eq!(written.entries(2).len(), 4);

    let (mut reader, index) = RecordingReader::open(&path).expect("reopen");
    assert_eq!(index, written, "rebuilt index equals the writer's");
    assert_eq!(reader.ignored_tail(), 0);
    assert_eq!(reader.tail_problem(), None);
    assert_eq!(index.start_us(), Some(T0));
    assert_eq!(index.end_us(), Some(T0 + 19_980_000));
    assert_eq!(
        index.tracks().map(|t| t.codec).collect::<Vec<_>>(),
        vec![Codec::H264, Codec::Opus, Codec::Unknown]
    );
    assert_eq!(index.tracks().cloned().collect::<Vec<_>>(), tracks());
    assert_eq!(index.descriptions().len(), 1);
    assert_eq!(index.descriptions()[0].description.sdp, SDP);
    assert_eq!(index.find_track(MediaKind::Audio), Some(1));
    assert_eq!(index.find_track(MediaKind::Captions), Some(2));

    // Every unit reads back exactly, through the index, in file order.
    let entries = all_entries(&index);
    assert_eq!(entries.len(), units.len());
    for ((t, e), u) in entries.iter().zip(&units) {
        assert_eq!(*t, u.track);
        assert_eq!(reader.read(e).expect("read entry"), *u);
    }

    // The raw record iterator sees the description then every unit.
    let records: Vec<_> = reader
        .records_from(FILE_HEADER_LEN)
        .expect("seek")
        .collect::<Result<_, _>>()
        .expect("all records good");
    assert_eq!(records.len(), units.len() + 1);
    assert!(matches!(&records[0].1, Record::Description(d) if d.tracks == tracks()));
    for ((off, r), (_, e)) in records[1..].iter().zip(&entries) {
        assert_eq!(*off, e.offset);
        assert!(matches!(r, Record::Media(_)));
    }
    // ...and can start in the middle.
    let mid = entries[500].1.offset;
    let first = reader.records_from(mid).expect("seek").next();
    assert!(matches!(first, Some(Ok((o, Record::Media(ref u)))) if o == mid && *u == units[500]));
}

#[test]
fn keyframes_and_queries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("q.lcrec");
    let units = session(10_000, 3);
    write_session(&path, &units);
    let (_, idx) = RecordingReader::open(&path).expect("open");
    let v = idx.entries(0);
    for (i, e) in v.iter().enumerate() {
        assert_eq!(e.keyframe(), i % 60 == 0);
        assert!(e.seek_point() == e.keyframe());
    }
    // 3.5 s in: keyframe at 2 s (entry 60); frame 105 is at exactly 3.5 s.
    let t = T0 + 3_500_000;
    assert_eq!(idx.keyframe_at_or_before(0, t), Some(60));
    assert_eq!(idx.first_at_or_after(0, t), Some(105));
    assert_eq!(
        idx.last_at_or_before(0, t),
        Some(105),
        "frame 105 is at exactly 3.5 s"
    );
    assert_eq!(idx.keyframe_at_or_after(0, t), Some(120));
    assert_eq!(idx.keyframe_at_or_before(0, T0 - 1), None);
    assert_eq!(idx.first_at_or_after(0, T0 + 60_000_000), None);
    // Audio: every unit is a seek point.
    assert_eq!(idx.keyframe_at_or_before(1, t), Some(175));
    // Captions at 1 s and 6 s.
    let caps = idx.text_in(2, T0..T0 + 7_000_000);
    assert_eq!(caps.len(), 2);
    assert_eq!(caps[0].time_us, T0 + 1_000_000);
    assert!(idx.text_in(2, T0 + 2_000_000..T0 + 5_000_000).is_empty());
    let reversed = std::ops::Range {
        start: T0 + 9_000_000,
        end: T0 + 1_000_000,
    };
    assert!(idx.text_in(2, reversed).is_empty());
    assert!(idx.entries(9).is_empty());
    assert_eq!(idx.keyframe_at_or_before(9, t), None);
}

/// Reopens `bytes[..cut]` and checks that exactly the complete records before the cut are
/// indexed.
fn check_cut(path: &Path, full: &Index, cut: u64) {
    let (reader, idx) =
        RecordingReader::open(path).unwrap_or_else(|e| panic!("cut at {cut}: reopen failed: {e}"));
    let expected: Vec<_> = all_entries(full)
        .into_iter()
        .filter(|(_, e)| record_end(e) <= cut)
        .collect();
    let got = all_entries(&idx);
    assert_eq!(got, expected, "cut at {cut}");
    let good_end = expected
        .last()
        .map_or(idx.end_offset(), |(_, e)| record_end(e));
    assert_eq!(idx.end_offset(), good_end, "cut at {cut}");
    assert_eq!(reader.ignored_tail(), cut - good_end, "cut at {cut}");
    assert_eq!(
        reader.tail_problem().is_some(),
        cut != good_end,
        "cut at {cut}: {:?}",
        reader.tail_problem()
    );
}

#[test]
fn truncated_at_every_byte_of_the_tail() {
    let (_dir, full, bytes, cut_path) = damageable(&session(2_500, 11), "cut.lcrec");
    let entries = all_entries(&full);
    // The last four records, one byte at a time, cutting the same file shorter and shorter.
    let from = entries[entries.len() - 4].1.offset - 3;
    fs::write(&cut_path, &bytes).expect("copy");
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&cut_path)
        .expect("open copy");
    let mut n = 0;
    for cut in (from..=bytes.len() as u64).rev() {
        f.set_len(cut).expect("truncate");
        check_cut(&cut_path, &full, cut);
        n += 1;
    }
    assert!(n > 250, "{n} cuts");
}

#[test]
fn truncated_at_random_points() {
    let (_dir, full, bytes, cut_path) = damageable(&session(6_000, 5), "cut.lcrec");
    let mut rng = StdRng::seed_from_u64(0x5EED);
    for _ in 0..300 {
        let cut = FILE_HEADER_LEN + rng.random_range(0..bytes.len() as u64 - FILE_HEADER_LEN + 1);
        fs::write(&cut_path, &bytes[..cut as usize]).expect("write cut copy");
        check_cut(&cut_path, &full, cut);
    }
    // A cut inside the first description: a valid but empty recording.
    fs::write(&cut_path, &bytes[..FILE_HEADER_LEN as usize + 40]).expect("write");
    let (r, idx) = RecordingReader::open(&cut_path).expect("open");
    assert!(idx.is_empty());
    assert_eq!(idx.track_count(), 0);
    assert_eq!(r.ignored_tail(), 40);
}

#[test]
fn corruption_stops_the_scan_at_the_bad_record() {
    let (_dir, full, bytes, bad_path) = damageable(&session(5_000, 9), "bad.lcrec");
    let entries = all_entries(&full);
    let bad = entries[entries.len() / 2].1;

    // (offset within the record, expected reason)
    let cases = [
        (40, "CRC mismatch"),                          // a data byte
        (0, "bad sync word"),                          // the sync word
        (9, "CRC mismatch"),                           // capture time
        (31, "record length over 64 MiB"),             // top byte of the length
        (36 + u64::from(bad.len) - 1, "CRC mismatch"), // the CRC itself
    ];
    for (at, reason) in cases {
        let mut b = bytes.clone();
        b[(bad.offset + at) as usize] ^= 0x80;
        fs::write(&bad_path, &b).expect("write");
        let (mut r, idx) = RecordingReader::open(&bad_path).expect("corrupt middle still opens");
        let expected: Vec<_> = entries
            .iter()
            .copied()
            .filter(|(_, e)| e.offset < bad.offset)
            .collect();
        assert_eq!(all_entries(&idx), expected, "flip at +{at}");
        assert_eq!(r.tail_problem(), Some(reason), "flip at +{at}");
        assert_eq!(r.ignored_tail(), bytes.len() as u64 - bad.offset);
        // Reading the bad record directly (with the full index) is an error, not a panic.
        let err = r.read(&bad).expect_err("corrupt record must not read");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        // The record iterator reports it.
        let last = r
            .records_from(FILE_HEADER_LEN)
            .expect("seek")
            .last()
            .expect("some records");
        assert!(
            matches!(last, Err(RecordingError::Corrupt { offset, .. }) if offset == bad.offset),
            "{last:?}"
        );
    }
}

#[test]
fn files_that_are_not_recordings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("x");
    let open_err = |bytes: &[u8]| {
        fs::write(&p, bytes).expect("write");
        RecordingReader::open(&p).expect_err("must be refused")
    };
    let e = open_err(b"RIFF\x24\x00\x00\x00WAVEfmt this is a wav file");
    assert!(matches!(e, RecordingError::NotARecording(_)));
    assert_eq!(e.to_string(), "not a Livecast recording: bad magic");
    assert!(matches!(open_err(b""), RecordingError::NotARecording(_)));
    assert!(matches!(
        open_err(b"LIVECAST"),
        RecordingError::NotARecording(_)
    ));
    assert!(matches!(
        open_err(b"LIVECAST-REC\0\x01"),
        RecordingError::NotARecording(_)
    ));

    let mut future = MAGIC.to_vec();
    future.extend_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    future.extend_from_slice(b"LREC whatever comes in version 2");
    let e = open_err(&future);
    assert!(
        matches!(e, RecordingError::UnsupportedVersion { found } if found == FORMAT_VERSION + 1)
    );
    assert!(e.to_string().contains("version 2"), "{e}");
    assert!(matches!(
        RecordingReader::attach(&p),
        Err(RecordingError::UnsupportedVersion { .. })
    ));

    let e = RecordingReader::open(dir.path().join("missing")).expect_err("no such file");
    assert!(matches!(e, RecordingError::Io(ref io) if io.kind() == std::io::ErrorKind::NotFound));
}

#[test]
fn temporary_recording_is_removed_and_kept_one_is_not() {
    let units = session(1_000, 1);
    let path = {
        let mut w = RecordingWriter::create_temp(&tracks(), SDP).expect("temp recording");
        assert!(w.is_temporary());
        for u in &units {
            w.append(u).expect("append");
        }
        let p = w.path().to_path_buf();
        assert!(p.starts_with(std::env::temp_dir()));
        // Readable while it exists.
        let (_, idx) = RecordingReader::open(&p).expect("open temp");
        assert_eq!(idx.len(), units.len());
        p
    };
    assert!(!path.exists(), "temporary recording removed on drop");

    let a = TempRecording::new().expect("temp");
    let b = TempRecording::new().expect("temp");
    assert_ne!(a.path(), b.path());
    let pa = a.path().to_path_buf();
    assert!(pa.exists());
    drop(a);
    assert!(!pa.exists());

    // `--record FILE`: kept after the writer goes away, and playable by the next start.
    let dir = tempfile::tempdir().expect("temp dir");
    let kept = dir.path().join("kept.lcrec");
    {
        let mut w = RecordingWriter::create(&kept, &tracks(), SDP).expect("create");
        assert!(!w.is_temporary());
        for u in &units {
            w.append(u).expect("append");
        }
        w.sync().expect("sync");
    }
    assert!(kept.exists());
    let (_, idx) = RecordingReader::open(&kept).expect("reopen kept");
    assert_eq!(idx.len(), units.len());

    // Recording again to the same path replaces the old recording...
    drop(RecordingWriter::create(&kept, &tracks(), SDP).expect("replace a recording"));
    let (_, idx) = RecordingReader::open(&kept).expect("reopen");
    assert!(idx.is_empty());
    // ...but a file that is not a recording is left alone.
    let precious = dir.path().join("thesis.txt");
    fs::write(&precious, "chapter 1").expect("write");
    let err = RecordingWriter::create(&precious, &tracks(), SDP).expect_err("must refuse");
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read_to_string(&precious).expect("read"), "chapter 1");
}

#[test]
fn live_reader_sees_every_published_entry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("live.lcrec");
    let units = session(3_000, 2);
    let mut w = RecordingWriter::create(&path, &tracks(), SDP).expect("create");
    let shared = w.index();
    let mut r = w.reader().expect("attach");
    for u in &units {
        w.append(u).expect("append");
        // The playback thread's view: the newest entry is readable at once.
        let e = {
            let idx = read_index(&shared);
            *idx.entries(u.track).last().expect("entry published")
        };
        assert_eq!(r.read(&e).expect("read newest"), *u);
        assert_eq!(read_index(&shared).end_offset(), w.len());
    }
    // A unit for a track the description doesn't have is refused and changes nothing.
    let before = w.len();
    let mut bad = units[0].clone();
    bad.track = 3;
    let err = w.append(&bad).expect_err("no track 3");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(w.len(), before);
    assert_eq!(fs::metadata(&path).expect("stat").len(), before);
}

#[test]
fn description_changes_and_clock_discontinuities() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("re.lcrec");
    let unit = |track: usize, capture_us: i64, arrival_us: i64, keyframe: bool| MediaUnit {
        track,
        rtp_timestamp: 0,
        capture_us,
        capture_from_sr: true,
        arrival_us,
        keyframe,
        damaged: false,
        data: vec![track as u8; 10],
    };
    let mut w = RecordingWriter::create(&path, &tracks(), SDP).expect("create");
    for i in 0..10 {
        w.append(&unit(0, T0 + i * 100_000, T0 + i * 100_000, i == 0))
            .expect("v");
        w.append(&unit(1, T0 + i * 100_000, T0 + i * 100_000, true))
            .expect("a");
    }
    // A clock step backwards within a session: clamped to the previous time.
    w.append(&unit(0, T0 + 500_000, T0 + 1_000_000, false))
        .expect("v");
    // Reconnect, 2 s later by our clock, to a server whose clock is an hour behind and that
    // lists audio first, then video, then a second video track in another codec.
    let tracks2 = vec![
        track(0, "audio", Codec::Opus, 48_000),
        track(1, "video", Codec::H264, 90_000),
        track(2, "video", Codec::Unknown, 90_000),
    ];
    w.set_description(&tracks2, "v=0\r\ns=other\r\n")
        .expect("describe");
    let back = T0 - 3_600_000_000;
    w.append(&unit(1, back + 3_000_000, T0 + 3_000_000, true))
        .expect("v");
    w.append(&unit(0, back + 3_000_000, T0 + 3_000_000, true))
        .expect("a");
    w.append(&unit(2, back + 3_100_000, T0 + 3_100_000, true))
        .expect("v2");
    drop(w);

    let (mut r, idx) = RecordingReader::open(&path).expect("open");
    assert_eq!(idx.descriptions().len(), 2);
    assert_eq!(idx.descriptions()[1].index_tracks, vec![1, 0, 3]);
    assert_eq!(idx.track_count(), 4);
    assert_eq!(idx.track(3).map(|t| t.codec), Some(Codec::Unknown));
    assert_eq!(idx.track(3).map(|t| t.index), Some(3));
    assert_eq!(idx.find_track(MediaKind::Video), Some(0));
    let v = idx.entries(0);
    assert_eq!(v.len(), 12);
    assert_eq!(
        v[10].time_us, v[9].time_us,
        "backwards capture time clamped"
    );
    // After the reconnect the timeline continues: previous end (0.9 s) + 2 s of arrival gap.
    assert_eq!(v[11].time_us, T0 + 2_900_000);
    assert_eq!(idx.entries(1)[10].time_us, T0 + 2_900_000);
    assert_eq!(idx.entries(3)[0].time_us, T0 + 3_000_000);
    assert_eq!(idx.end_us(), Some(T0 + 3_000_000));
    // Reading back gives the index track and the recorded (unadjusted) capture time.
    let u = r.read(&v[11]).expect("read");
    assert_eq!(u.track, 0);
    assert_eq!(
        u.data,
        vec![1u8; 10],
        "it was local track 1 in the second description"
    );
    assert_eq!(u.capture_us, back + 3_000_000);
    // The raw iterator gives local track numbers.
    let raw: Vec<_> = r
        .records_from(idx.descriptions()[1].offset)
        .expect("seek")
        .collect::<Result<_, _>>()
        .expect("good");
    assert!(matches!(&raw[0].1, Record::Description(d) if d.tracks == tracks2));
    assert!(matches!(&raw[1].1, Record::Media(u) if u.track == 1));
}

#[test]
fn damaged_keyframes_are_not_seek_points() {
    let mut idx = Index::new();
    idx.push_description(
        livecast_player::engine::recording::Description {
            sdp: String::new(),
            tracks: vec![track(0, "video", Codec::H264, 90_000)],
        },
        FILE_HEADER_LEN,
    );
    for i in 0..10i64 {
        let u = MediaUnit {
            track: 0,
            rtp_timestamp: 0,
            capture_us: i * 1000,
            capture_from_sr: false,
            arrival_us: i * 1000,
            keyframe: i % 3 == 0,
            damaged: i == 6,
            data: vec![0; 5],
        };
        idx.push_unit(&u, 100 + i as u64 * 41).expect("track 0");
    }
    assert_eq!(idx.keyframe_at_or_before(0, 8000), Some(3), "6 is damaged");
    assert_eq!(idx.keyframe_at_or_before(0, 9000), Some(9));
    assert!(idx.entries(0)[6].damaged() && idx.entries(0)[6].keyframe());
    assert!(idx.memory_bytes() >= 10 * 24);
}
