//! `livecast-loadgen`: open N RTSP sessions against a server and report packets, loss, the
//! stream's actual rate, and (given its pid) the server's CPU use, per thread. It also reports
//! where packets were dropped on this machine, from the kernel's counters: at the receiving
//! sockets (its own), in the input backlog, or in UDP as a whole.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use livecast_loadgen::rx::MAX_TRACKS;
use livecast_loadgen::sysstat::{self, SystemCpu, UdpCounters};
use livecast_loadgen::{run_client_on, ClientOptions, TransportKind, UdpReceiver};
use serde::Serialize;

/// Opens N RTSP sessions (UDP by default), receives for a while, and reports what arrived.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Stream URL: rtsp://, or rtsps:// (TLS, any certificate; media as SRTP over UDP,
    /// `RTP/SAVP(F)`, or interleaved in the TLS connection with --tcp).
    #[arg(long, default_value = "rtsp://127.0.0.1:8554/live")]
    url: String,
    /// Number of concurrent sessions.
    #[arg(short = 'n', long, default_value_t = 10)]
    clients: usize,
    /// Seconds of measurement once all sessions are playing.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Use interleaved TCP instead of UDP.
    #[arg(long)]
    tcp: bool,
    /// Milliseconds between session starts (ramp-up).
    #[arg(long, default_value_t = 5)]
    ramp_ms: u64,
    /// Threads reading the UDP sockets.
    #[arg(long, default_value_t = 2)]
    rx_threads: usize,
    /// Sample this process's CPU time, in total and per thread (from /proc), over the window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A name for this run, copied into the summary.
    #[arg(long, default_value = "")]
    label: String,
    /// Write the summary as JSON here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// One track, over the measurement window, per client.
#[derive(Serialize, Debug, Default)]
struct TrackSummary {
    media: String,
    packets_per_s: f64,
    /// Whole RTP packets (header included), as read from the socket.
    kbit_per_s: f64,
    /// Frames (distinct RTP timestamps) per second: for video, compare with the source's rate
    /// to see frames a server dropped without leaving sequence gaps.
    frames_per_s: f64,
    /// Over the whole session (ramp and window), all clients.
    packets: u64,
    lost: i64,
    /// From each client's PLAY response to its first packet of this track (for video: the
    /// start of its first picture), over the clients: median, 95th percentile, maximum.
    first_packet_ms: Option<[f64; 3]>,
    #[serde(skip)]
    first_ms: Vec<f64>,
}

/// Where packets were dropped on this machine, over the whole run (kernel counters).
#[derive(Serialize, Debug, Default)]
struct Drops {
    /// Datagrams dropped at this process's sockets (receive buffer full), at the window's end.
    loadgen_socket_drops: Option<u64>,
    loadgen_sockets: Option<usize>,
    /// Packets dropped in the CPUs' input backlog (`/proc/net/softnet_stat`).
    softnet_dropped: Option<u64>,
    /// `/proc/net/snmp` UDP counters, whole machine (other programs' traffic included).
    udp: Option<UdpCounters>,
}

/// The machine during the window, in cores.
#[derive(Serialize, Debug, Default)]
struct Machine {
    cpus: usize,
    busy: f64,
    cpu: Option<SystemCpu>,
    loadavg: String,
}

#[derive(Serialize, Debug, Default)]
struct Summary {
    label: String,
    url: String,
    clients: usize,
    clients_ok: usize,
    error_count: usize,
    /// The first few.
    errors: Vec<String>,
    packets: u64,
    lost: i64,
    loss_percent: f64,
    window_s: f64,
    tracks: Vec<TrackSummary>,
    server_cpu_seconds_per_second: Option<f64>,
    /// The server's resident memory at the end of the window, and its peak, in MiB.
    server_rss_mib: Option<f64>,
    server_peak_rss_mib: Option<f64>,
    /// Per thread name (threads of one name summed), CPU seconds per second.
    server_threads: BTreeMap<String, f64>,
    loadgen_cpu_seconds_per_second: Option<f64>,
    setup_ms_max: f64,
    first_packet_ms_median: Option<f64>,
    first_packet_ms_max: Option<f64>,
    /// Over the window, one more control connection's OPTIONS every 100 ms: how long the
    /// server took to answer (median, 99th percentile, maximum) and how many were asked.
    control_ms: Option<[f64; 3]>,
    control_requests: usize,
    drops: Drops,
    machine: Machine,
}

/// Each UDP session needs two sockets per track: 500 sessions need ~2 500 descriptors.
fn raise_fd_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    raise_fd_limit();
    let args = Args::parse();
    // RTSP control is light: one async thread. Media is read by the receiver threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let receiver = Arc::new(UdpReceiver::new(args.rx_threads)?);
    let s = rt.block_on(run(&args, receiver))?;
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

/// The median, the `q` quantile (nearest rank) and the maximum of `v` (sorted here); `None`
/// when it is empty.
fn spread(v: &mut [f64], q: f64) -> Option<[f64; 3]> {
    v.sort_by(f64::total_cmp);
    let max = *v.last()?;
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some([at(0.5), at(q), max])
}

/// Asks `OPTIONS` on one more connection every 100 ms for `window`: the server's answer times
/// in ms (a request unanswered for 5 s counts as 5000 ms, and the probe stops).
async fn control_probe(url: String, window: Duration) -> Vec<f64> {
    let mut times = Vec::new();
    let Ok(mut c) = livecast_loadgen::RtspConn::connect(&url).await else {
        return times;
    };
    // Requests name the URL without its credentials.
    let url = livecast_proto::rtsp::RtspUrl::parse(&url).map_or(url, |u| u.full);
    let end = Instant::now() + window;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while Instant::now() < end {
        tick.tick().await;
        let req = livecast_proto::rtsp::Request::new(livecast_proto::rtsp::Method::Options, &url);
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(5), c.request(req)).await {
            Ok(Ok(_)) => times.push(t.elapsed().as_secs_f64() * 1e3),
            _ => {
                times.push(5000.0);
                break;
            }
        }
    }
    times
}

async fn run(args: &Args, receiver: Arc<UdpReceiver>) -> anyhow::Result<Summary> {
    let udp0 = UdpCounters::read();
    let softnet0 = sysstat::softnet_dropped();
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
        duration: ramp + Duration::from_secs_f64(args.duration) + Duration::from_secs(2),
        teardown: true,
    };
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let (o, stop, r) = (opts.clone(), stop_rx.clone(), receiver.clone());
        tasks.push(tokio::spawn(
            async move { run_client_on(&o, stop, &r).await },
        ));
        if i + 1 < args.clients {
            tokio::time::sleep(Duration::from_millis(args.ramp_ms)).await;
        }
    }

    // Measurement window: all sessions playing (the last one's PLAY takes a moment).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = args.server_pid;
    let cpu0 = pid.and_then(sysstat::process_cpu_seconds);
    let thr0 = pid.and_then(sysstat::thread_cpu_seconds);
    let own0 = sysstat::own_cpu_seconds();
    let sys0 = SystemCpu::read();
    let rx0: Vec<(u64, u64)> = (0..MAX_TRACKS).map(|i| receiver.totals().get(i)).collect();
    let fr0: Vec<u64> = (0..MAX_TRACKS)
        .map(|i| receiver.totals().frames(i))
        .collect();
    let t0 = Instant::now();
    let window = Duration::from_secs_f64(args.duration);
    let probe = tokio::spawn(control_probe(args.url.clone(), window));
    tokio::time::sleep(window).await;
    let w = t0.elapsed().as_secs_f64();
    let mut control = probe.await.unwrap_or_default();
    let rx1: Vec<(u64, u64)> = (0..MAX_TRACKS).map(|i| receiver.totals().get(i)).collect();
    let fr1: Vec<u64> = (0..MAX_TRACKS)
        .map(|i| receiver.totals().frames(i))
        .collect();
    let cpu1 = pid.and_then(sysstat::process_cpu_seconds);
    let mem1 = pid.and_then(sysstat::process_memory);
    let thr1 = pid.and_then(sysstat::thread_cpu_seconds);
    let own1 = sysstat::own_cpu_seconds();
    let sys1 = SystemCpu::read();
    // Before the sockets close.
    let sock = sysstat::socket_drops(None);
    let _ = stop_tx.send(true);

    let mut s = Summary {
        label: args.label.clone(),
        url: args.url.clone(),
        clients: args.clients,
        window_s: w,
        ..Default::default()
    };
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        s.server_cpu_seconds_per_second = Some((b - a) / w);
    }
    if let Some((rss, peak)) = mem1 {
        s.server_rss_mib = Some(rss as f64 / 1_048_576.0);
        s.server_peak_rss_mib = Some(peak as f64 / 1_048_576.0);
    }
    if let (Some(a), Some(b)) = (&thr0, &thr1) {
        s.server_threads = sysstat::thread_cpu_rates(a, b, w);
    }
    if let (Some(a), Some(b)) = (own0, own1) {
        s.loadgen_cpu_seconds_per_second = Some((b - a) / w);
    }
    if let (Some(a), Some(b)) = (sys0, sys1) {
        let r = a.rates(&b, w);
        s.machine.busy = r.busy();
        s.machine.cpu = Some(r);
    }
    s.machine.cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    s.machine.loadavg = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    if let Some((d, m)) = sock {
        s.drops.loadgen_socket_drops = Some(d);
        s.drops.loadgen_sockets = Some(m);
    }

    let mut first_ms = Vec::new();
    for t in tasks {
        match t.await? {
            Ok(st) => {
                s.clients_ok += 1;
                s.packets += st.packets();
                s.lost += st.lost();
                s.setup_ms_max = s.setup_ms_max.max(st.setup_ms);
                if let Some(f) = st.first_packet_ms {
                    first_ms.push(f);
                }
                for (i, t) in st.tracks.iter().enumerate() {
                    if s.tracks.len() <= i {
                        s.tracks.push(TrackSummary::default());
                    }
                    let ts = &mut s.tracks[i];
                    ts.media.clone_from(&t.media);
                    ts.packets += t.packets;
                    ts.lost += t.lost.max(0);
                    ts.first_ms.extend(t.first_packet_ms);
                }
            }
            Err(e) => {
                s.error_count += 1;
                if s.errors.len() < 10 {
                    s.errors.push(format!("{e:#}"));
                }
            }
        }
    }
    // Window rates per client (UDP only: interleaved TCP media is not counted by the receiver).
    let n = args.clients.max(1) as f64;
    for (i, ts) in s.tracks.iter_mut().enumerate().take(MAX_TRACKS) {
        let (a, b) = (rx0[i], rx1[i]);
        ts.packets_per_s = (b.0 - a.0) as f64 / w / n;
        ts.kbit_per_s = (b.1 - a.1) as f64 * 8.0 / 1000.0 / w / n;
        ts.frames_per_s = (fr1[i] - fr0[i]) as f64 / w / n;
    }
    for ts in &mut s.tracks {
        ts.first_packet_ms = spread(&mut ts.first_ms, 0.95);
    }
    s.control_requests = control.len();
    s.control_ms = spread(&mut control, 0.99);
    first_ms.sort_by(f64::total_cmp);
    s.first_packet_ms_median = first_ms.get(first_ms.len() / 2).copied();
    s.first_packet_ms_max = first_ms.last().copied();
    let expected = s.packets as f64 + s.lost as f64;
    s.loss_percent = if expected > 0.0 {
        100.0 * s.lost as f64 / expected
    } else {
        0.0
    };
    if let (Some(a), Some(b)) = (udp0, UdpCounters::read()) {
        s.drops.udp = Some(a.delta(&b));
    }
    if let (Some(a), Some(b)) = (softnet0, sysstat::softnet_dropped()) {
        s.drops.softnet_dropped = Some(b.wrapping_sub(a));
    }
    Ok(s)
}
