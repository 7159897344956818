//! What SRTP costs the server per packet: `AES_CM_128_HMAC_SHA1_80` protection of RTP packets
//! of the sizes our H.264 video is cut into, on one core. Run with
//! `cargo run --release -p livecast-proto --example srtp_cost`.

#![allow(clippy::print_stdout)] // a benchmark whose output is its figures

use std::time::Instant;

use livecast_proto::srtp::Context;

fn main() {
    let mut ctx = Context::new(&[7; 16], &[9; 14]);
    for size in [200usize, 1200, 1400] {
        let mut packet = vec![0u8; size];
        packet[0] = 0x80;
        packet[1] = 96;
        packet[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        let n = 200_000u32;
        let start = Instant::now();
        let mut bytes = 0usize;
        for i in 0..n {
            packet[2..4].copy_from_slice(&(i as u16).to_be_bytes());
            bytes += ctx.protect_rtp(&packet).map_or(0, |p| p.len());
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{size:>5}-byte packets: {:.2} µs each, {:.0} packets/s, {:.0} Mbit/s of media per core ({bytes} bytes out)",
            secs * 1e6 / f64::from(n),
            f64::from(n) / secs,
            f64::from(n) * size as f64 * 8.0 / secs / 1e6,
        );
    }
}
