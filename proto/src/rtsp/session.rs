//! Server-side RTSP session state machine (RFC 2326 appendix A.1), as plain logic.
//!
//! A session is created by the first successful SETUP (so it starts in [`State::Init`] and moves
//! to [`State::Ready`]); it lives until TEARDOWN or until no keep-alive (any RTSP request carrying
//! the session, or an RTCP receiver report from the client) arrives within its timeout.
//!
//! The server asks [`ServerSession::next_state`] whether a method is valid before acting on it
//! (an invalid one is answered `455 Method Not Valid in This State`), and calls
//! [`ServerSession::commit`] only when it has acted successfully, so a failed SETUP or PLAY
//! leaves the state as it was. Time is always an argument: nothing here reads a clock.

use std::time::{Duration, Instant};

use super::Method;

/// The states of RFC 2326 A.1. A session either plays (a viewer: Playing) or records (a
/// publisher: Recording), never both: which is fixed when it is created
/// ([`ServerSession::new_publisher`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// SETUP has not completed yet (or TEARDOWN was received).
    Init,
    /// At least one track is set up; media is not flowing.
    Ready,
    /// Media is flowing to the client.
    Playing,
    /// Media is flowing from the client (a publisher after RECORD).
    Recording,
}

/// Why a method is not valid now; the server answers `455 Method Not Valid in This State`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateError {
    pub state: State,
    pub method: Method,
    /// The session publishes (its valid methods differ from a viewer's).
    pub publisher: bool,
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is not valid in state {:?}",
            self.method.as_str(),
            self.state
        )
    }
}

impl std::error::Error for StateError {}

/// Protocol state of one RTSP session on the server: state, identity and keep-alive deadline.
#[derive(Clone, Debug)]
pub struct ServerSession {
    id: String,
    state: State,
    timeout: Duration,
    last_activity: Instant,
    publisher: bool,
}

impl ServerSession {
    /// A new session (created by a SETUP being handled at `now`), in [`State::Init`] until the
    /// SETUP is committed.
    pub fn new(id: impl Into<String>, timeout: Duration, now: Instant) -> Self {
        Self {
            id: id.into(),
            state: State::Init,
            timeout,
            last_activity: now,
            publisher: false,
        }
    }

    /// A new publishing session (created by a SETUP with `mode=record`): it records instead
    /// of playing.
    pub fn new_publisher(id: impl Into<String>, timeout: Duration, now: Instant) -> Self {
        Self {
            publisher: true,
            ..Self::new(id, timeout, now)
        }
    }

    /// Whether the session publishes (RECORD) rather than plays.
    pub fn is_publisher(&self) -> bool {
        self.publisher
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The timeout announced in the `Session` header (`;timeout=`), in seconds.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The state `method` would lead to, or why it is not valid now (RFC 2326 table A.1).
    /// Methods that do not change state (OPTIONS, DESCRIBE, GET/SET_PARAMETER) are valid in
    /// every state and keep it. A viewer never records, a publisher never plays; a publisher
    /// sets up all its tracks before RECORD (SETUP while recording is not valid) and has no
    /// PAUSE.
    pub fn next_state(&self, method: &Method) -> Result<State, StateError> {
        use State::*;
        let next = match (self.publisher, self.state, method) {
            (false, Init | Ready, Method::Setup) => Some(Ready),
            (false, Playing, Method::Setup) => Some(Playing),
            (false, Ready | Playing, Method::Play) => Some(Playing),
            (false, Playing, Method::Pause) => Some(Ready),
            (true, Init | Ready, Method::Setup) => Some(Ready),
            (true, Ready | Recording, Method::Record) => Some(Recording),
            (_, _, Method::Teardown) => Some(Init),
            (
                _,
                s,
                Method::Options | Method::Describe | Method::GetParameter | Method::SetParameter,
            ) => Some(s),
            _ => None,
        };
        next.ok_or_else(|| StateError {
            state: self.state,
            method: method.clone(),
            publisher: self.publisher,
        })
    }

    /// Applies a transition the server has carried out, at `now` (which also counts as
    /// keep-alive).
    pub fn commit(&mut self, next: State, now: Instant) {
        self.state = next;
        self.keepalive(now);
    }

    /// Records liveness (an RTSP request with this session, or an RTCP report from the client).
    pub fn keepalive(&mut self, now: Instant) {
        if now > self.last_activity {
            self.last_activity = now;
        }
    }

    /// When the session expires unless a keep-alive arrives first.
    pub fn deadline(&self) -> Instant {
        self.last_activity + self.timeout
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.deadline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(now: Instant) -> ServerSession {
        ServerSession::new("a1b2c3", Duration::from_secs(60), now)
    }

    #[test]
    fn follows_rfc2326_table_a1() {
        let t0 = Instant::now();
        let mut s = session(t0);
        // INIT: only SETUP and TEARDOWN (plus the stateless methods) are valid.
        assert_eq!(s.next_state(&Method::Play).unwrap_err().state, State::Init);
        assert!(s.next_state(&Method::Pause).is_err());
        assert_eq!(s.next_state(&Method::GetParameter), Ok(State::Init));
        let next = s.next_state(&Method::Setup).unwrap();
        s.commit(next, t0);
        assert_eq!(s.state(), State::Ready);
        // READY: PAUSE is not valid; PLAY is.
        assert!(s.next_state(&Method::Pause).is_err());
        assert_eq!(s.next_state(&Method::Setup), Ok(State::Ready));
        s.commit(s.next_state(&Method::Play).unwrap(), t0);
        assert_eq!(s.state(), State::Playing);
        // PLAYING: PLAY again is fine, SETUP keeps playing, PAUSE goes to READY.
        assert_eq!(s.next_state(&Method::Play), Ok(State::Playing));
        assert_eq!(s.next_state(&Method::Setup), Ok(State::Playing));
        s.commit(s.next_state(&Method::Pause).unwrap(), t0);
        assert_eq!(s.state(), State::Ready);
        s.commit(s.next_state(&Method::Teardown).unwrap(), t0);
        assert_eq!(s.state(), State::Init);
        // Unknown and recording methods are never valid for a play-only server.
        assert!(s.next_state(&Method::Record).is_err());
        assert!(s.next_state(&Method::Extension("FOO".into())).is_err());
    }

    #[test]
    fn a_publisher_sets_up_then_records_and_never_plays() {
        let t0 = Instant::now();
        let mut s = ServerSession::new_publisher("p1", Duration::from_secs(60), t0);
        assert!(s.is_publisher());
        assert_eq!(
            s.next_state(&Method::Record),
            Err(StateError {
                state: State::Init,
                method: Method::Record,
                publisher: true,
            })
        );
        s.commit(s.next_state(&Method::Setup).unwrap(), t0);
        assert_eq!(s.next_state(&Method::Setup), Ok(State::Ready));
        assert!(s.next_state(&Method::Play).is_err());
        s.commit(s.next_state(&Method::Record).unwrap(), t0);
        assert_eq!(s.state(), State::Recording);
        assert_eq!(s.next_state(&Method::Record), Ok(State::Recording));
        assert!(s.next_state(&Method::Setup).is_err());
        assert!(s.next_state(&Method::Pause).is_err());
        assert!(s.next_state(&Method::Play).is_err());
        assert_eq!(s.next_state(&Method::GetParameter), Ok(State::Recording));
        assert_eq!(s.next_state(&Method::Teardown), Ok(State::Init));
    }

    #[test]
    fn failed_action_leaves_state_unchanged() {
        let t0 = Instant::now();
        let s = session(t0);
        // The server asked, then failed (e.g. 461): nothing was committed.
        let _ = s.next_state(&Method::Setup);
        assert_eq!(s.state(), State::Init);
    }

    #[test]
    fn expires_without_keepalive_and_is_refreshed_by_it() {
        let t0 = Instant::now();
        let mut s = session(t0);
        assert!(!s.is_expired(t0 + Duration::from_secs(59)));
        assert!(s.is_expired(t0 + Duration::from_secs(60)));
        s.keepalive(t0 + Duration::from_secs(50));
        assert!(!s.is_expired(t0 + Duration::from_secs(100)));
        assert!(s.is_expired(t0 + Duration::from_secs(110)));
        // A keep-alive from the past (reordered) never moves the deadline back.
        s.keepalive(t0);
        assert_eq!(s.deadline(), t0 + Duration::from_secs(110));
        // Requests count as keep-alive too.
        s.commit(State::Ready, t0 + Duration::from_secs(200));
        assert_eq!(s.deadline(), t0 + Duration::from_secs(260));
    }
}
