//! doAuthenticateUser: check an end user's password or PIN against CUCM.
//!
//! Request and response shapes are Cisco's XSD (`DoAuthenticateUserReq`/`Res`, identical in
//! 11.5, 12.5, 14.0 and 15.0): `userid` then a choice of `password` (`xsd:string`) or `pin`
//! (`\d\d\d\d+`); the answer is `return/{userAuthenticated, code, daysToExpiry?,
//! isWarningNeeded?}`. `code` is "the IMS result code"; Cisco does not publish its values,
//! so it is passed through untouched and only `userAuthenticated` decides.

use serde::Serialize;

use crate::client::{Access, Secret};
use crate::model::parse_bool;
use crate::xml::ResponsePart;
use crate::{AxlClient, AxlError};

const OP: &str = "doAuthenticateUser";

/// What to check: the user's password, or the PIN (phone services, Extension Mobility).
#[derive(Debug, Clone)]
pub enum UserCredential {
    Password(Secret),
    /// Digits only, at least four (the XSD's pattern `\d\d\d\d+`).
    Pin(Secret),
}

/// CUCM's answer to doAuthenticateUser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Authentication {
    /// `userAuthenticated`: the credential is right and usable (not locked, not expired).
    pub authenticated: bool,
    /// `code`: CUCM's IMS result code. Its values are not public; keep it for logs.
    pub code: i64,
    /// `daysToExpiry`: days until the credential expires, when CUCM says.
    pub days_to_expiry: Option<i64>,
    /// `isWarningNeeded`: the user should be told to change the credential soon.
    pub warning_needed: Option<bool>,
}

impl AxlClient {
    /// doAuthenticateUser for `userid` with a password or PIN. A wrong, locked or expired
    /// credential is `Ok` with `authenticated: false` (CUCM answers them with a result, not
    /// a fault); an unknown user may be either, depending on the CUCM.
    ///
    /// The secret is written only into the request body. The call is **never repeated
    /// after the request may have reached CUCM** (it goes as a write): CUCM counts every
    /// failed attempt against the credential policy's lockout threshold (3 by default), so
    /// a retried wrong password would count twice and lock the user out sooner. Only 503,
    /// the memory-throttle fault and a connection never made are retried — CUCM certainly
    /// did not see those.
    pub async fn authenticate_user(
        &self,
        userid: &str,
        credential: &UserCredential,
    ) -> Result<Authentication, AxlError> {
        check_request(userid, credential)?;
        let mut w = self.writer(OP);
        w.text("userid", userid);
        match credential {
            UserCredential::Password(p) => w.text("password", p.expose()),
            UserCredential::Pin(p) => w.text("pin", p.expose()),
        }
        let mut answer = Answer::default();
        self.call(OP, w.finish(), Access::Write, |part| {
            if let ResponsePart::Item(node) = part {
                answer.note(&node.name, node.text.trim());
            }
            Ok(())
        })
        .await?;
        answer.finish()
    }
}

/// Refuse what CUCM's schema refuses before anything is sent, without naming the secret.
fn check_request(userid: &str, credential: &UserCredential) -> Result<(), AxlError> {
    let invalid = |detail: &str| AxlError::InvalidRequest {
        operation: OP.into(),
        detail: detail.into(),
    };
    if userid.trim().is_empty() {
        return Err(invalid("userid is empty"));
    }
    let (secret, what) = match credential {
        UserCredential::Password(p) => (p.expose(), "password"),
        UserCredential::Pin(p) => (p.expose(), "PIN"),
    };
    // XML 1.0 cannot carry most control characters; quick-xml would write them raw.
    if userid.chars().chain(secret.chars()).any(not_xml_char) {
        return Err(invalid(
            "userid or credential holds a character XML cannot carry",
        ));
    }
    if secret.is_empty() {
        return Err(invalid(&format!("the {what} is empty")));
    }
    if matches!(credential, UserCredential::Pin(_))
        && (secret.len() < 4 || !secret.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid(
            "a PIN is at least four digits (XSD pattern \\d\\d\\d\\d+)",
        ));
    }
    Ok(())
}

fn not_xml_char(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// The children of `<return>` as they stream in.
#[derive(Default)]
struct Answer {
    authenticated: Option<String>,
    code: Option<String>,
    days: Option<String>,
    warning: Option<String>,
}

impl Answer {
    fn note(&mut self, name: &str, text: &str) {
        let slot = match name {
            "userAuthenticated" => &mut self.authenticated,
            "code" => &mut self.code,
            "daysToExpiry" => &mut self.days,
            "isWarningNeeded" => &mut self.warning,
            _ => return,
        };
        *slot = Some(text.to_owned());
    }

    fn finish(self) -> Result<Authentication, AxlError> {
        let bad = |detail: String| AxlError::Protocol {
            operation: OP.into(),
            detail,
        };
        let authenticated = parse_bool(self.authenticated.clone())
            .ok_or_else(|| bad(format!("userAuthenticated {:?}", self.authenticated)))?;
        let code = self
            .code
            .as_deref()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad(format!("code {:?}", self.code)))?;
        let days_to_expiry = match self.days.as_deref().filter(|d| !d.is_empty()) {
            None => None,
            Some(d) => Some(d.parse().map_err(|_| bad(format!("daysToExpiry {d:?}")))?),
        };
        let warning_needed = match self.warning.filter(|w| !w.is_empty()) {
            None => None,
            Some(w) => Some(
                parse_bool(Some(w.clone())).ok_or_else(|| bad(format!("isWarningNeeded {w:?}")))?,
            ),
        };
        Ok(Authentication {
            authenticated,
            code,
            days_to_expiry,
            warning_needed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(p: &str) -> UserCredential {
        UserCredential::Pin(Secret::new(p))
    }

    #[test]
    fn requests_the_schema_refuses_are_not_sent() {
        assert!(check_request("u", &pin("12345")).is_ok());
        assert!(check_request("u", &UserCredential::Password(Secret::new("pw"))).is_ok());
        for bad in ["123", "12a45", "", "١٢٣٤"] {
            let err = check_request("u", &pin(bad)).unwrap_err();
            assert!(
                matches!(err, AxlError::InvalidRequest { .. }),
                "{bad}: {err}"
            );
            assert!(bad.is_empty() || !err.to_string().contains(bad), "{err}");
        }
        let nul = UserCredential::Password(Secret::new("a\0b"));
        assert!(check_request("u", &nul).is_err());
        assert!(check_request(" ", &pin("1234")).is_err());
    }

    #[test]
    fn answers_are_read_and_checked() {
        let mut a = Answer::default();
        a.note("userAuthenticated", "true");
        a.note("code", "0");
        a.note("daysToExpiry", "12");
        a.note("isWarningNeeded", "f");
        let r = a.finish().unwrap();
        assert_eq!(
            r,
            Authentication {
                authenticated: true,
                code: 0,
                days_to_expiry: Some(12),
                warning_needed: Some(false)
            }
        );
        let mut a = Answer::default();
        a.note("userAuthenticated", "maybe");
        a.note("code", "1");
        assert!(matches!(a.finish(), Err(AxlError::Protocol { .. })));
        let mut a = Answer::default();
        a.note("userAuthenticated", "false");
        assert!(a.finish().is_err(), "code is required");
    }

    #[test]
    fn credentials_do_not_print() {
        let c = UserCredential::Password(Secret::new("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
