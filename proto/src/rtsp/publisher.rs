//! Publishing a stream into another RTSP server (a relay such as MediaMTX, gst-rtsp-server in
//! RECORD mode, ffmpeg's listener or another Livecast): the client side of RFC 2326 §10.3
//! ANNOUNCE, §10.4 SETUP with `mode=record` and §10.11 RECORD, Sans-IO.
//!
//! One [`Publisher`] per relay URL. The exchange is
//! `OPTIONS`, `ANNOUNCE` (the SDP), one `SETUP` per media section (`RTP/AVP/TCP;interleaved=`
//! or `RTP/AVP;client_port=`, always with `mode=record`), then `RECORD`; after its 200 the
//! shell is told where each track's packets go ([`PublishEvent::Recording`]) and sends them.
//! While recording, an `OPTIONS` every half session time-out keeps the session alive.
//!
//! Authentication (RFC 2326 §12.5): a 401 is answered once per connection with the
//! credentials of [`PublisherConfig::credentials`] or of the URL: Digest (SHA-256 when offered,
//! else MD5, RFC 7616) or, when the relay offers only Basic, Basic (RFC 7617: the password
//! crosses the network in clear, which the relay chose).
//!
//! Whatever goes wrong (connection refused or lost, a refusal, wrong credentials, a request
//! left unanswered for [`PublisherConfig::request_timeout`]) ends the attempt with
//! [`PublishEvent::Retrying`], which says why and when the next attempt starts: the wait
//! doubles from [`PublisherConfig::backoff_min`] to [`PublisherConfig::backoff_max`] and is back
//! at its minimum once an attempt has recorded. A relay may be restarted or have its
//! configuration fixed at any time, so nothing is final but [`Input::Stop`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::auth::{preferred_challenge, Authorization, DigestCredentials, WwwAuthenticate};
use super::client::Credentials;
use super::headers::{CSeq, Header, Session, Transport, TransportProfile, TransportSpec};
use super::message::{Method, Request, Response};
use super::url::{resolve, RtspUrl};
use crate::sdp::SessionDescription;

/// How the packets travel to the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishTransport {
    /// Interleaved in the RTSP connection (RFC 2326 §10.12): passes NATs and firewalls, never
    /// loses a packet; what MediaMTX-class relays are usually fed with.
    Tcp,
    /// One RTP/RTCP UDP port pair per track, sent from the ports named in
    /// [`Publisher::new`].
    Udp,
}

/// Settings of a [`Publisher`].
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    pub transport: PublishTransport,
    /// Sent as `User-Agent` with every request.
    pub user_agent: String,
    /// User name and password; `None`: those of the URL, if any.
    pub credentials: Option<Credentials>,
    /// How long a request may wait for its response.
    pub request_timeout: Duration,
    /// The first wait before connecting again.
    pub backoff_min: Duration,
    /// The longest wait before connecting again.
    pub backoff_max: Duration,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            transport: PublishTransport::Tcp,
            user_agent: "livecast".into(),
            credentials: None,
            request_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Where one track's packets go once recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishLink {
    /// Interleaved channels on the RTSP connection.
    Tcp { rtp: u8, rtcp: u8 },
    /// The relay's UDP ports (on the address the RTSP connection goes to).
    Udp { rtp: u16, rtcp: u16 },
}

/// What happened, for the shell to act on and to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishEvent {
    /// Connecting, for the `attempt`-th time (1 the first).
    Connecting { attempt: u32 },
    /// The relay records: send each media section's packets (SDP order) as `links` says.
    Recording { links: Vec<PublishLink> },
    /// The attempt ended (stop sending if recording); the next starts after `after`.
    Retrying { reason: String, after: Duration },
    /// [`Input::Stop`] was handled: the session was torn down (or there was none).
    Stopped,
}

/// What the shell feeds in.
#[derive(Clone, Debug)]
pub enum Input {
    /// The TCP (or TLS) connection asked for by [`Output::Connect`] is up.
    Connected { now: Instant },
    /// It could not be made.
    ConnectFailed { now: Instant, reason: String },
    /// A response arrived on the connection.
    Response { now: Instant, response: Response },
    /// The relay sent a request (answered 501, as the relay has nothing to ask a publisher).
    Request { now: Instant, request: Request },
    /// The connection closed or failed.
    ConnectionLost { now: Instant, reason: String },
    /// The time given by the last [`Output::Timeout`] has come.
    Timeout(Instant),
    /// Tear down and end.
    Stop { now: Instant },
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Open a connection to `host:port` of the URL.
    Connect {
        host: String,
        port: u16,
    },
    /// Close the connection.
    Disconnect,
    /// Send this request.
    Transmit(Request),
    /// Send this response to a request of the relay.
    Respond(Response),
    Event(PublishEvent),
    /// Feed [`Input::Timeout`] at this time (the latest one given counts).
    Timeout(Instant),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Waiting until `until` before connecting.
    Waiting {
        until: Instant,
    },
    Connecting,
    Options,
    Announce,
    Setup {
        media: usize,
    },
    Record,
    Recording {
        next_keepalive: Instant,
    },
    TearingDown,
    Stopped,
}

/// The client side of publishing to one relay. See the module documentation.
pub struct Publisher {
    cfg: PublisherConfig,
    url: RtspUrl,
    /// The SDP sent with ANNOUNCE, and the SETUP URL of each media section.
    sdp: String,
    setup_urls: Vec<String>,
    /// Client ports per media section for UDP.
    udp_ports: Vec<(u16, u16)>,
    credentials: Option<Credentials>,
    step: Step,
    attempt: u32,
    backoff: Duration,
    cseq: u32,
    /// CSeq and deadline of the request the current step waits for.
    awaiting: Option<(u32, Instant, Request)>,
    /// The challenge of this connection, answered in every later request.
    challenge: Option<WwwAuthenticate>,
    session: Option<Session>,
    links: Vec<PublishLink>,
    nonce_seed: u64,
    out: VecDeque<Output>,
}

/// Why a [`Publisher`] cannot be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishSetupError(pub String);

impl std::fmt::Display for PublishSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PublishSetupError {}

impl Publisher {
    /// A publisher of `sdp` to `url`, which starts connecting at once. For
    /// [`PublishTransport::Udp`], `udp_ports` names the client port pair each media section's
    /// packets are sent from (one per media section, SDP order). `seed` makes the Digest
    /// client nonces.
    ///
    /// # Errors
    /// A URL that is not `rtsp://`, an SDP without media, or missing UDP ports.
    pub fn new(
        cfg: PublisherConfig,
        url: &str,
        sdp: &SessionDescription,
        udp_ports: Vec<(u16, u16)>,
        now: Instant,
        seed: u64,
    ) -> Result<Self, PublishSetupError> {
        let url = RtspUrl::parse(url).map_err(|e| PublishSetupError(e.0))?;
        if sdp.media.is_empty() {
            return Err(PublishSetupError("nothing to publish: no media".into()));
        }
        if cfg.transport == PublishTransport::Udp && udp_ports.len() != sdp.media.len() {
            return Err(PublishSetupError(format!(
                "UDP publishing needs a port pair per track ({} tracks, {} pairs)",
                sdp.media.len(),
                udp_ports.len()
            )));
        }
        let setup_urls = sdp
            .media
            .iter()
            .enumerate()
            .map(|(i, m)| match m.control() {
                Some(c) => resolve(&url.full, c),
                None => resolve(&url.full, &format!("trackID={i}")),
            })
            .collect();
        let credentials = cfg
            .credentials
            .clone()
            .or_else(|| url.userinfo.as_deref().and_then(Credentials::from_userinfo));
        let mut p = Publisher {
            backoff: cfg.backoff_min,
            cfg,
            url,
            sdp: sdp.to_string(),
            setup_urls,
            udp_ports,
            credentials,
            step: Step::Waiting { until: now },
            attempt: 0,
            cseq: 0,
            awaiting: None,
            challenge: None,
            session: None,
            links: Vec::new(),
            nonce_seed: seed,
            out: VecDeque::new(),
        };
        p.connect();
        Ok(p)
    }

    /// The relay's URL without credentials, for log lines.
    pub fn url(&self) -> &str {
        &self.url.full
    }

    /// Whether the relay records what is sent now.
    pub fn is_recording(&self) -> bool {
        matches!(self.step, Step::Recording { .. })
    }

    /// Whether [`Input::Stop`] has been carried out.
    pub fn is_stopped(&self) -> bool {
        self.step == Step::Stopped
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn handle_input(&mut self, input: Input) {
        match input {
            Input::Connected { now } => {
                if self.step == Step::Connecting {
                    self.step = Step::Options;
                    let req = Request::new(Method::Options, self.url.full.as_str());
                    self.send_blocking(req, now);
                }
            }
            Input::ConnectFailed { now, reason } => {
                if self.step == Step::Connecting {
                    self.retry(format!("cannot connect: {reason}"), now);
                }
            }
            Input::ConnectionLost { now, reason } => match self.step {
                Step::Waiting { .. } | Step::Stopped => {}
                Step::TearingDown => self.stopped(),
                _ => self.retry(format!("connection lost: {reason}"), now),
            },
            Input::Response { now, response } => self.on_response(response, now),
            Input::Request { request, .. } => {
                let mut resp = Response::new(super::message::StatusCode(501));
                if let Ok(Some(c)) = request.cseq() {
                    resp.headers.set_typed(&CSeq(c));
                }
                self.out.push_back(Output::Respond(resp));
            }
            Input::Timeout(now) => self.on_timeout(now),
            Input::Stop { now } => self.stop(now),
        }
    }

    fn stop(&mut self, now: Instant) {
        match self.step {
            Step::Stopped | Step::TearingDown => {}
            Step::Waiting { .. } | Step::Connecting => self.stopped(),
            _ => {
                if self.session.is_some() {
                    self.step = Step::TearingDown;
                    let req = Request::new(Method::Teardown, self.url.full.as_str());
                    self.send_blocking(req, now);
                } else {
                    self.out.push_back(Output::Disconnect);
                    self.stopped();
                }
            }
        }
    }

    fn stopped(&mut self) {
        self.step = Step::Stopped;
        self.awaiting = None;
        self.out.push_back(Output::Event(PublishEvent::Stopped));
    }

    fn connect(&mut self) {
        self.attempt += 1;
        self.step = Step::Connecting;
        // CSeq counts per connection (RFC 2326 §12.17).
        self.cseq = 0;
        self.challenge = None;
        self.session = None;
        self.awaiting = None;
        self.links.clear();
        self.out.push_back(Output::Event(PublishEvent::Connecting {
            attempt: self.attempt,
        }));
        self.out.push_back(Output::Connect {
            host: self.url.host.clone(),
            port: self.url.port,
        });
    }

    /// Ends this attempt: disconnect, and connect again after the backoff.
    fn retry(&mut self, reason: String, now: Instant) {
        if !matches!(self.step, Step::Connecting) {
            self.out.push_back(Output::Disconnect);
        }
        let after = self.backoff;
        self.backoff = (self.backoff * 2).min(self.cfg.backoff_max);
        self.awaiting = None;
        self.session = None;
        self.step = Step::Waiting { until: now + after };
        self.out
            .push_back(Output::Event(PublishEvent::Retrying { reason, after }));
        self.out.push_back(Output::Timeout(now + after));
    }

    fn on_timeout(&mut self, now: Instant) {
        match self.step {
            Step::Waiting { until } if now >= until => self.connect(),
            Step::Recording { next_keepalive } if now >= next_keepalive => {
                let req = Request::new(Method::Options, self.url.full.as_str());
                self.send(req);
                let next = now + self.keepalive_interval();
                self.step = Step::Recording {
                    next_keepalive: next,
                };
                self.out.push_back(Output::Timeout(next));
            }
            _ => {
                if let Some((_, deadline, req)) = &self.awaiting {
                    if now >= *deadline {
                        let what = format!("{} {}", req.method, req.uri);
                        if self.step == Step::TearingDown {
                            self.out.push_back(Output::Disconnect);
                            return self.stopped();
                        }
                        self.retry(format!("no answer to {what}"), now);
                    }
                }
            }
        }
    }

    /// Half the session time-out the relay announced (RFC 2326 §12.37; 60 s if none).
    fn keepalive_interval(&self) -> Duration {
        let secs = self
            .session
            .as_ref()
            .and_then(|s| s.timeout)
            .unwrap_or(60)
            .max(2);
        Duration::from_secs(u64::from(secs) / 2)
    }

    /// Numbers `req`, adds the session, our name and the credentials, and queues it.
    fn send(&mut self, mut req: Request) -> u32 {
        self.cseq = self.cseq.wrapping_add(1);
        req.headers.set_typed(&CSeq(self.cseq));
        req.headers.set("User-Agent", self.cfg.user_agent.as_str());
        if let Some(s) = &self.session {
            req.headers.set(Session::NAME, s.id.as_str());
        }
        if let (Some(ch), Some(cr)) = (&self.challenge, &self.credentials) {
            let auth = match ch {
                WwwAuthenticate::Digest(d) => {
                    self.nonce_seed = self
                        .nonce_seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let cnonce = format!("{:016x}", self.nonce_seed);
                    let method = req.method.as_str().to_owned();
                    DigestCredentials::answer(d, &cr.user, &cr.password, &method, &req.uri, &cnonce)
                        .map(Authorization::Digest)
                }
                WwwAuthenticate::Basic { .. } => Some(Authorization::Basic {
                    username: cr.user.clone(),
                    password: cr.password.clone(),
                }),
                WwwAuthenticate::Other { .. } => None,
            };
            if let Some(a) = auth {
                req.headers.set(Authorization::NAME, a.to_value());
            }
        }
        self.out.push_back(Output::Transmit(req));
        self.cseq
    }

    fn send_blocking(&mut self, req: Request, now: Instant) {
        let cseq = self.send(req.clone());
        let deadline = now + self.cfg.request_timeout;
        self.awaiting = Some((cseq, deadline, req));
        self.out.push_back(Output::Timeout(deadline));
    }

    fn on_response(&mut self, resp: Response, now: Instant) {
        let Some((cseq, _, req)) = self.awaiting.clone() else {
            return;
        };
        if resp.cseq().ok().flatten() != Some(cseq) {
            return;
        }
        self.awaiting = None;
        let what = format!("{}", req.method);
        if resp.status.0 == 401 {
            return self.on_unauthorized(&resp, req, now);
        }
        if self.step == Step::TearingDown {
            self.out.push_back(Output::Disconnect);
            return self.stopped();
        }
        if !resp.status.is_success() {
            // OPTIONS is a courtesy: a relay may not implement it.
            if self.step != Step::Options {
                let why = match resp.status.0 {
                    403 => "forbidden (does the user have the publish right?)".to_owned(),
                    453 => "the path already has a publisher".to_owned(),
                    _ => String::new(),
                };
                let reason = format!(
                    "{what} refused: {} {}{}{why}",
                    resp.status.0,
                    resp.reason,
                    if why.is_empty() { "" } else { ": " }
                );
                return self.retry(reason, now);
            }
        }
        match self.step {
            Step::Options => {
                self.step = Step::Announce;
                let req = Request::new(Method::Announce, self.url.full.as_str())
                    .body("application/sdp", self.sdp.clone().into_bytes());
                self.send_blocking(req, now);
            }
            Step::Announce => self.setup(0, now),
            Step::Setup { media } => {
                match resp.headers.get_typed::<Session>() {
                    Ok(Some(s)) => self.session = Some(s),
                    Ok(None) if self.session.is_some() => {}
                    _ => return self.retry("SETUP: the answer has no Session".into(), now),
                }
                let spec = resp
                    .headers
                    .get_typed::<Transport>()
                    .ok()
                    .flatten()
                    .and_then(|t| t.0.into_iter().next());
                let link = match (self.cfg.transport, spec) {
                    (PublishTransport::Tcp, spec) => {
                        let ours = tcp_channels(media);
                        let (rtp, rtcp) = spec.and_then(|s| s.interleaved).unwrap_or(ours);
                        PublishLink::Tcp { rtp, rtcp }
                    }
                    (
                        PublishTransport::Udp,
                        Some(TransportSpec {
                            server_port: Some((rtp, rtcp)),
                            ..
                        }),
                    ) => PublishLink::Udp { rtp, rtcp },
                    (PublishTransport::Udp, _) => {
                        return self.retry(
                            "SETUP: the relay named no server_port for UDP (try TCP)".into(),
                            now,
                        )
                    }
                };
                self.links.push(link);
                if media + 1 < self.setup_urls.len() {
                    self.setup(media + 1, now);
                } else {
                    self.step = Step::Record;
                    let req = Request::new(Method::Record, self.url.full.as_str())
                        .header("Range", "npt=0.000-");
                    self.send_blocking(req, now);
                }
            }
            Step::Record => {
                self.backoff = self.cfg.backoff_min;
                let next = now + self.keepalive_interval();
                self.step = Step::Recording {
                    next_keepalive: next,
                };
                self.out.push_back(Output::Event(PublishEvent::Recording {
                    links: self.links.clone(),
                }));
                self.out.push_back(Output::Timeout(next));
            }
            _ => {}
        }
    }

    fn setup(&mut self, media: usize, now: Instant) {
        self.step = Step::Setup { media };
        let mut spec = match self.cfg.transport {
            PublishTransport::Tcp => {
                let mut s = TransportSpec::new(TransportProfile::RtpAvpTcp);
                s.interleaved = Some(tcp_channels(media));
                s
            }
            PublishTransport::Udp => {
                let mut s = TransportSpec::new(TransportProfile::RtpAvp);
                s.client_port = Some(self.udp_ports[media]);
                s
            }
        };
        spec.mode = Some("record".into());
        let req = Request::new(Method::Setup, self.setup_urls[media].as_str())
            .typed(&Transport(vec![spec]));
        self.send_blocking(req, now);
    }

    /// A 401: answer its challenge (once per connection, or again for a stale nonce), else
    /// give up this attempt saying what is wrong.
    fn on_unauthorized(&mut self, resp: &Response, mut req: Request, now: Instant) {
        let what = format!("{}", req.method);
        if self.credentials.is_none() {
            return self.retry(
                format!(
                    "{what}: the relay wants a user name and password (401): put them in the \
                     URL (rtsp://USER:PASSWORD@HOST:PORT/PATH)"
                ),
                now,
            );
        }
        let values = || resp.headers.get_all(WwwAuthenticate::NAME);
        let challenge = match preferred_challenge(values()) {
            Some(d) => Some(WwwAuthenticate::Digest(d)),
            None => values()
                .filter_map(|v| WwwAuthenticate::parse(v).ok())
                .find(|c| matches!(c, WwwAuthenticate::Basic { .. })),
        };
        let Some(challenge) = challenge else {
            return self.retry(
                format!("{what}: the relay asks for an authentication scheme we do not speak"),
                now,
            );
        };
        let stale = matches!(&challenge, WwwAuthenticate::Digest(d) if d.stale);
        if self.challenge.is_some() && !stale {
            let user = self.credentials.as_ref().map_or("", |c| c.user.as_str());
            return self.retry(
                format!(
                    "{what}: the relay refused user {user:?} (401): wrong user name or password"
                ),
                now,
            );
        }
        self.challenge = Some(challenge);
        req.headers.remove(Authorization::NAME);
        req.headers.remove(CSeq::NAME);
        self.send_blocking(req, now);
    }
}

/// The interleaved channels asked for media section `i`.
fn tcp_channels(i: usize) -> (u8, u8) {
    let c = u8::try_from(2 * i).unwrap_or(254);
    (c, c.saturating_add(1))
}

#[cfg(test)]
mod tests;
