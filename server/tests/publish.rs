//! Publishing into the server with the real programs: ffmpeg (`-f rtsp`, over TCP and UDP) and
//! GStreamer (`rtspclientsink`) publish to `/cam`; ffprobe, ffmpeg and GStreamer's rtspsrc read
//! it back; a second publisher is refused; a publisher killed mid-stream ends its readers and a
//! new one brings the path back; with authentication, publishing needs the publish role.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::media_file::h264_opus_mkv;
use common::{ffmpeg_video_frames, probe, run_peer, ServerProc};
use livecast_proto::rtsp::server::Roles;
use livecast_server::users::Users;

const SMALL: [&str; 4] = ["--size", "320x240", "--captions", "off"];

/// ffmpeg publishing `input` (looped, in real time) to `url` over `transport`.
fn ffmpeg_publisher(input: &Path, url: &str, transport: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(input)
        .args([
            "-c",
            "copy",
            "-f",
            "rtsp",
            "-rtsp_transport",
            transport,
            url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg must be installed (the test command installs it)")
}

/// The published path reads back as 320x240 H.264 and 48 kHz Opus.
fn assert_h264_320x240_and_opus(streams: &serde_json::Value) {
    let streams = streams["streams"].as_array().expect("streams array");
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("a video stream");
    assert_eq!(video["codec_name"], "h264", "{video}");
    assert_eq!(
        (&video["width"], &video["height"]),
        (&320.into(), &240.into())
    );
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .expect("an audio stream");
    assert_eq!(audio["codec_name"], "opus", "{audio}");
    assert_eq!(audio["sample_rate"], "48000");
}

/// ffmpeg decodes at least `frames` video frames of `url` over `transport` in 3 s of it.
fn ffmpeg_decodes(url: &str, transport: &str, frames: usize) {
    let (n, err) = ffmpeg_video_frames(url, transport, 3);
    assert!(
        n >= frames,
        "ffmpeg decoded {n} frames over {transport}, not {frames}: {err}"
    );
}

/// Waits up to `limit` for `child` to exit; its status, or `None` if it still runs.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// A server with `args` (and a small picture, no captions), a file to publish, and the URL of
/// the path `/cam` on it.
fn server_and_input(args: &[&str]) -> (ServerProc, tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let input = h264_opus_mkv(dir.path());
    let mut all = args.to_vec();
    all.extend(SMALL);
    let server = ServerProc::start(&all);
    let cam = format!("rtsp://127.0.0.1:{}/cam", server.port);
    (server, dir, input, cam)
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn ffmpeg_publishes_over_tcp_and_ffprobe_ffmpeg_and_gstreamer_read_it_back() {
    let (_server, _dir, input, cam) = server_and_input(&[]);
    let publisher = ffmpeg_publisher(&input, &cam, "tcp");
    assert_h264_320x240_and_opus(&probe(&cam));
    ffmpeg_decodes(&cam, "udp", 50);
    ffmpeg_decodes(&cam, "tcp", 50);

    let pipeline = format!(
        "rtspsrc location={cam} protocols=tcp latency=200 name=src \
         src. ! application/x-rtp,media=video ! rtph264depay ! h264parse ! avdec_h264 ! \
         videoconvert ! fakesink name=vsink silent=false sync=false \
         src. ! application/x-rtp,media=audio ! rtpopusdepay ! opusdec ! \
         audioconvert ! fakesink name=asink silent=false sync=false"
    );
    let mut cmd = Command::new("timeout");
    // INT makes it end its stream (-e); KILL 5 s later if it hangs there. 12 s: on a loaded
    // 2-core machine (the whole suite at once) gst-launch once needed more than 6 s to decode
    // its first picture.
    cmd.args(["-k", "5", "-s", "INT", "12", "gst-launch-1.0", "-e", "-v"]);
    cmd.args(pipeline.split_whitespace());
    let (_ok, out, err) = run_peer(&mut cmd, Duration::from_secs(60));
    let count = |sink: &str| {
        out.lines()
            .filter(|l| l.contains(&format!("({sink}:sink)")) && l.contains("chain"))
            .count()
    };
    assert!(
        out.contains("width=(int)320") && out.contains("rate=(int)48000"),
        "GStreamer decoded no 320-wide video or 48 kHz audio: {err}"
    );
    // At least 2 s of playing: 25 fps video, 50 Opus frames a second.
    assert!(count("vsink") >= 50, "only {} video frames", count("vsink"));
    assert!(
        count("asink") >= 100,
        "only {} audio buffers",
        count("asink")
    );

    // A second publisher of the same path is refused.
    let mut second = Command::new("ffmpeg");
    second
        .args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(&input)
        .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", &cam]);
    let (ok, _, err) = run_peer(&mut second, Duration::from_secs(30));
    assert!(!ok, "a second publisher was accepted");
    assert!(err.contains("453"), "not refused with 453: {err}");
    stop(publisher);
}

#[test]
fn a_publisher_killed_mid_stream_ends_its_readers_and_a_new_one_brings_the_path_back() {
    let (_server, _dir, input, cam) = server_and_input(&[]);
    let publisher = ffmpeg_publisher(&input, &cam, "tcp");
    probe(&cam);
    let readers: Vec<Child> = ["udp", "tcp"]
        .into_iter()
        .map(|transport| {
            Command::new("ffmpeg")
                .args([
                    "-nostdin",
                    "-v",
                    "error",
                    "-rtsp_transport",
                    transport,
                    "-i",
                ])
                .args([cam.as_str(), "-f", "null", "-"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("ffmpeg")
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    // SIGKILL: the connection closes without a TEARDOWN.
    stop(publisher);
    for (mut reader, transport) in readers.into_iter().zip(["udp", "tcp"]) {
        let status = wait_exit(&mut reader, Duration::from_secs(10));
        stop(reader);
        let status = status.unwrap_or_else(|| {
            panic!("the {transport} reader still runs 10 s after its publisher was killed")
        });
        // Ended by the server's BYE (or its session's end), which ffmpeg reads as the end.
        assert!(status.success(), "the {transport} reader failed: {status}");
    }
    // The path is gone, then back with a new publisher (over UDP this time).
    let (ok, _, err) = run_peer(
        Command::new("ffprobe").args(["-v", "error", "-rtsp_transport", "tcp", &cam]),
        Duration::from_secs(30),
    );
    assert!(
        !ok && err.contains("404"),
        "the path outlived its publisher: {err}"
    );
    let publisher = ffmpeg_publisher(&input, &cam, "udp");
    assert_h264_320x240_and_opus(&probe(&cam));
    ffmpeg_decodes(&cam, "tcp", 50);
    stop(publisher);
}

#[test]
fn gstreamer_rtspclientsink_publishes() {
    let server = ServerProc::start(&SMALL);
    let cam = format!("rtsp://127.0.0.1:{}/cam", server.port);
    let pipeline = format!(
        "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=25/1 ! \
         x264enc tune=zerolatency key-int-max=25 speed-preset=ultrafast ! \
         video/x-h264,profile=baseline ! s.sink_0 \
         audiotestsrc is-live=true ! audio/x-raw,rate=48000 ! opusenc ! s.sink_1 \
         rtspclientsink name=s location={cam} protocols=tcp"
    );
    let mut publisher = Command::new("gst-launch-1.0")
        .args(pipeline.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 must be installed (the test command installs it)");
    let streams = probe(&cam);
    let _ = publisher.kill();
    let _ = publisher.wait();
    assert_h264_320x240_and_opus(&streams);
}

/// A server with a users file: `viewer` (password `watchpw`, role read) and `publisher` (its
/// password, role publish); the folder holding the file.
fn server_with_users(publisher: (&str, &str)) -> (ServerProc, tempfile::TempDir) {
    server_with_users_and(publisher, &[])
}

/// [`server_with_users`] with more options (`extra`), its data folder (an RTSPS
/// certificate's place) in the same temporary folder.
fn server_with_users_and(
    publisher: (&str, &str),
    extra: &[&str],
) -> (ServerProc, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let users = dir.path().join("users");
    let mut u = Users::default();
    u.set("viewer", "watchpw", None, true)
        .expect("a valid user");
    let publish = Roles::parse("publish").expect("a role");
    u.set(publisher.0, publisher.1, Some(publish), true)
        .expect("a valid user");
    u.save(&users).expect("write the users file");
    let mut args = vec!["--users", users.to_str().expect("UTF-8 path")];
    args.extend(SMALL);
    args.extend(extra);
    (ServerProc::start_with_data_home(&args, dir.path()), dir)
}

#[test]
fn publishing_needs_the_publish_role() {
    let (server, dir) = server_with_users(("cam", "camerapw"));
    let input = h264_opus_mkv(dir.path());
    let url = |cred: &str| format!("rtsp://{cred}@127.0.0.1:{}/cam", server.port);

    // A read-only user may not publish: 403 Forbidden.
    let mut refused = Command::new("ffmpeg");
    refused
        .args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(&input)
        .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp"])
        .arg(url("viewer:watchpw"));
    let (ok, _, err) = run_peer(&mut refused, Duration::from_secs(30));
    assert!(!ok, "a read-only user published");
    assert!(err.contains("403"), "not refused with 403: {err}");

    let publisher = ffmpeg_publisher(&input, &url("cam:camerapw"), "tcp");
    assert_h264_320x240_and_opus(&probe(&url("viewer:watchpw")));
    stop(publisher);
}

/// Publishing over RTSPS (TLS, media interleaved in it), as ffmpeg does with `rtsps://`,
/// needs the same publish role; the path is watched over plain RTSP.
#[test]
fn ffmpeg_publishes_over_rtsps_with_the_publish_role() {
    let tls_port = common::free_port();
    let tls = format!("127.0.0.1:{tls_port}");
    let (server, dir) = server_with_users_and(("cam", "camerapw"), &["--tls-listen", &tls]);
    let input = h264_opus_mkv(dir.path());
    let secure = |cred: &str| format!("rtsps://{cred}@{tls}/cam");
    let mut refused = Command::new("ffmpeg");
    refused
        .args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(&input)
        .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp"])
        .arg(secure("viewer:watchpw"));
    let (ok, _, err) = run_peer(&mut refused, Duration::from_secs(30));
    assert!(
        !ok && err.contains("403"),
        "a read-only user published: {err}"
    );
    let publisher = ffmpeg_publisher(&input, &secure("cam:camerapw"), "tcp");
    let viewer = format!("rtsp://viewer:watchpw@127.0.0.1:{}/cam", server.port);
    assert_h264_320x240_and_opus(&probe(&viewer));
    ffmpeg_decodes(&viewer, "tcp", 50);
    stop(publisher);
}

#[test]
fn with_takeover_a_second_publisher_replaces_the_first() {
    let (_server, _dir, input, cam) = server_and_input(&["--takeover"]);
    let mut first = ffmpeg_publisher(&input, &cam, "tcp");
    probe(&cam);
    let second = ffmpeg_publisher(&input, &cam, "tcp");
    // The first is dropped: the server closes its connection, and ffmpeg gives up.
    let status = wait_exit(&mut first, Duration::from_secs(15));
    stop(first);
    assert!(
        status.is_some(),
        "the first publisher still runs 15 s after the takeover"
    );
    assert_h264_320x240_and_opus(&probe(&cam));
    ffmpeg_decodes(&cam, "tcp", 50);
    stop(second);
}

#[test]
fn a_livecast_server_publishes_into_another_with_authentication() {
    let (relay, _dir) = server_with_users(("source", "sourcepw"));
    let push = format!("rtsp://source:sourcepw@127.0.0.1:{}/cam", relay.port);
    let mut source_args = vec!["--publish", push.as_str()];
    source_args.extend(SMALL);
    let _source = ServerProc::start(&source_args);
    let viewer = format!("rtsp://viewer:watchpw@127.0.0.1:{}/cam", relay.port);
    assert_h264_320x240_and_opus(&probe(&viewer));
    ffmpeg_decodes(&viewer, "tcp", 60);
}

/// `--record` records a published path too, to its own files (`cam-<start>.mp4`): ffprobe
/// reads H.264 and Opus from them, for about as long as the publisher published.
#[test]
fn a_published_path_is_recorded_to_its_own_mp4() {
    let rec = tempfile::tempdir().expect("a temporary folder");
    let dir = rec.path().to_str().expect("UTF-8").to_owned();
    let (server, _tmp, input, cam) = server_and_input(&["--record", &dir]);
    let publisher = ffmpeg_publisher(&input, &cam, "tcp");
    probe(&cam);
    std::thread::sleep(Duration::from_secs(4));
    stop(publisher);
    // The path ends when its connection closes; its files are closed then.
    let start = Instant::now();
    let file = loop {
        let cam_files: Vec<_> = std::fs::read_dir(rec.path())
            .expect("the recording folder")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.starts_with("cam-") && name.ends_with(".mp4")
            })
            .collect();
        if let [f] = &cam_files[..] {
            if std::fs::metadata(f).map_or(0, |m| m.len()) > 20_000 {
                break f.clone();
            }
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{cam_files:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_millis(500));
    drop(server);
    let (ok, out, err) = run_peer(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,width,height:format=duration",
            ])
            .args(["-of", "csv=p=0"])
            .arg(&file),
        Duration::from_secs(30),
    );
    assert!(ok, "ffprobe {}: {err}", file.display());
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"h264,320,240"), "{out}");
    assert!(lines.contains(&"opus"), "{out}");
    let duration: f64 = lines.last().and_then(|d| d.parse().ok()).unwrap_or(0.0);
    assert!(
        (2.0..=8.0).contains(&duration),
        "{duration} s recorded: {out}"
    );
}
