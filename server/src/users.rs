//! The users file: who may watch, as Digest HA1s, never passwords.
//!
//! One line per user, `NAME ROLES MD5-HA1 SHA256-HA1`, roles a comma list (`read`,
//! `publish`), the HA1s lower-case hex for the realm [`REALM`] (`livecast`); `#` starts a
//! comment. The file is written with mode 0600: an HA1 lets anyone answer this realm's
//! challenges as that user, as the password would.
//!
//! Default place: `$XDG_DATA_HOME/livecast/users`, else `~/.local/share/livecast/users` (the
//! data folder that holds the speech models). When it does not exist, the server (or the first
//! `livecast-server user` command) creates it with the user `viewer` and a random password of
//! 143 bits (24 base62 characters), which is printed once: only its HA1s are kept.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use livecast_proto::rtsp::server::{Roles, User, REALM};
use rand::Rng as _;

/// The user created with the file.
pub const DEFAULT_USER: &str = "viewer";

/// `$XDG_DATA_HOME/livecast/users`, else `~/.local/share/livecast/users`.
pub fn default_users_path() -> Option<PathBuf> {
    crate::data_dir().map(|d| d.join("users"))
}

/// A random password: 24 characters of `[0-9A-Za-z]`, 142.9 bits, from the OS generator.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The users, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Users {
    pub users: Vec<User>,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A name that fits the file and a URL's userinfo unescaped.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        bail!("user name {name:?}: use 1-64 of A-Z a-z 0-9 - _ .");
    }
    Ok(())
}

impl Users {
    pub fn parse(text: &str) -> anyhow::Result<Users> {
        let mut users = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            let [name, roles, md5, sha256] = f[..] else {
                bail!("line {}: expected NAME ROLES MD5-HA1 SHA256-HA1", i + 1);
            };
            check_name(name).with_context(|| format!("line {}", i + 1))?;
            let roles = Roles::parse(roles).map_err(|e| anyhow::anyhow!("line {}: {e}", i + 1))?;
            if !is_hex(md5, 32) || !is_hex(sha256, 64) {
                bail!("line {}: the HA1s must be 32 and 64 hex digits", i + 1);
            }
            if users.iter().any(|u: &User| u.name == name) {
                bail!("line {}: user {name} appears twice", i + 1);
            }
            users.push(User {
                name: name.to_owned(),
                roles,
                ha1_md5: md5.to_ascii_lowercase(),
                ha1_sha256: sha256.to_ascii_lowercase(),
            });
        }
        Ok(Users { users })
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "# livecast users: NAME ROLES MD5-HA1 SHA256-HA1 (Digest, realm \"{REALM}\").\n\
             # Managed with `livecast-server user add|passwd|remove|list`; no passwords here.\n"
        );
        for u in &self.users {
            s.push_str(&format!(
                "{} {} {} {}\n",
                u.name, u.roles, u.ha1_md5, u.ha1_sha256
            ));
        }
        s
    }

    pub fn load(path: &Path) -> anyhow::Result<Users> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the users file {}", path.display()))?;
        Users::parse(&text).with_context(|| format!("users file {}", path.display()))
    }

    /// Writes the file with mode 0600 (a new file beside it, renamed over it).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("new");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(self.to_text().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// The users of `path`; when it does not exist, a new file with [`DEFAULT_USER`] and a
    /// generated password, which is returned (the only time it can be).
    pub fn load_or_create(path: &Path) -> anyhow::Result<(Users, Option<String>)> {
        if path.exists() {
            return Ok((Users::load(path)?, None));
        }
        let password = generate_password();
        let users = Users {
            users: vec![User::with_password(
                DEFAULT_USER,
                &password,
                Roles::READ,
                REALM,
            )],
        };
        users.save(path)?;
        Ok((users, Some(password)))
    }

    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Sets `name`'s password (and roles, if given), adding the user if `add`.
    pub fn set(
        &mut self,
        name: &str,
        password: &str,
        roles: Option<Roles>,
        add: bool,
    ) -> anyhow::Result<()> {
        check_name(name)?;
        if password.is_empty() {
            bail!("empty password");
        }
        match self.users.iter_mut().find(|u| u.name == name) {
            Some(_) if add => bail!("user {name} exists (livecast-server user passwd {name})"),
            Some(u) => {
                let roles = roles.unwrap_or(u.roles);
                *u = User::with_password(name, password, roles, REALM);
            }
            None if add => self.users.push(User::with_password(
                name,
                password,
                roles.unwrap_or(Roles::READ),
                REALM,
            )),
            None => bail!("no user {name} (livecast-server user add {name})"),
        }
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> anyhow::Result<()> {
        let before = self.users.len();
        self.users.retain(|u| u.name != name);
        if self.users.len() == before {
            bail!("no user {name}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_mode_and_first_start() {
        let dir = std::env::temp_dir().join(format!("livecast-users-{}", std::process::id()));
        let path = dir.join("sub/users");
        let _ = std::fs::remove_dir_all(&dir);
        let (users, pw) = Users::load_or_create(&path).unwrap();
        let pw = pw.expect("a new file has a generated password");
        assert_eq!(pw.len(), 24);
        assert!(pw.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(pw, generate_password());
        let v = users.get("viewer").unwrap();
        assert_eq!(*v, User::with_password("viewer", &pw, Roles::READ, REALM));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&pw), "never the password");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Second start: the same users, no password.
        let (again, none) = Users::load_or_create(&path).unwrap();
        assert_eq!((again, none), (users.clone(), None));
        let mut u = users;
        u.set(
            "cam",
            "pw",
            Some(Roles::parse("read,publish").unwrap()),
            true,
        )
        .unwrap();
        assert!(u.set("cam", "pw", None, true).is_err());
        u.set("viewer", "new", None, false).unwrap();
        assert!(u.set("nobody", "x", None, false).is_err());
        assert!(u.set("bad name", "x", None, true).is_err());
        u.save(&path).unwrap();
        let back = Users::load(&path).unwrap();
        assert_eq!(back, u);
        assert_eq!(back.get("cam").unwrap().roles.to_string(), "read,publish");
        back.clone().remove("cam").unwrap();
        assert!(Users::parse("viewer read 00 11\n").is_err());
        assert!(Users::parse("x write 0 0").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
