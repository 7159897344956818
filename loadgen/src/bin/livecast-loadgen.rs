//! `livecast-loadgen`: open N RTSP sessions against a server and report packets, loss and the
//! server's CPU use (when given its pid).

use std::time::{Duration, Instant};

use clap::Parser;
use livecast_loadgen::{run_client, ClientOptions, TransportKind};
use serde::Serialize;

/// Opens N RTSP sessions (UDP by default), receives for a while, and reports what arrived.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Stream URL.
    #[arg(long, default_value = "rtsp://127.0.0.1:8554/live")]
    url: String,
    /// Number of concurrent sessions.
    #[arg(short = 'n', long, default_value_t = 10)]
    clients: usize,
    /// Seconds of reception once all sessions are playing.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Use interleaved TCP instead of UDP.
    #[arg(long)]
    tcp: bool,
    /// Milliseconds between session starts (ramp-up).
    #[arg(long, default_value_t = 5)]
    ramp_ms: u64,
    /// Sample this process's CPU time (utime+stime from /proc) over the measurement window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the summary as JSON here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Serialize, Debug, Default)]
struct Summary {
    clients: usize,
    clients_ok: usize,
    errors: Vec<String>,
    packets: u64,
    lost: i64,
    loss_percent: f64,
    server_cpu_seconds_per_second: Option<f64>,
    window_s: f64,
}

/// utime + stime of a process, in seconds (Linux /proc).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// Each UDP session needs two sockets per track: 500 sessions need ~2 500 descriptors.
fn raise_fd_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    raise_fd_limit();
    let args = Args::parse();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ramp = Duration::from_millis(args.ramp_ms * args.clients as u64);
    let opts = ClientOptions {
        url: args.url.clone(),
        transport: if args.tcp {
            TransportKind::Tcp
        } else {
            TransportKind::Udp
        },
        // Each client receives through the ramp plus the window; all overlap for the window.
        duration: ramp + Duration::from_secs_f64(args.duration) + Duration::from_secs(1),
        teardown: true,
    };
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let o = opts.clone();
        let rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move { run_client(&o, rx).await }));
        tokio::time::sleep(Duration::from_millis(args.ramp_ms)).await;
    }
    // Measurement window: all sessions playing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = args.server_pid.and_then(cpu_seconds);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let cpu1 = args.server_pid.and_then(cpu_seconds);
    let window = t0.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let mut s = Summary {
        clients: args.clients,
        window_s: window,
        ..Default::default()
    };
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        s.server_cpu_seconds_per_second = Some((b - a) / window);
    }
    for t in tasks {
        match t.await? {
            Ok(st) => {
                s.clients_ok += 1;
                s.packets += st.packets();
                s.lost += st.lost();
            }
            Err(e) => s.errors.push(format!("{e:#}")),
        }
    }
    let expected = s.packets as f64 + s.lost as f64;
    s.loss_percent = if expected > 0.0 {
        100.0 * s.lost as f64 / expected
    } else {
        0.0
    };
    let json = serde_json::to_string_pretty(&s)?;
    if let Some(p) = &args.json {
        std::fs::write(p, &json)?;
    }
    #[allow(clippy::print_stdout)]
    {
        println!("{json}");
    }
    if s.clients_ok < s.clients {
        anyhow::bail!(
            "{} of {} sessions failed",
            s.clients - s.clients_ok,
            s.clients
        );
    }
    Ok(())
}
