//! The playback clock, driven through a scripted ten-minute live session with a fake clock
//! (a base `Instant` plus offsets): nothing here sleeps or reads the time.

use std::time::{Duration, Instant};

use livecast_player::engine::recording::{Description, Index, SeekPlan, FILE_HEADER_LEN};
use livecast_player::engine::timeline::{Timeline, AT_LIVE_TOLERANCE_US, SLEW_RATE};
use livecast_player::engine::unit::{MediaUnit, TrackDesc};
use livecast_proto::codec::Codec;
use rand::rngs::StdRng;
use rand::{RngCore as _, SeedableRng as _};

const S: i64 = 1_795_000_000_000_000; // recording start, µs since the Unix epoch
const DELAY: i64 = 500_000; // live delay
const STEP_MS: i64 = 20;

/// A live session: the recording grows with the (fake) wall clock unless stalled.
struct Sim {
    base: Instant,
    now_ms: i64,
    /// Newest recorded time.
    edge: i64,
    stalled: bool,
    tl: Timeline,
}

impl Sim {
    fn new() -> Self {
        let base = Instant::now();
        let mut sim = Sim {
            base,
            now_ms: 0,
            edge: S,
            stalled: false,
            tl: Timeline::new(DELAY, base),
        };
        sim.tl.set_range(S, S, base);
        sim
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.now_ms as u64)
    }

    fn pos(&self) -> i64 {
        self.tl.position(self.now())
    }

    fn limit(&self) -> i64 {
        self.tl.live_limit_us().expect("range is set")
    }

    /// Runs `ms` of session in 20 ms steps: the recording grows, the engine ticks.
    fn run(&mut self, ms: i64) {
        for _ in 0..ms / STEP_MS {
            self.now_ms += STEP_MS;
            if !self.stalled {
                self.edge = S + self.now_ms * 1000;
            }
            let now = self.now();
            self.tl.set_live_edge(self.edge, now);
            self.tl.tick(now);
        }
    }

    /// The stream delivers what it held back during a stall.
    fn unstall(&mut self) {
        self.stalled = false;
        self.edge = S + self.now_ms * 1000;
        let now = self.now();
        self.tl.set_live_edge(self.edge, now);
        self.tl.tick(now);
    }
}

/// At live, the playhead trails the live limit by at most one recording step (it waits at
/// the limit, then the limit moves on by a whole unit).
fn assert_at_live(sim: &Sim) {
    let behind = sim.limit() - sim.pos();
    assert!(
        (0..=STEP_MS * 1000).contains(&behind),
        "{behind} µs behind the live limit"
    );
    assert!(sim.tl.at_live(sim.now()));
}

#[test]
fn ten_minute_session() {
    let mut sim = Sim::new();

    // Live from the start: the playhead sits at edge - delay.
    sim.run(5_000);
    assert_eq!(sim.limit(), S + 4_500_000);
    assert_at_live(&sim);
    assert!(sim.tl.following_live() && sim.tl.playing());
    assert_eq!(sim.tl.position_from_start(sim.now()), sim.pos() - S);

    // Pause at 60 s for 30 s: the position holds, the recording keeps growing.
    sim.run(55_000);
    assert_at_live(&sim);
    let p = sim.pos();
    sim.tl.pause(sim.now());
    sim.run(30_000);
    assert_eq!(sim.pos(), p);
    assert_eq!(sim.tl.live_edge_us(), Some(S + 90_000_000));
    assert!(!sim.tl.at_live(sim.now()) && !sim.tl.following_live());
    // Play: 1x from where we paused, 30 s behind live.
    sim.tl.toggle(sim.now());
    assert!(sim.tl.playing());
    sim.run(10_000);
    assert_eq!(sim.pos(), p + 10_000_000);
    let behind = sim.limit() - sim.pos();
    assert!((30_000_000..=30_020_000).contains(&behind), "{behind}");

    // Rewind 10 s, play 5 s, forward 10 s.
    let p = sim.pos();
    let jumps = sim.tl.jumps();
    sim.tl.seek_by(-10_000_000, sim.now());
    assert_eq!(sim.pos(), p - 10_000_000);
    assert_eq!(sim.tl.jumps(), jumps + 1);
    sim.run(5_000);
    assert_eq!(sim.pos(), p - 5_000_000);
    sim.tl.seek_by(10_000_000, sim.now());
    assert_eq!(sim.pos(), p + 5_000_000);
    assert_eq!(sim.limit() - sim.pos(), behind);

    // 4x: 4 s of wall time is 16 s of media, audio muted; 2x is not muted.
    sim.tl.set_speed(2.0, sim.now());
    assert!(!sim.tl.audio_muted());
    sim.tl.set_speed(4.0, sim.now());
    assert!(sim.tl.audio_muted());
    let p = sim.pos();
    sim.run(4_000);
    assert_eq!(sim.pos(), p + 16_000_000);
    // 3 s gained on live per second: at live after behind / 3, then 1x at live.
    let behind = sim.limit() - sim.pos();
    assert_eq!(behind, behind.clamp(18_000_000, 18_020_000));
    let to_live_ms = behind / 3 / 1000;
    sim.run(to_live_ms - 100);
    assert_eq!(sim.tl.speed(), 4.0);
    assert!(!sim.tl.following_live());
    sim.run(200);
    assert_eq!(sim.tl.speed(), 1.0, "fast-forward into live drops to 1x");
    assert!(!sim.tl.audio_muted());
    assert!(sim.tl.following_live());
    assert_at_live(&sim);
    sim.run(10_000);
    assert_at_live(&sim);

    // A stall while following live: the playhead waits at the limit, then returns to live.
    sim.stalled = true;
    sim.run(3_000);
    let held = sim.pos();
    assert_eq!(held, sim.limit());
    sim.unstall();
    assert_eq!(sim.pos(), sim.limit(), "caught up after the stall");
    assert_eq!(sim.pos() - held, 3_000_000);

    // Seek far back, slow motion.
    sim.tl.seek(S + 100_000_000, sim.now());
    assert!(!sim.tl.following_live());
    sim.tl.set_speed(0.5, sim.now());
    sim.run(10_000);
    assert_eq!(sim.pos(), S + 105_000_000);
    // A stall 100 s behind live changes nothing.
    sim.stalled = true;
    sim.run(2_000);
    sim.unstall();
    assert_eq!(sim.pos(), S + 106_000_000);

    // Back to live from pause.
    sim.tl.pause(sim.now());
    sim.run(1_000);
    let jumps = sim.tl.jumps();
    sim.tl.go_live(sim.now());
    assert_eq!(sim.tl.jumps(), jumps + 1);
    assert!(sim.tl.playing() && sim.tl.following_live());
    assert_eq!(sim.tl.speed(), 1.0);
    assert_eq!(sim.pos(), sim.limit());
    assert_at_live(&sim);

    // Seeks clamp to [start, edge - delay].
    sim.tl.seek(S - 5_000_000, sim.now());
    assert_eq!(sim.pos(), S);
    sim.tl.seek_by(-1, sim.now());
    assert_eq!(sim.pos(), S);
    sim.tl.seek(i64::MAX, sim.now());
    assert_eq!(sim.pos(), sim.limit());
    sim.tl.seek_by(i64::MIN, sim.now());
    assert_eq!(sim.pos(), S);

    // Play on from the start to the ten-minute mark.
    let t = sim.now_ms;
    sim.run(600_000 - t);
    assert_eq!(sim.now_ms, 600_000);
    assert_eq!(sim.pos(), S + (600_000 - t) * 1000);
    assert_eq!(sim.tl.live_edge_us(), Some(S + 600_000_000));
    assert_eq!(sim.tl.start_us(), Some(S));
}

#[test]
fn speed_is_clamped() {
    let mut sim = Sim::new();
    sim.run(1_000);
    let now = sim.now();
    sim.tl.set_speed(10.0, now);
    assert_eq!(sim.tl.speed(), 4.0);
    sim.tl.set_speed(0.1, now);
    assert_eq!(sim.tl.speed(), 0.5);
    sim.tl.set_speed(f32::NAN, now);
    assert_eq!(sim.tl.speed(), 0.5);
    // At live, asking for 4x falls back to 1x at the next tick.
    sim.tl.go_live(now);
    sim.tl.set_speed(4.0, now);
    sim.run(STEP_MS);
    assert_eq!(sim.tl.speed(), 1.0);
    assert!(sim.tl.following_live());
}

#[test]
fn time_going_backwards_in_the_input_does_not_panic() {
    let base = Instant::now() + Duration::from_secs(10);
    let mut tl = Timeline::new(DELAY, base);
    tl.set_range(S, S + 60_000_000, base);
    tl.seek(S + 1_000_000, base);
    let earlier = base - Duration::from_secs(5);
    assert_eq!(tl.position(earlier), S + 1_000_000);
    tl.tick(earlier);
    tl.audio_clock(S + 1_000_000, earlier);
    tl.pause(earlier);
    tl.play(earlier);
    // The anchor never moves back to the earlier instant.
    assert_eq!(tl.position(base), S + 1_000_000);
}

/// Audio-master runs: the audio device reports its position every 10 ms.
struct AudioRun {
    positions: Vec<i64>,
    errors: Vec<i64>,
}

fn run_with_audio(offset_us: i64, audio_rate: f64, ms: i64) -> (Sim, AudioRun) {
    let mut sim = Sim::new();
    sim.run(120_000);
    // Well behind live so the live limit plays no part.
    sim.tl.seek_by(-60_000_000, sim.now());
    let a0 = sim.pos() + offset_us;
    let t0 = sim.now_ms;
    let mut run = AudioRun {
        positions: vec![sim.pos()],
        errors: vec![],
    };
    for _ in 0..ms / 10 {
        sim.now_ms += 10;
        sim.edge = S + sim.now_ms * 1000;
        let now = sim.now();
        sim.tl.set_live_edge(sim.edge, now);
        let audio = a0 + (((sim.now_ms - t0) * 1000) as f64 * audio_rate) as i64;
        sim.tl.audio_clock(audio, now);
        sim.tl.tick(now);
        run.positions.push(sim.pos());
        run.errors.push(sim.pos() - audio);
    }
    (sim, run)
}

#[test]
fn audio_master_slews_without_jumps() {
    for offset in [30_000, -30_000, 39_000, -150_000, 199_000] {
        let (_, run) = run_with_audio(offset, 1.0, 3_000);
        for w in run.positions.windows(2) {
            let step = w[1] - w[0];
            let lo = (10_000.0 * (1.0 - SLEW_RATE)) as i64 - 1;
            let hi = (10_000.0 * (1.0 + SLEW_RATE)) as i64 + 1;
            assert!((lo..=hi).contains(&step), "offset {offset}: step {step} µs");
        }
        // Converged: 100 ms of correction per second.
        let settle = (offset.unsigned_abs() as usize / 1_000) + 5;
        for (i, e) in run.errors.iter().enumerate().skip(settle) {
            assert!(
                e.abs() <= 1,
                "offset {offset}: error {e} µs after {} ms",
                i * 10
            );
        }
        assert_eq!(run.errors.last(), Some(&0), "offset {offset}");
    }
}

#[test]
fn audio_master_follows_a_drifting_device() {
    // The audio device clock runs 0.5 % fast: the error stays tiny.
    let (_, run) = run_with_audio(0, 1.005, 20_000);
    let worst = run.errors.iter().map(|e| e.abs()).max().expect("samples");
    assert!(worst <= 60, "worst error {worst} µs");
}

#[test]
fn audio_master_resyncs_far_errors_and_ignores_muted_audio() {
    let mut sim = Sim::new();
    sim.run(60_000);
    sim.tl.seek_by(-30_000_000, sim.now());
    let p = sim.pos();
    let jumps = sim.tl.jumps();
    // Under 40 ms: no jump at all.
    sim.tl.audio_clock(p + 39_000, sim.now());
    assert_eq!(sim.pos(), p);
    // Over 200 ms: jump to the audio clock.
    sim.tl.audio_clock(p + 300_000, sim.now());
    assert_eq!(sim.pos(), p + 300_000);
    assert_eq!(sim.tl.jumps(), jumps + 1);
    // Muted at 4x, or paused: the audio clock is ignored.
    sim.tl.set_speed(4.0, sim.now());
    sim.tl.audio_clock(p, sim.now());
    assert_eq!(sim.pos(), p + 300_000);
    sim.tl.set_speed(1.0, sim.now());
    sim.tl.pause(sim.now());
    sim.tl.audio_clock(p, sim.now());
    assert_eq!(sim.pos(), p + 300_000);
    // A seek drops any slew in progress.
    sim.tl.play(sim.now());
    sim.tl.audio_clock(p + 300_000 + 100_000, sim.now());
    sim.tl.seek(S + 1_000_000, sim.now());
    sim.run(1_000);
    assert_eq!(sim.pos(), S + 2_000_000);
}

#[test]
fn at_live_tolerance() {
    let mut sim = Sim::new();
    sim.run(30_000);
    sim.tl.go_live(sim.now());
    sim.tl.seek_by(-AT_LIVE_TOLERANCE_US, sim.now());
    assert!(sim.tl.at_live(sim.now()));
    sim.tl.seek_by(-1, sim.now());
    assert!(!sim.tl.at_live(sim.now()));
}

#[test]
fn file_playback_has_no_live_delay() {
    let base = Instant::now();
    let mut tl = Timeline::new(0, base);
    tl.set_range(S, S + 10_000_000, base);
    tl.seek(S, base);
    assert!(!tl.following_live());
    let at = |ms: u64| base + Duration::from_millis(ms);
    assert_eq!(tl.position(at(4_000)), S + 4_000_000);
    tl.tick(at(12_000));
    assert_eq!(tl.position(at(12_000)), S + 10_000_000, "stops at the end");
    assert!(tl.at_live(at(12_000)));
}

// ------------------------------------------------------------------------------------------
// Index::seek_plan

fn video_index(n: usize, seed: u64) -> Index {
    let mut idx = Index::new();
    idx.push_description(
        Description {
            sdp: String::new(),
            tracks: vec![TrackDesc {
                index: 0,
                media: "video".into(),
                codec: Codec::H264,
                payload_type: 96,
                clock_rate: 90_000,
                fmtp: vec![],
                control_url: String::new(),
                label: Default::default(),
            }],
        },
        FILE_HEADER_LEN,
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rnd = move || rng.next_u64();
    let mut t = S;
    for i in 0..n {
        // Mostly 33.3 ms apart; sometimes equal (a clamped clock step), sometimes a gap.
        match rnd() % 100 {
            0 => {}
            1 => t += 5_000_000,
            _ => t += 33_333,
        }
        let keyframe = i % 60 == 0 || rnd() % 500 == 0;
        let unit = MediaUnit {
            track: 0,
            rtp_timestamp: 0,
            capture_us: t,
            capture_from_sr: true,
            arrival_us: t,
            keyframe,
            damaged: keyframe && rnd() % 50 == 0,
            data: Vec::new(),
        };
        idx.push_unit(&unit, FILE_HEADER_LEN + 1000 * i as u64)
            .expect("track 0 is described");
    }
    idx
}

/// The obvious linear version of `Index::seek_plan`.
fn seek_plan_linear(idx: &Index, target: i64, next: Option<usize>) -> Option<SeekPlan> {
    let e = idx.entries(0);
    let seekable = |i: &usize| e[*i].keyframe() && !e[*i].damaged();
    let keyframe = (0..e.len())
        .rev()
        .find(|i| seekable(i) && e[*i].time_us <= target)
        .or_else(|| (0..e.len()).find(|i| seekable(i) && e[*i].time_us >= target))?;
    let last = (0..e.len())
        .rev()
        .find(|&i| e[i].time_us <= target)
        .unwrap_or(keyframe)
        .max(keyframe);
    // The decoder standing at `next` decoded from the last seek point before it: going on
    // is right when that is the target's keyframe and it has not passed the target.
    let group_of = |n: usize| (0..n).rev().find(seekable);
    let from = next
        .filter(|&n| n <= last + 1 && group_of(n) == Some(keyframe))
        .unwrap_or(keyframe);
    Some(SeekPlan {
        keyframe,
        from,
        last,
    })
}

#[test]
fn seek_plan_matches_a_linear_scan_on_100k_entries() {
    let idx = video_index(100_000, 42);
    let e = idx.entries(0);
    assert_eq!(e.len(), 100_000);
    let first = e[0].time_us;
    let last = e[e.len() - 1].time_us;
    let mut targets = vec![
        i64::MIN,
        first - 1,
        first,
        first + 1,
        last - 1,
        last,
        last + 1,
        i64::MAX,
    ];
    for i in (0..e.len()).step_by(997) {
        targets.extend([e[i].time_us - 1, e[i].time_us, e[i].time_us + 1]);
    }
    let mut x = 7u64;
    let mut rnd = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 11
    };
    for _ in 0..300 {
        targets.push(first + rnd() as i64 % (last - first + 1));
    }
    let mut went_on = 0;
    for &t in &targets {
        let plan = idx.seek_plan(0, t, None);
        assert_eq!(plan, seek_plan_linear(&idx, t, None), "target {t}");
        let p = plan.expect("the track has keyframes");
        assert!(e[p.keyframe].seek_point());
        assert!(p.fresh() && p.keyframe <= p.last);
        // A decoder standing anywhere from 70 entries before to 10 after the target.
        for _ in 0..4 {
            let next = (p.last + 10).saturating_sub(rnd() as usize % 80);
            let plan = idx.seek_plan(0, t, Some(next));
            assert_eq!(
                plan,
                seek_plan_linear(&idx, t, Some(next)),
                "target {t}, at {next}"
            );
            went_on += usize::from(!plan.unwrap().fresh());
        }
    }
    assert!(went_on > 300, "{went_on} of {} went on", targets.len() * 4);
    // The common case: decode from the keyframe before to the frame at the target.
    let t = e[12_345].time_us;
    let p = idx.seek_plan(0, t, None).expect("plan");
    assert_eq!(e[p.last].time_us, t);
    assert!(e[p.keyframe + 1..=p.last]
        .iter()
        .all(|x| !x.seek_point() || x.time_us > t));

    assert_eq!(idx.seek_plan(5, t, None), None, "unknown track");
    assert_eq!(Index::new().seek_plan(0, t, None), None, "empty index");
}
