//! Access control for the server state machine: Digest authentication (RFC 2326 §12.5 with
//! RFC 2617 / RFC 7616) against a users table, per-connection nonces, and a per-address budget
//! of failures.
//!
//! - Every request but OPTIONS needs credentials of a user with the role the request needs
//!   ([`Need`]): `read` to watch, `publish` for ANNOUNCE, RECORD and a SETUP with
//!   `mode=record`, either for TEARDOWN and GET/SET_PARAMETER.
//! - A 401 carries two challenges, SHA-256 first and MD5 last (ffmpeg, mpv, GStreamer and
//!   live555 answer the last one, and only MD5; gortsplib answers SHA-256). Both share one
//!   nonce: 128 bits from the state machine's seeded generator, valid only on the connection it
//!   was issued on, and only while used at least once per [`AuthConfig::nonce_lifetime`].
//! - Right credentials on an expired nonce, or on a nonce of another connection (ffmpeg
//!   reconnecting for its TCP fallback keeps the old one), get a fresh challenge with
//!   `stale=TRUE`: the client retries without asking anyone for a password.
//! - Wrong credentials (unknown user, wrong response): 401 after a random delay of up to
//!   [`AuthConfig::max_failure_delay`], then the connection closes; requests on it meanwhile
//!   get nothing. [`AuthConfig::failures_allowed`] failures from one IP address within
//!   [`AuthConfig::failure_window`] lock that address out for [`AuthConfig::lockout`]: every
//!   request from it gets `403` and its connection closes.
//! - Responses are compared in constant time; an unknown user costs the same hashing as a
//!   known one.
//!
//! Not checked: the `uri` of the credentials against the request's (it is hashed, so a
//! response is bound to its method and URI as the client wrote it, and to the connection).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::ConnId;
use crate::rtsp::auth::{ha1, Algorithm, Authorization, DigestChallenge, WwwAuthenticate};
use crate::rtsp::headers::Header;
use crate::rtsp::message::{Method, Request};

/// The realm of every challenge (fixed, so a users file's HA1s stay valid).
pub const REALM: &str = "livecast";

/// What a user may do on the stream path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    /// Watch: DESCRIBE, SETUP, PLAY and the rest.
    pub read: bool,
    /// Publish: ANNOUNCE, SETUP with `mode=record`, RECORD.
    pub publish: bool,
}

impl Roles {
    pub const READ: Roles = Roles {
        read: true,
        publish: false,
    };

    /// `read,publish` style list; unknown names are an error.
    pub fn parse(s: &str) -> Result<Roles, String> {
        let mut r = Roles::default();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "read" => r.read = true,
                "publish" => r.publish = true,
                other => return Err(format!("unknown role {other:?} (read, publish)")),
            }
        }
        Ok(r)
    }
}

impl std::fmt::Display for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = [(self.read, "read"), (self.publish, "publish")]
            .into_iter()
            .filter_map(|(on, n)| on.then_some(n))
            .collect();
        f.write_str(&names.join(","))
    }
}

/// One user: never the password, only the Digest HA1s for [`REALM`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub roles: Roles,
    /// `MD5(name:realm:password)`, lower-case hex.
    pub ha1_md5: String,
    /// `SHA-256(name:realm:password)`, lower-case hex.
    pub ha1_sha256: String,
}

impl User {
    /// A user whose HA1s are computed from `password` in `realm`.
    pub fn with_password(name: &str, password: &str, roles: Roles, realm: &str) -> User {
        let h = |alg| ha1(&alg, name, realm, password).expect("MD5 and SHA-256 are computed");
        User {
            name: name.to_owned(),
            roles,
            ha1_md5: h(Algorithm::Md5),
            ha1_sha256: h(Algorithm::Sha256),
        }
    }

    fn ha1(&self, alg: &Algorithm) -> Option<&str> {
        match alg {
            Algorithm::Md5 => Some(&self.ha1_md5),
            Algorithm::Sha256 => Some(&self.ha1_sha256),
            Algorithm::Other(_) => None,
        }
    }
}

/// Authentication settings ([`super::ServerConfig::auth`]).
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub realm: String,
    pub users: Vec<User>,
    /// A nonce not used for this long is stale.
    pub nonce_lifetime: Duration,
    /// A failed attempt is answered after a random delay up to this.
    pub max_failure_delay: Duration,
    /// Failures from one address within [`AuthConfig::failure_window`] before it is locked out.
    pub failures_allowed: u32,
    pub failure_window: Duration,
    /// How long a locked-out address gets `403`.
    pub lockout: Duration,
}

impl AuthConfig {
    /// Defaults: realm [`REALM`], nonces stale after 60 s unused, failures answered within
    /// 0-4 s, 20 failures a minute from one address lock it out for 5 minutes.
    pub fn new(users: Vec<User>) -> Self {
        AuthConfig {
            realm: REALM.into(),
            users,
            nonce_lifetime: Duration::from_secs(60),
            max_failure_delay: Duration::from_secs(4),
            failures_allowed: 20,
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
        }
    }
}

/// The line a shell logs for a failed attempt, in a fixed shape a fail2ban filter can match:
/// `authentication failed: address=<HOST> user="NAME" path="PATH"` (user and path escaped as
/// Rust string literals, so nothing a client sends can break the shape).
pub fn failure_log_line(address: IpAddr, user: &str, path: &str) -> String {
    format!("authentication failed: address={address} user={user:?} path={path:?}")
}

/// What to do with a request.
pub(super) enum Verdict {
    Allow,
    /// 401 with fresh challenges now (no credentials, unusable ones, or a stale nonce).
    Challenge {
        stale: bool,
    },
    /// Wrong credentials: 401 after a delay, then close. `locked_out`: this failure used up
    /// the address's budget.
    Failed {
        user: String,
        locked_out: bool,
    },
    /// The address is locked out: 403 and close.
    LockedOut,
    /// Right credentials, but the user lacks the role the request needs: 403.
    Forbidden,
}

/// The role a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Need {
    Read,
    Publish,
    /// Either role (requests both viewers and publishers make: TEARDOWN, keep-alives).
    Either,
}

impl Need {
    fn met_by(self, r: Roles) -> bool {
        match self {
            Need::Read => r.read,
            Need::Publish => r.publish,
            Need::Either => r.read || r.publish,
        }
    }
}

struct Nonce {
    value: String,
    last_used: Instant,
}

#[derive(Default)]
struct Failures {
    window_start: Option<Instant>,
    count: u32,
    locked_until: Option<Instant>,
}

/// Nonces per connection kept at most (a client may hold a couple of challenges at once).
const NONCES_PER_CONNECTION: usize = 4;
/// Addresses whose failures are remembered at most; past it, those not locked out are dropped.
const ADDRESSES_TRACKED: usize = 65_536;

pub(super) struct Access {
    pub(super) cfg: AuthConfig,
    nonces: HashMap<ConnId, Vec<Nonce>>,
    failures: HashMap<IpAddr, Failures>,
}

impl Access {
    pub(super) fn new(cfg: AuthConfig) -> Self {
        Access {
            cfg,
            nonces: HashMap::new(),
            failures: HashMap::new(),
        }
    }

    pub(super) fn forget(&mut self, conn: ConnId) {
        self.nonces.remove(&conn);
    }

    fn locked(&self, now: Instant, ip: IpAddr) -> bool {
        self.failures
            .get(&ip)
            .and_then(|f| f.locked_until)
            .is_some_and(|t| now < t)
    }

    /// What to make of `req` on connection `conn` from `ip`; `tls`: the connection is RTSPS,
    /// where Basic credentials (RFC 7617, the password itself) are accepted too.
    pub(super) fn check(
        &mut self,
        now: Instant,
        conn: ConnId,
        ip: IpAddr,
        tls: bool,
        req: &Request,
        need: Need,
    ) -> Verdict {
        if self.locked(now, ip) {
            return Verdict::LockedOut;
        }
        if req.method == Method::Options {
            return Verdict::Allow;
        }
        // Anything but Digest credentials (none, malformed, Basic without TLS) is asked again.
        let creds = match req
            .headers
            .get(Authorization::NAME)
            .map(Authorization::parse)
        {
            Some(Ok(Authorization::Digest(d))) => d,
            Some(Ok(Authorization::Basic { username, password })) if tls => {
                return self.check_basic(now, ip, username, &password);
            }
            _ => return Verdict::Challenge { stale: false },
        };
        let alg = creds.algorithm();
        if matches!(alg, Algorithm::Other(_)) {
            return Verdict::Challenge { stale: false };
        }
        let user = self.cfg.users.iter().find(|u| u.name == creds.username);
        // An unknown user costs the same hashing as a known one.
        let dummy = "0".repeat(if alg == Algorithm::Md5 { 32 } else { 64 });
        let ha1 = user.and_then(|u| u.ha1(&alg)).unwrap_or(&dummy);
        let right = creds.verify(req.method.as_str(), ha1)
            && user.is_some()
            && creds.realm == self.cfg.realm;
        if !right {
            let locked_out = self.record_failure(now, ip);
            return Verdict::Failed {
                user: creds.username,
                locked_out,
            };
        }
        let lifetime = self.cfg.nonce_lifetime;
        let ours = self
            .nonces
            .get_mut(&conn)
            .and_then(|v| v.iter_mut().find(|n| n.value == creds.nonce));
        match ours {
            Some(n) if now < n.last_used + lifetime => n.last_used = now,
            // Right credentials on a stale nonce or one issued to another connection: a fresh
            // nonce, and the client knows it need not ask for a password.
            _ => return Verdict::Challenge { stale: true },
        }
        if user.is_some_and(|u| need.met_by(u.roles)) {
            Verdict::Allow
        } else {
            Verdict::Forbidden
        }
    }

    /// Basic credentials: the password's SHA-256 HA1 against the stored one (constant time).
    fn check_basic(&mut self, now: Instant, ip: IpAddr, user: String, password: &str) -> Verdict {
        use subtle::ConstantTimeEq as _;
        let found = self.cfg.users.iter().find(|u| u.name == user);
        let ha1 = ha1(&Algorithm::Sha256, &user, &self.cfg.realm, password).unwrap_or_default();
        let stored = found.map_or(&ha1, |u| &u.ha1_sha256);
        let equal: bool = ha1.as_bytes().ct_eq(stored.as_bytes()).into();
        match found {
            Some(u) if equal => {
                if u.roles.read {
                    Verdict::Allow
                } else {
                    Verdict::Forbidden
                }
            }
            _ => {
                let locked_out = self.record_failure(now, ip);
                Verdict::Failed { user, locked_out }
            }
        }
    }

    /// Counts a failure of `ip`; true when it used up the budget (the address is now locked).
    fn record_failure(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self.failures.len() >= ADDRESSES_TRACKED && !self.failures.contains_key(&ip) {
            let window = self.cfg.failure_window;
            self.failures.retain(|_, f| {
                f.locked_until.is_some_and(|t| now < t)
                    || f.window_start.is_some_and(|s| now < s + window)
            });
        }
        let f = self.failures.entry(ip).or_default();
        match f.window_start {
            Some(s) if now < s + self.cfg.failure_window => f.count += 1,
            _ => {
                f.window_start = Some(now);
                f.count = 1;
            }
        }
        if f.count >= self.cfg.failures_allowed {
            f.locked_until = Some(now + self.cfg.lockout);
            f.window_start = None;
            f.count = 0;
            true
        } else {
            false
        }
    }

    /// Two `WWW-Authenticate` values, SHA-256 first and MD5 last, with a fresh nonce for
    /// `conn` drawn from `rng`.
    pub(super) fn challenge(
        &mut self,
        rng: &mut impl Rng,
        now: Instant,
        conn: ConnId,
        stale: bool,
    ) -> [String; 2] {
        let value = format!("{:032x}", rng.random::<u128>());
        let list = self.nonces.entry(conn).or_default();
        if list.len() >= NONCES_PER_CONNECTION {
            list.remove(0);
        }
        list.push(Nonce {
            value: value.clone(),
            last_used: now,
        });
        let make = |algorithm| {
            WwwAuthenticate::Digest(DigestChallenge {
                realm: self.cfg.realm.clone(),
                nonce: value.clone(),
                algorithm,
                stale,
                qop: None,
                opaque: None,
            })
            .to_value()
        };
        [make(Some(Algorithm::Sha256)), make(None)]
    }
}
