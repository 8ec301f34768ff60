//! A throwaway Dovecot IMAP server for tests (Debian `dovecot-imapd`): the lab's launcher
//! ([`ucbridge_lab::services::Dovecot`]) with fixed test credentials and the test policy —
//! a missing `dovecot` binary is a loud skip, or a failure under `CI=true`.
//!
//! [`Dovecot::start`] runs one with passwd-file users (each with [`USER_PASSWORD`]) and the
//! master user [`MASTER_USER`]; [`Dovecot::builder`] adds opt-in features: TLS, Dovecot's
//! push-notification plugin with a Lua script ([`DovecotBuilder::lua_push`], e.g.
//! ucbridge's `contrib/dovecot/ucbridge-push.lua`) and the checkpassword passdb.
//! Dropping the handle stops it. Everything the lab's handle offers (`port()`,
//! `mail_dir()`, `log()`, `add_users()`, ...) is reachable through `Deref`.

pub use ucbridge_lab::services::{Checkpassword, LuaPush};
use ucbridge_lab::services::{DovecotConfig, ServiceError};

use crate::skip_or_fail;

/// The master user every test Dovecot has.
pub const MASTER_USER: &str = "ucbridge-master";
/// Its password (a throwaway server on 127.0.0.1).
pub const MASTER_PASSWORD: &str = "master-secret";
/// Password of users added without one.
pub const USER_PASSWORD: &str = "user-secret";

/// A running test Dovecot; stopped on drop.
#[derive(Debug)]
pub struct Dovecot(ucbridge_lab::services::Dovecot);

impl std::ops::Deref for Dovecot {
    type Target = ucbridge_lab::services::Dovecot;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Options of a test Dovecot ([`Dovecot::builder`]); nothing beyond the plain server
/// unless asked for.
pub struct DovecotBuilder<'a> {
    users: Vec<String>,
    tls: Option<&'a crate::tls::ServerCertificate>,
    lua_push: Option<LuaPush>,
    checkpassword: Option<Checkpassword>,
}

impl<'a> DovecotBuilder<'a> {
    /// Also offer STARTTLS on the IMAP port and implicit TLS on a second port.
    pub fn tls(mut self, cert: Option<&'a crate::tls::ServerCertificate>) -> Self {
        self.tls = cert;
        self
    }

    /// Load the push-notification plugin with this Lua script (copied into the server's
    /// directory) and these plugin settings.
    pub fn lua_push(mut self, push: Option<LuaPush>) -> Self {
        self.lua_push = push;
        self
    }

    /// Check users' passwords with a checkpassword program instead of the passwd-file.
    pub fn checkpassword(mut self, checkpassword: Option<Checkpassword>) -> Self {
        self.checkpassword = checkpassword;
        self
    }

    /// Start it; `None` = skip the test (see the module docs).
    pub fn start(self) -> Option<Dovecot> {
        let config = DovecotConfig {
            users: self.users,
            user_password: USER_PASSWORD.into(),
            master_user: MASTER_USER.into(),
            master_password: MASTER_PASSWORD.into(),
            tls: self.tls.cloned(),
            lua_push: self.lua_push,
            checkpassword: self.checkpassword,
            any_user: false,
            port: None,
            parent_dir: None,
        };
        match ucbridge_lab::services::Dovecot::start(&config) {
            Ok(d) => Some(Dovecot(d)),
            Err(ServiceError::NotInstalled { .. }) => {
                skip_or_fail("dovecot is not installed (Debian package dovecot-imapd)");
                None
            }
            Err(why) => {
                skip_or_fail(&format!("cannot start a test Dovecot: {why}"));
                None
            }
        }
    }
}

impl Dovecot {
    /// Start a Dovecot with `users` (each with [`USER_PASSWORD`]). `None` = skip the test.
    pub fn start(users: &[&str]) -> Option<Dovecot> {
        Self::start_with_tls(users, None)
    }

    /// Like [`Dovecot::start`]; with a certificate it also offers STARTTLS on the IMAP
    /// port and implicit TLS on a second port ([`ucbridge_lab::services::Dovecot::imaps_port`]).
    pub fn start_with_tls(
        users: &[&str],
        tls: Option<&crate::tls::ServerCertificate>,
    ) -> Option<Dovecot> {
        Self::builder(users).tls(tls).start()
    }

    /// A Dovecot with options ([`DovecotBuilder`]); `start()` runs it.
    pub fn builder<'a>(users: &[&str]) -> DovecotBuilder<'a> {
        DovecotBuilder {
            users: users.iter().map(|u| (*u).to_owned()).collect(),
            tls: None,
            lua_push: None,
            checkpassword: None,
        }
    }
}
