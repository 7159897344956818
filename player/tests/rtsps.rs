//! The headless player over `rtsps://` against livecast-server (in process, Digest
//! authentication on, a self-signed certificate): it plays with credentials and remembers the
//! certificate; after the server comes back with another certificate it refuses to play, naming
//! both fingerprints, until told to accept the new one; with `--tls-ca` it plays only what that
//! CA signed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use livecast_net::tls::ServerTls;
use livecast_proto::rtsp::server::{AuthConfig, Roles, User, REALM};
use livecast_server::rtsp_server::RtspConfig;
use net_common::LivecastServer;

mod net_common;

/// A server with the user `viewer` (password `pw`) and RTSPS on `tls_addr` with a newly
/// generated certificate (also written to `cert_file`); returns the server, the RTSPS address
/// and the certificate's fingerprint.
fn start_server(
    tls_addr: SocketAddr,
    cert_file: &Path,
) -> (
    LivecastServer,
    SocketAddr,
    livecast_proto::trust::Fingerprint,
) {
    let rtsp = RtspConfig {
        auth: Some(AuthConfig::new(vec![User::with_password(
            "viewer",
            "pw",
            Roles::READ,
            REALM,
        )])),
        ..RtspConfig::default()
    };
    let mut server = LivecastServer::start_with(0, rtsp);
    let (cert, key) = livecast_server::tls::generate().expect("a certificate");
    std::fs::write(cert_file, &cert).expect("the certificate, for --tls-ca");
    let tls = ServerTls::from_pem(cert.as_bytes(), key.as_bytes()).expect("usable");
    let secure = server.serve_tls(tls_addr, tls.config);
    (server, secure, tls.fingerprint)
}

/// Runs the headless player on `url` for 3 s with the data folder in `data_home`: whether it
/// succeeded, its report, and what it wrote on standard error.
fn play(url: &str, data_home: &Path, extra: &[&str]) -> (bool, Option<serde_json::Value>, String) {
    let json = data_home.join("stats.json");
    let _ = std::fs::remove_file(&json);
    let pw = data_home.join("password");
    std::fs::write(&pw, "pw\n").expect("password file");
    let out = Command::new(env!("CARGO_BIN_EXE_livecast-player"))
        .args([
            "--headless",
            "--no-audio",
            "--duration",
            "3",
            "--user",
            "viewer",
        ])
        .arg("--password-file")
        .arg(&pw)
        .arg("--stats-json")
        .arg(&json)
        .args(extra)
        .arg(url)
        .env("XDG_DATA_HOME", data_home)
        .stdin(Stdio::null())
        .output()
        .expect("the player binary was built by cargo for this test");
    let report = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    (
        out.status.success(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn frames(report: &Option<serde_json::Value>) -> u64 {
    report
        .as_ref()
        .and_then(|r| r["video"]["frames_decoded"].as_u64())
        .unwrap_or(0)
}

#[test]
fn plays_rtsps_with_credentials_and_refuses_a_changed_certificate() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let first_pem = data.path().join("first.pem");
    let second_pem = data.path().join("second.pem");
    let (mut server, addr, first) = start_server("127.0.0.1:0".parse().expect("addr"), &first_pem);
    let url = format!("rtsps://127.0.0.1:{}/live", addr.port());
    let (ok, report, err) = play(&url, data.path(), &[]);
    assert!(ok && frames(&report) >= 45, "{report:?} {err}");
    // The description offers SRTP keys: media as SRTP over UDP.
    assert_eq!(report.as_ref().unwrap()["rtp"]["srtp"], true);
    let known = data.path().join("livecast/known_hosts");
    let key = format!("127.0.0.1:{}", addr.port());
    assert!(
        std::fs::read_to_string(&known)
            .expect("the fingerprint was kept")
            .contains(&format!("\n{key} {first}\n")),
        "known_hosts"
    );
    server.stop();

    // The same address, another certificate: refused at once, loudly, nothing played.
    let (mut server, _, second) = start_server(addr, &second_pem);
    let (ok, report, err) = play(&url, data.path(), &[]);
    assert!(!ok, "the player refused: {err}");
    assert_eq!(frames(&report), 0);
    let last = err.lines().rev().take(4).collect::<Vec<_>>();
    let expected = format!(
        "livecast-player: REFUSED: the certificate of {key} has CHANGED. Someone may be \
         intercepting the connection, or the server has a new certificate.\n  trusted:   \
         {first}\n  presented: {second}\nIf the server's owner confirms the new fingerprint \
         (livecast-server prints it at start), accept it with --accept-new-fingerprint (it \
         replaces {key} in {})",
        known.display()
    );
    let said: Vec<&str> = last.into_iter().rev().collect();
    assert_eq!(said.join("\n"), format!("{expected}."));

    // Accepted: it plays, and the new fingerprint replaces the old one.
    let (ok, report, err) = play(&url, data.path(), &["--accept-new-fingerprint"]);
    assert!(ok && frames(&report) >= 45, "{report:?} {err}");
    let text = std::fs::read_to_string(&known).expect("known_hosts");
    assert!(text.contains(&format!("\n{key} {second}\n")), "{text}");
    assert!(!text.contains(&first.to_string()), "{text}");

    // --tls-ca: the certificate must be signed by the CA given (here: itself), pins aside.
    let ca = |f: &Path| format!("--tls-ca={}", f.display());
    let (ok, report, err) = play(&url, data.path(), &[&ca(&second_pem)]);
    assert!(ok && frames(&report) >= 45, "{report:?} {err}");
    let (ok, report, err) = play(&url, data.path(), &[&ca(&first_pem)]);
    assert!(!ok && frames(&report) == 0, "{err}");
    assert!(
        err.contains(&format!(
            "the certificate of {key} is not trusted ({})",
            first_pem.display()
        )),
        "{err}"
    );
    server.stop();
}
