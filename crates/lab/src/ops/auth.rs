//! doAuthenticateUser under CUCM's credential policy (see the crate docs, "Sign-in").
//!
//! State lives in the `credential` table next to the password/PIN: `hackcount` (failed
//! logons, "Reset Hack Count" in CUCM's Credential Information page), the time of the last
//! failure, of a failed-logon lockout, of an administrator's lock, and of the last change.
//! Times are epoch milliseconds (CUCM keeps seconds) so tests can use sub-second policies.
//! A user without a row, or a row whose `credentials` is NULL, has the lab default
//! (`LabConfig::user_password` / `user_pin`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

use super::{AxlFault, Ctx};
use crate::db::{new_pkid, CREDENTIAL_PASSWORD, CREDENTIAL_PIN};
use crate::xmlin::Elem;
use crate::xmlout::Xml;
use crate::{CredentialKind, CredentialPolicy};

/// The `code` values the lab answers. CUCM calls it "the IMS result code" (XSD) and does
/// not publish its values: these are the lab's own.
pub(crate) mod code {
    pub const AUTHENTICATED: i64 = 0;
    pub const WRONG_CREDENTIAL: i64 = 1;
    pub const LOCKED_FAILED_LOGONS: i64 = 2;
    pub const LOCKED_BY_ADMINISTRATOR: i64 = 3;
    pub const EXPIRED: i64 = 4;
    pub const UNKNOWN_USER: i64 = 5;
}

/// What the lab defaults and policy are for one request.
pub(crate) struct AuthSettings<'a> {
    pub policy: &'a CredentialPolicy,
    pub default_password: &'a str,
    pub default_pin: &'a str,
}

/// One credential's row (or the defaults when there is none).
#[derive(Debug, Default)]
struct State {
    secret: Option<String>,
    hackcount: i64,
    last_failed: Option<i64>,
    hacked_lockout: Option<i64>,
    admin_lockout: Option<i64>,
    changed: Option<i64>,
}

/// The `<return>` of DoAuthenticateUserRes.
struct Outcome {
    authenticated: bool,
    code: i64,
    days_to_expiry: Option<i64>,
    warning: Option<bool>,
}

impl Outcome {
    fn refused(code: i64) -> Outcome {
        Outcome {
            authenticated: false,
            code,
            days_to_expiry: None,
            warning: None,
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn tk(kind: CredentialKind) -> i64 {
    match kind {
        CredentialKind::Password => CREDENTIAL_PASSWORD,
        CredentialKind::Pin => CREDENTIAL_PIN,
    }
}

/// doAuthenticateUser: `userid` and a choice of `password` or `pin` (XSD). The raw text is
/// compared (XML keeps the whitespace of an `xsd:string`).
pub(super) fn authenticate(
    conn: &mut Connection,
    req: &Elem,
    ctx: &Ctx<'_>,
) -> Result<Vec<u8>, AxlFault> {
    let userid = req
        .value("userid")
        .ok_or_else(|| AxlFault::missing("userid"))?;
    let (kind, given) = match (req.child("password"), req.child("pin")) {
        (Some(p), None) => (CredentialKind::Password, p.text.as_str()),
        (None, Some(p)) => (CredentialKind::Pin, p.text.as_str()),
        _ => return Err(AxlFault::missing("password or pin")),
    };
    let outcome = check(conn, userid, kind, given, ctx.auth, now_ms())?;
    respond(ctx, &outcome)
}

fn user_pkid(conn: &Connection, userid: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT pkid FROM enduser WHERE userid = ?1",
        [userid],
        |r| r.get(0),
    )
    .optional()
}

fn load(conn: &Connection, user: &str, kind: CredentialKind) -> rusqlite::Result<State> {
    Ok(conn
        .query_row(
            "SELECT credentials, hackcount, timelastfailed, timehackedlockout, timeadminlockout, \
             timechanged FROM credential WHERE fkenduser = ?1 AND tkcredential = ?2",
            params![user, tk(kind)],
            |r| {
                Ok(State {
                    secret: r.get(0)?,
                    hackcount: r.get(1)?,
                    last_failed: r.get(2)?,
                    hacked_lockout: r.get(3)?,
                    admin_lockout: r.get(4)?,
                    changed: r.get(5)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

/// Write the counters back, creating the row (with the default credential) if needed.
fn store(conn: &Connection, user: &str, kind: CredentialKind, s: &State) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO credential (pkid, fkenduser, tkcredential, credentials, hackcount, \
         timelastfailed, timehackedlockout, timeadminlockout, timechanged) \
         VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (fkenduser, tkcredential) DO UPDATE SET hackcount = excluded.hackcount, \
         timelastfailed = excluded.timelastfailed, timehackedlockout = excluded.timehackedlockout, \
         timeadminlockout = excluded.timeadminlockout, timechanged = excluded.timechanged",
        params![
            new_pkid(),
            user,
            tk(kind),
            s.hackcount,
            s.last_failed,
            s.hacked_lockout,
            s.admin_lockout,
            s.changed
        ],
    )?;
    Ok(())
}

/// The credential policy applied to one attempt; counters are updated in one transaction.
fn check(
    conn: &mut Connection,
    userid: &str,
    kind: CredentialKind,
    given: &str,
    settings: &AuthSettings<'_>,
    now: i64,
) -> Result<Outcome, AxlFault> {
    let tx = conn.transaction()?;
    let Some(user) = user_pkid(&tx, userid)? else {
        return Ok(Outcome::refused(code::UNKNOWN_USER));
    };
    let policy = settings.policy;
    let mut s = load(&tx, &user, kind)?;
    if s.admin_lockout.is_some() {
        return Ok(Outcome::refused(code::LOCKED_BY_ADMINISTRATOR));
    }
    if let Some(since) = s.hacked_lockout {
        // No duration = "Administrator Must Unlock".
        let over = policy
            .lockout_duration
            .is_some_and(|d| now >= since.saturating_add(ms(d)));
        if !over {
            return Ok(Outcome::refused(code::LOCKED_FAILED_LOGONS));
        }
        s.hacked_lockout = None;
        s.hackcount = 0;
    }
    // "Reset Failed Logon Attempts Every": the count clears that long after the last failure.
    if s.last_failed
        .is_some_and(|t| now >= t.saturating_add(ms(policy.reset_failed_logons_after)))
    {
        s.hackcount = 0;
    }
    let expected = match (&s.secret, kind) {
        (Some(secret), _) => secret.as_str(),
        (None, CredentialKind::Password) => settings.default_password,
        (None, CredentialKind::Pin) => settings.default_pin,
    };
    let outcome = if given == expected {
        s.hackcount = 0;
        s.last_failed = None;
        accepted(&mut s, policy, now)
    } else {
        s.hackcount += 1;
        s.last_failed = Some(now);
        let threshold = i64::from(policy.failed_logon_threshold);
        if threshold > 0 && s.hackcount >= threshold {
            s.hacked_lockout = Some(now);
        }
        Outcome::refused(code::WRONG_CREDENTIAL)
    };
    store(&tx, &user, kind, &s)?;
    tx.commit()?;
    Ok(outcome)
}

/// A right credential: authenticated unless it has expired. A credential never changed
/// since the lab started counts as changed at its first use.
fn accepted(s: &mut State, policy: &CredentialPolicy, now: i64) -> Outcome {
    let Some(lifetime) = policy.expires_after else {
        return Outcome {
            authenticated: true,
            code: code::AUTHENTICATED,
            days_to_expiry: None,
            warning: None,
        };
    };
    let changed = *s.changed.get_or_insert(now);
    let left = changed.saturating_add(ms(lifetime)).saturating_sub(now);
    if left <= 0 {
        return Outcome {
            authenticated: false,
            code: code::EXPIRED,
            days_to_expiry: Some(0),
            warning: Some(true),
        };
    }
    let days = left / 86_400_000;
    Outcome {
        authenticated: true,
        code: code::AUTHENTICATED,
        days_to_expiry: Some(days),
        warning: Some(days < i64::from(policy.expiry_warning_days)),
    }
}

/// `DoAuthenticateUserRes`: return/{userAuthenticated, code, daysToExpiry?, isWarningNeeded?}.
fn respond(ctx: &Ctx<'_>, o: &Outcome) -> Result<Vec<u8>, AxlFault> {
    let op = ctx.op.name();
    let mut x = Xml::new();
    x.start_response(op, ctx.version)?;
    x.open("return", &[])?;
    x.text("userAuthenticated", Some(bool_text(o.authenticated)))?;
    x.text("code", Some(&o.code.to_string()))?;
    if let Some(days) = o.days_to_expiry {
        x.text("daysToExpiry", Some(&days.to_string()))?;
    }
    if let Some(w) = o.warning {
        x.text("isWarningNeeded", Some(bool_text(w)))?;
    }
    x.close("return")?;
    x.end_response(op)?;
    Ok(x.into_bytes())
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

// ---------------------------------------------------------------------------------------
// Controls for tests (`RunningLab::credentials`): what an administrator does on CUCM's
// Credential Information page. Each returns false when the user does not exist.

/// Apply `change` to the user's credential state and store it.
pub(crate) fn adjust(
    conn: &mut Connection,
    userid: &str,
    kind: CredentialKind,
    change: impl FnOnce(&mut StateView<'_>),
) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    let Some(user) = user_pkid(&tx, userid)? else {
        return Ok(false);
    };
    let mut s = load(&tx, &user, kind)?;
    change(&mut StateView(&mut s));
    store(&tx, &user, kind, &s)?;
    tx.commit()?;
    Ok(true)
}

/// Whether `password` is end user `userid`'s password (their own, else the lab default),
/// for the REST emulators' Basic auth, the IdS password grant and AXL's 403. No policy is
/// applied there: only doAuthenticateUser counts failures.
pub(crate) fn password_matches(
    conn: &Connection,
    userid: &str,
    password: &str,
    default: &str,
) -> rusqlite::Result<bool> {
    let Some(user) = user_pkid(conn, userid)? else {
        return Ok(false);
    };
    let s = load(conn, &user, CredentialKind::Password)?;
    Ok(password == s.secret.as_deref().unwrap_or(default))
}

/// The failed-logon count as CUCM's page shows it, or `None` for an unknown user.
pub(crate) fn failed_logons(
    conn: &Connection,
    userid: &str,
    kind: CredentialKind,
) -> rusqlite::Result<Option<u32>> {
    let Some(user) = user_pkid(conn, userid)? else {
        return Ok(None);
    };
    let s = load(conn, &user, kind)?;
    Ok(Some(u32::try_from(s.hackcount).unwrap_or(u32::MAX)))
}

/// What a control may change.
pub(crate) struct StateView<'a>(&'a mut State);

impl StateView<'_> {
    /// "Locked By Administrator".
    pub fn set_admin_locked(&mut self, locked: bool) {
        self.0.admin_lockout = locked.then(now_ms);
    }

    /// "Reset Hack Count": clears the count and a failed-logon lockout.
    pub fn reset_hack_count(&mut self) {
        self.0.hackcount = 0;
        self.0.last_failed = None;
        self.0.hacked_lockout = None;
    }

    /// Pretend the credential was last changed `ago` before now.
    pub fn set_changed_ago(&mut self, ago: Duration) {
        self.0.changed = Some(now_ms().saturating_sub(ms(ago)));
    }
}
