//! Accepting publishers (RFC 2326 §10.3 ANNOUNCE, §10.11 RECORD, §12.39 `mode=record`).
//!
//! The exchange, as ffmpeg (`-f rtsp`), GStreamer's `rtspclientsink` and OBS-class tools run
//! it:
//!
//! ```text
//! ANNOUNCE rtsp://h/cam   (application/sdp)  -> 200          the path is now held
//! SETUP rtsp://h/cam/<control>  Transport: ...;mode=record
//!                                             -> 200 Session  one per m= section
//! RECORD rtsp://h/cam  Session                -> 200          PublishStarted
//! TEARDOWN / connection closed / expiry       ->              PublishEnded
//! ```
//!
//! Rules: our own stream's path cannot be published to (`403`); an SDP that is not
//! `application/sdp` gets `415`, one that does not parse or has no RTP medium `400`; a path
//! held by another publisher (announced or recording) gets `453 Not Enough Bandwidth`, unless
//! [`PublishConfig::takeover`], when the old publisher's session ends
//! ([`EndReason::PublisherGone`]) and its connection closes; a `mode=record` SETUP before
//! ANNOUNCE, on a path announced by another connection, by a viewer's session, or after
//! RECORD, and a PLAY or PAUSE of a publisher, get `455`. Track `i` is the `i`-th `m=`
//! section; its SETUP URL is the path followed by its `a=control` (absolute or relative), or
//! `trackID=i` when it has none. Over UDP every publisher sends to the same ingest ports
//! ([`PublishConfig::ingest_ports_v4`]): the shell tells their packets apart by source address
//! (the client ports of the SETUP). The path is held from ANNOUNCE until the publishing
//! session ends, or, before any SETUP, until the announcing connection closes.

use std::time::Instant;

use super::access::Need;
use super::{
    no_such_session, setup_headers, unicast_sink, url, ClientId, ConnId, EndReason, Fail,
    MediaSink, Output, Retransmission, Server, ServerEvent, Setup, State,
};
use super::{Target, TrackConfig};
use crate::rtsp::headers::{ContentType, Transport, TransportSpec};
use crate::rtsp::message::{header_names, Method, Request, Response, StatusCode};
use crate::sdp::{self, Attribute, SessionDescription};

/// Settings for accepting publishers.
#[derive(Clone, Debug, Default)]
pub struct PublishConfig {
    /// A second publisher of a path replaces the first (which is dropped) instead of getting
    /// `453`.
    pub takeover: bool,
    /// The server's UDP ports (RTP, RTCP) that publishers send to, for IPv4 publishers; `None`:
    /// IPv4 publishers can only use interleaved TCP.
    pub ingest_ports_v4: Option<(u16, u16)>,
    /// The same for IPv6 publishers.
    pub ingest_ports_v6: Option<(u16, u16)>,
}

/// A path held by a publisher.
pub(super) struct Announced {
    pub(super) conn: ConnId,
    pub(super) sdp: SessionDescription,
    /// Each track's control, relative to the path (`streamid=0`).
    controls: Vec<String>,
    /// The publishing session, from its first SETUP on.
    pub(super) session: Option<String>,
    /// Once the shell re-serves the path ([`super::Input::PathReady`]).
    ready: Option<Ready>,
}

/// A published path viewers can watch.
struct Ready {
    /// Track `i` of the path is the server's track `first + i`.
    first: usize,
    tracks: Vec<TrackConfig>,
    /// What viewers get for DESCRIBE ([`readers_sdp`]).
    sdp: SessionDescription,
}

/// `b=AS` (kbit/s) of a published video track with NACK whose publisher announced no
/// bandwidth (ffmpeg with `-c copy` announces none). RTCP gets 5 % of it (RFC 3550 §6.2):
/// without any, GStreamer's rtspsrc budgets its RTCP so tightly that its NACKs go out about
/// every 500 ms, too late for its 300 ms jitter buffer; with it they go at once. An
/// overstatement costs nothing (clients only may send RTCP more often).
pub const UNANNOUNCED_VIDEO_KBPS: u32 = 4000;

/// The description viewers of a published path get: the announced one (formats, `rtpmap`,
/// `fmtp` with H.264's `sprop-parameter-sets`, bandwidths) with our control URLs
/// (`trackID=<i>`), no addresses or ports of the publisher, and plain `RTP/AVP`, but
/// `RTP/AVPF` with NACK (and RTX) for the tracks whose [`TrackConfig::nack`] is set (with a
/// bandwidth, [`UNANNOUNCED_VIDEO_KBPS`], if the publisher gave none).
pub fn readers_sdp(announced: &SessionDescription, tracks: &[TrackConfig]) -> SessionDescription {
    let mut sd = announced.clone();
    sd.connection = Some("IN IP4 0.0.0.0".into());
    sd.attributes
        .retain(|a| !matches!(a.name.as_str(), "control" | "sendonly" | "recvonly"));
    sd.attributes.push(Attribute::new("control", "*"));
    for (i, m) in sd.media.iter_mut().enumerate() {
        // The publisher's own feedback and retransmission formats are not ours to offer.
        *m = m.without_feedback();
        m.port = 0;
        m.num_ports = None;
        m.connection = None;
        m.proto = "RTP/AVP".into();
        m.attributes
            .retain(|a| !matches!(a.name.as_str(), "control" | "sendonly" | "recvonly"));
        m.attributes
            .push(Attribute::new("control", format!("trackID={i}")));
        let pt = m.payload_types().first().copied();
        if let (Some(t), Some(pt)) = (tracks.get(i).filter(|t| t.nack), pt) {
            let rtx = t.rtx_payload_type.map(|payload_type| sdp::Rtx {
                payload_type,
                keep_ms: u32::try_from(super::RETRANSMIT_WINDOW.as_millis()).unwrap_or(u32::MAX),
            });
            *m = m.with_feedback(pt, rtx);
            if !m
                .bandwidth
                .iter()
                .any(|(t, _)| t.eq_ignore_ascii_case("AS"))
            {
                m.bandwidth.push(("AS".into(), UNANNOUNCED_VIDEO_KBPS));
            }
        }
    }
    sd
}

/// The role `req` needs when authentication is on.
pub(super) fn need(req: &Request) -> Need {
    match req.method {
        Method::Announce | Method::Record => Need::Publish,
        Method::Setup if is_record_setup(req) => Need::Publish,
        Method::Teardown | Method::GetParameter | Method::SetParameter => Need::Either,
        _ => Need::Read,
    }
}

/// Whether a SETUP asks to record (`mode=record`, `mode="RECORD"`: RFC 2326 §12.39, any case).
pub(super) fn is_record_setup(req: &Request) -> bool {
    req.headers
        .get_typed::<Transport>()
        .ok()
        .flatten()
        .is_some_and(|t| {
            t.0.iter().any(|s| {
                s.mode.as_deref().is_some_and(|m| {
                    m.split(',')
                        .any(|m| m.trim().eq_ignore_ascii_case("record"))
                })
            })
        })
}

fn path_of(uri: &str) -> Result<&str, Fail> {
    url::request_path(uri)
        .map(|p| p.trim_matches('/'))
        .ok_or_else(|| Fail::new(StatusCode::BAD_REQUEST, "bad URI"))
}

/// A track's control relative to `path`: an absolute `rtsp://host/path/x` gives `x`.
fn relative_control(path: &str, control: &str) -> String {
    let c = if control.contains("://") {
        let p = url::request_path(control)
            .unwrap_or(control)
            .trim_matches('/');
        p.strip_prefix(path)
            .map(|r| r.trim_start_matches('/'))
            .unwrap_or(p)
    } else {
        control.trim_matches('/')
    };
    c.to_owned()
}

/// Checks an announced SDP: at least one RTP medium, each with a payload type.
fn check_sdp(path: &str, sd: &SessionDescription) -> Result<Vec<String>, Fail> {
    let bad = |m: String| Fail::new(StatusCode::BAD_REQUEST, m);
    if sd.media.is_empty() {
        return Err(bad("the SDP has no m= section".into()));
    }
    let mut controls = Vec::new();
    for (i, m) in sd.media.iter().enumerate() {
        if !m.proto.to_ascii_uppercase().starts_with("RTP/") {
            return Err(bad(format!(
                "m= section {} ({}) is {}, not RTP",
                i + 1,
                m.media,
                m.proto
            )));
        }
        if !m
            .formats
            .iter()
            .any(|f| f.parse::<u8>().is_ok_and(|pt| pt < 128))
        {
            return Err(bad(format!(
                "m= section {} ({}) has no RTP payload type",
                i + 1,
                m.media
            )));
        }
        let control = match m.control() {
            Some(c) => relative_control(path, c),
            None => format!("trackID={i}"),
        };
        if control.is_empty() || controls.contains(&control) {
            return Err(bad(format!(
                "m= section {} ({}) has no control URL of its own",
                i + 1,
                m.media
            )));
        }
        controls.push(control);
    }
    Ok(controls)
}

impl Server {
    /// The paths publishers hold (announced or recording), with their announced SDP.
    pub fn published_paths(&self) -> impl Iterator<Item = (&str, &SessionDescription)> {
        self.paths.iter().map(|(p, a)| (p.as_str(), &a.sdp))
    }

    pub(super) fn announce(&mut self, req: &Request, conn: ConnId) -> Result<Response, Fail> {
        let path = path_of(&req.uri)?.to_owned();
        if path.is_empty()
            || path == self.cfg.path
            || self.cfg.own_paths.iter().any(|p| p.path == path)
        {
            return Err(Fail::new(
                StatusCode::FORBIDDEN,
                format!(
                    "/{} is this server's own stream; publish to another path",
                    self.cfg.path
                ),
            ));
        }
        let content_type = req
            .headers
            .get_typed::<ContentType>()
            .ok()
            .flatten()
            .map(|c| c.0.to_ascii_lowercase());
        if !content_type.is_some_and(|c| c.starts_with("application/sdp")) {
            return Err(Fail::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "ANNOUNCE needs an application/sdp body",
            ));
        }
        let text = std::str::from_utf8(&req.body)
            .map_err(|_| Fail::new(StatusCode::BAD_REQUEST, "the SDP is not UTF-8"))?;
        let sd = sdp::parse(text)
            .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, format!("bad SDP: {e}")))?;
        let controls = check_sdp(&path, &sd)?;
        if let Some(held) = self.paths.get(&path) {
            let ours = held.conn == conn;
            if ours && held.session.is_some() {
                return Err(Fail::new(
                    StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
                    format!("this connection already publishes /{path}"),
                )
                .with_header(header_names::ALLOW, "OPTIONS, RECORD, TEARDOWN".into()));
            }
            let takeover = self.cfg.publish.as_ref().is_some_and(|p| p.takeover);
            if !ours && !takeover {
                return Err(Fail::new(
                    StatusCode::NOT_ENOUGH_BANDWIDTH,
                    format!("/{path} already has a publisher"),
                ));
            }
            if !ours {
                let old_conn = held.conn;
                if let Some(sid) = held.session.clone() {
                    self.end_session(&sid, EndReason::PublisherGone);
                }
                self.paths.remove(&path);
                self.close_connection(old_conn);
            }
        }
        self.paths.insert(
            path,
            Announced {
                conn,
                sdp: sd,
                controls,
                session: None,
                ready: None,
            },
        );
        Ok(Response::new(StatusCode::OK))
    }

    /// A SETUP with `mode=record`: one track of the path this connection announced.
    pub(super) fn setup_record(
        &mut self,
        req: &Request,
        conn: ConnId,
        now: Instant,
    ) -> Result<Response, Fail> {
        let not_valid = |why: String| {
            Fail::new(StatusCode::METHOD_NOT_VALID_IN_THIS_STATE, why)
                .with_header(header_names::ALLOW, "OPTIONS, ANNOUNCE".into())
        };
        let uri_path = path_of(&req.uri)?.to_owned();
        let Some((path, track)) = self.paths.iter().find_map(|(p, a)| {
            let rest = uri_path.strip_prefix(p.as_str())?.strip_prefix('/')?;
            let i = a.controls.iter().position(|c| c == rest)?;
            Some((p.clone(), i))
        }) else {
            return Err(match self.paths.get(&uri_path) {
                Some(_) => Fail::new(
                    StatusCode::AGGREGATE_OPERATION_NOT_ALLOWED,
                    "SETUP each announced track (its a=control URL), not the stream",
                ),
                None => not_valid(format!(
                    "ANNOUNCE /{uri_path} before SETUP with mode=record"
                )),
            });
        };
        let held = &self.paths[&path];
        if held.conn != conn {
            return Err(not_valid(format!(
                "/{path} was announced on another connection"
            )));
        }
        let (transport, session_hdr) = setup_headers(req)?;
        match (&session_hdr, &held.session) {
            (Some(s), Some(ours)) if s.id == *ours => {
                let entry = self.sessions.get(ours).ok_or_else(no_such_session)?;
                entry.state.next_state(&req.method)?;
            }
            (Some(s), _) => {
                return Err(match self.sessions.get(&s.id) {
                    None => no_such_session(),
                    Some(_) => not_valid(format!("session {} does not publish /{path}", s.id)),
                })
            }
            (None, Some(ours)) => {
                return Err(not_valid(format!(
                    "/{path} is published by session {ours}: send its Session header"
                )))
            }
            (None, None) if self.sessions.len() >= self.cfg.max_sessions => {
                return Err(Fail::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many sessions; try again later",
                ))
            }
            (None, None) => {}
        }
        let (peer, tls) = self
            .conns
            .get(&conn)
            .map(|c| (c.peer, c.tls))
            .ok_or_else(|| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, "no connection"))?;
        let (source, reply) = self.record_transport(track, &transport, conn, peer, tls)?;

        let sid = match held.session.clone() {
            Some(sid) => sid,
            None => {
                let sid = self.new_session(conn, peer, now, Some(path.clone()));
                if let Some(p) = self.paths.get_mut(&path) {
                    p.session = Some(sid.clone());
                }
                sid
            }
        };
        let entry = self.sessions.get_mut(&sid).ok_or_else(no_such_session)?;
        let next = entry.state.next_state(&req.method)?;
        entry.setups.retain(|s| s.track != track);
        entry.setups.push(Setup {
            track,
            sink: source,
            resume_seq: None,
            retransmission: Retransmission::None,
            srtp: None,
        });
        entry.state.commit(next, now);
        if let MediaSink::Udp { rtcp, .. } = source {
            self.rtcp_sources.insert(rtcp, sid.clone());
        }
        Ok(Response::new(StatusCode::OK)
            .typed(&reply)
            .typed(&self.session_header(sid)))
    }

    /// The first transport alternative a publisher can send with: UDP to the ingest ports
    /// of its family, or interleaved.
    fn record_transport(
        &self,
        track: usize,
        transport: &Transport,
        conn: ConnId,
        peer: std::net::SocketAddr,
        tls: bool,
    ) -> Result<(MediaSink, Transport), Fail> {
        let cfg = self.cfg.publish.clone().unwrap_or_default();
        let ports = (cfg.ingest_ports_v4, cfg.ingest_ports_v6);
        // Publishing takes no SRTP: a publisher over TLS sends interleaved.
        for spec in transport.0.iter().filter(|s| !s.profile.is_secure()) {
            let Some((sink, reply)) = unicast_sink(spec, track, conn, peer, tls, ports) else {
                continue;
            };
            let reply = TransportSpec {
                mode: Some("record".into()),
                ..reply
            };
            return Ok((sink, Transport(vec![reply])));
        }
        Err(Fail::new(
            StatusCode::UNSUPPORTED_TRANSPORT,
            "publish with RTP/AVP;unicast;client_port=a-b;mode=record or \
             RTP/AVP/TCP;interleaved=a-b;mode=record",
        ))
    }

    pub(super) fn record(&mut self, req: &Request, now: Instant) -> Result<Response, Fail> {
        let sid = super::session_id(req)?;
        let entry = self.sessions.get_mut(&sid).ok_or_else(no_such_session)?;
        let next = entry.state.next_state(&req.method)?;
        let started = entry.state.state() != State::Recording;
        entry.state.commit(next, now);
        if started {
            let path = entry.publishing.clone().unwrap_or_default();
            let mut tracks: Vec<(usize, MediaSink)> =
                entry.setups.iter().map(|s| (s.track, s.sink)).collect();
            tracks.sort_by_key(|(t, _)| *t);
            let (client, peer) = (entry.client, entry.peer);
            let sdp = self
                .paths
                .get(&path)
                .map(|p| Box::new(p.sdp.clone()))
                .unwrap_or_default();
            self.out
                .push_back(Output::Event(ServerEvent::PublishStarted {
                    path,
                    session: sid.clone(),
                    client,
                    peer,
                    sdp,
                    tracks,
                }));
        }
        Ok(Response::new(StatusCode::OK).typed(&self.session_header(sid)))
    }

    /// The shell serves `path`'s tracks now (see [`super::Input::PathReady`]).
    pub(super) fn path_ready(
        &mut self,
        path: String,
        client: ClientId,
        first: usize,
        tracks: Vec<TrackConfig>,
        added: Vec<sdp::MediaDescription>,
    ) {
        let publisher = |sid: &String| self.sessions.get(sid).map(|s| s.client);
        let entry = self.paths.get(&path).filter(|a| {
            a.ready.is_none() && a.session.as_ref().and_then(publisher) == Some(client)
        });
        let range = first..first + tracks.len();
        let taken = first < self.cfg.tracks.len()
            || self
                .paths
                .values()
                .filter_map(|a| a.ready.as_ref())
                .any(|r| {
                    let theirs = r.first..r.first + r.tracks.len();
                    range.start < theirs.end && theirs.start < range.end
                });
        if entry.is_none() || taken {
            self.out.push_back(Output::Event(ServerEvent::PublishEnded {
                path,
                client,
                reason: EndReason::PublisherGone,
            }));
            return;
        }
        if let Some(a) = self.paths.get_mut(&path) {
            self.next_track = self.next_track.max(range.end);
            let mut served = a.sdp.clone();
            served.media.extend(added);
            a.ready = Some(Ready {
                first,
                sdp: readers_sdp(&served, &tracks),
                tracks,
            });
        }
    }

    /// Our own track `i`, or a track of a published path.
    pub(super) fn track_cfg(&self, i: usize) -> Option<&TrackConfig> {
        self.cfg.tracks.get(i).or_else(|| {
            self.paths.values().find_map(|a| {
                let r = a.ready.as_ref()?;
                r.tracks.get(i.checked_sub(r.first)?)
            })
        })
    }

    /// The number of track `i` in its stream's URLs (`trackID=<n>`).
    pub(super) fn track_number(&self, i: usize) -> usize {
        if i < self.cfg.tracks.len() {
            // A rendition's own track is numbered within its path; a shared one (and every
            // track of the main path) has the same number everywhere.
            return self
                .cfg
                .own_paths
                .iter()
                .find_map(|p| p.tracks.iter().position(|&t| t == i))
                .unwrap_or(i);
        }
        self.paths
            .values()
            .filter_map(|a| a.ready.as_ref())
            .find(|r| (r.first..r.first + r.tracks.len()).contains(&i))
            .map_or(i, |r| i - r.first)
    }

    /// A URI of a published path that viewers may watch: the path, or one of its tracks.
    pub(super) fn published_target(&self, path: &str) -> Option<Target> {
        if self.paths.get(path).is_some_and(|a| a.ready.is_some()) {
            return Some(Target::Aggregate);
        }
        let (p, rest) = path.rsplit_once('/')?;
        let r = self.paths.get(p)?.ready.as_ref()?;
        let n: usize = rest.strip_prefix("trackID=")?.parse().ok()?;
        (n < r.tracks.len()).then_some(Target::Track(r.first + n))
    }

    /// The viewers' description of the published path `uri` names, if it is one.
    pub(super) fn published_sdp(&self, uri: &str) -> Option<&SessionDescription> {
        let path = url::request_path(uri)?.trim_matches('/');
        Some(&self.paths.get(path)?.ready.as_ref()?.sdp)
    }

    /// A track number after every one in use (our own tracks', every served path's): where
    /// the next [`super::Input::PathReady`] may start.
    pub fn next_track(&self) -> usize {
        self.next_track
    }

    /// The publishing session `session` of `path` ended: the path is free again, its viewers'
    /// sessions end, and if it was `recording`, the shell hears of it.
    pub(super) fn unpublish(
        &mut self,
        path: &str,
        session: &str,
        client: ClientId,
        reason: EndReason,
        recording: bool,
    ) {
        if self
            .paths
            .get(path)
            .is_some_and(|p| p.session.as_deref() == Some(session))
        {
            if let Some(r) = self.paths.remove(path).and_then(|a| a.ready) {
                let range = r.first..r.first + r.tracks.len();
                let viewers: Vec<String> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.setups.iter().any(|t| range.contains(&t.track)))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in viewers {
                    self.end_session(&id, EndReason::PublisherGone);
                }
            }
        }
        if !recording {
            return;
        }
        self.out.push_back(Output::Event(ServerEvent::PublishEnded {
            path: path.to_owned(),
            client,
            reason,
        }));
    }
}
