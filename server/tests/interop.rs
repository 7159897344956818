//! Interop: the real peer programs (ffprobe, ffmpeg, GStreamer, mpv) against the real server.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{gst_buffers, run_peer, ServerProc};

/// Stands for the server's URL in the arguments of [`against_server`].
const URL: &str = "{url}";

/// Runs `program` with `args` against a server of its own (see [`run_peer`]).
fn against_server(program: &str, args: &[&str], limit: Duration) -> (bool, String, String) {
    let server = ServerProc::start(&[]);
    let url = server.url();
    let args = args
        .iter()
        .map(|&a| if a == URL { url.as_str() } else { a });
    run_peer(Command::new(program).args(args), limit)
}

#[test]
fn ffprobe_reports_h264_720p30_and_opus_48k() {
    let (ok, out, err) = against_server(
        "ffprobe",
        &["-v", "error", "-show_streams", "-of", "json", URL],
        Duration::from_secs(60),
    );
    assert!(ok, "ffprobe failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("ffprobe prints JSON");
    let streams = v["streams"].as_array().expect("streams array");
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("a video stream");
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["width"], 1280);
    assert_eq!(video["height"], 720);
    assert_eq!(video["r_frame_rate"], "30/1", "{video}");
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .expect("an audio stream");
    assert_eq!(audio["codec_name"], "opus");
    assert_eq!(audio["sample_rate"], "48000");
    assert!(err.trim().is_empty(), "ffprobe reported errors: {err}");
}

fn ffmpeg_300_frames(transport: &str) {
    let (ok, _out, err) = against_server(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-rtsp_transport",
            transport,
            "-i",
            URL,
            "-frames:v",
            "300",
            "-f",
            "null",
            "-",
        ],
        Duration::from_secs(90),
    );
    assert!(ok, "ffmpeg over {transport} failed: {err}");
    // At -v error, anything printed is an error (decode errors included).
    assert!(
        err.trim().is_empty(),
        "ffmpeg over {transport} reported errors: {err}"
    );
}

#[test]
fn ffmpeg_decodes_300_frames_over_udp() {
    ffmpeg_300_frames("udp");
}

#[test]
fn ffmpeg_decodes_300_frames_over_tcp() {
    ffmpeg_300_frames("tcp");
}

fn gstreamer_decodes_both(protocols: &str) {
    let server = ServerProc::start(&[]);
    let pipeline = format!(
        "rtspsrc location={} protocols={protocols} latency=200 name=src \
         src. ! application/x-rtp,media=video ! rtph264depay ! h264parse ! avdec_h264 ! \
         videoconvert ! fakesink name=vsink silent=false sync=false \
         src. ! application/x-rtp,media=audio ! rtpopusdepay ! opusdec ! \
         audioconvert ! fakesink name=asink silent=false sync=false",
        server.url()
    );
    let mut cmd = Command::new("timeout");
    // INT makes it end its stream (-e); KILL 5 s later if it hangs there. 12 s: on a loaded
    // 2-core machine gst-launch has needed more than 6 s to its first picture.
    cmd.args(["-k", "5", "-s", "INT", "12", "gst-launch-1.0", "-e", "-v"]);
    cmd.args(pipeline.split_whitespace());
    let (_ok, out, err) = run_peer(&mut cmd, Duration::from_secs(60));
    let video = gst_buffers(&out, "vsink");
    let audio = gst_buffers(&out, "asink");
    assert!(
        out.contains("video/x-raw") && out.contains("width=(int)1280"),
        "no decoded 1280-wide video caps over {protocols}: {err}"
    );
    assert!(
        out.contains("audio/x-raw") && out.contains("rate=(int)48000"),
        "no decoded 48 kHz audio caps over {protocols}: {err}"
    );
    // About 10 s of playing time after set-up: expect well over 100 frames and 200 audio
    // buffers.
    assert!(
        video >= 100,
        "only {video} decoded video frames over {protocols}"
    );
    assert!(
        audio >= 200,
        "only {audio} decoded audio buffers over {protocols}"
    );
}

#[test]
fn gstreamer_rtspsrc_decodes_video_and_audio_over_udp() {
    gstreamer_decodes_both("udp");
}

#[test]
fn gstreamer_rtspsrc_decodes_video_and_audio_over_tcp() {
    gstreamer_decodes_both("tcp");
}

#[test]
fn mpv_plays_five_seconds() {
    let (ok, out, err) = against_server(
        "mpv",
        &[
            "--no-config",
            "--vo=null",
            "--ao=null",
            "--length=5",
            "--msg-level=all=info",
            URL,
        ],
        Duration::from_secs(60),
    );
    let all = format!("{out}\n{err}");
    assert!(ok, "mpv failed: {all}");
    assert!(all.contains("h264"), "mpv found no h264 video: {all}");
    assert!(all.contains("opus"), "mpv found no opus audio: {all}");
    assert!(
        !all.contains("Errors when loading file"),
        "mpv could not load: {all}"
    );
}
