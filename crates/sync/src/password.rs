//! Local passwords: the seed's policy (004) and argon2 hashing.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

/// Why a password was refused, naming every rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The password does not satisfy the password policy. It is case sensitive and must contain at least a capital letter, at least a lowercase letter, at least one number, at least one special character and at least 8 characters. Missing: {}.", missing.join(", "))]
pub struct PolicyViolation {
    pub missing: Vec<&'static str>,
}

/// Check the seed's complex-password policy: a capital letter, a lowercase letter, a
/// number, a special character, 8 characters or more.
pub fn check_policy(password: &str) -> Result<(), PolicyViolation> {
    let mut missing = Vec::new();
    if !password.chars().any(char::is_uppercase) {
        missing.push("a capital letter");
    }
    if !password.chars().any(char::is_lowercase) {
        missing.push("a lowercase letter");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        missing.push("a number");
    }
    if !password
        .chars()
        .any(|c| !c.is_alphanumeric() && !c.is_whitespace())
    {
        missing.push("a special character");
    }
    if password.chars().count() < 8 {
        missing.push("8 characters");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PolicyViolation { missing })
    }
}

/// Check the policy, then hash with argon2id (PHC string, salt included).
pub fn hash_password(password: &str) -> Result<String, PolicyViolation> {
    check_policy(password)?;
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        // Hashing only fails for out-of-range parameters, which the defaults are not.
        .unwrap_or_else(|e| unreachable!("argon2 with default parameters failed: {e}")))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_what_is_missing() {
        assert!(check_policy("Secr3t!pw").is_ok());
        let e = check_policy("secret").unwrap_err();
        assert_eq!(
            e.missing,
            vec![
                "a capital letter",
                "a number",
                "a special character",
                "8 characters"
            ]
        );
        assert!(e.to_string().contains("at least 8 characters"));
        assert!(check_policy("ABCDEFG1!").unwrap_err().missing == vec!["a lowercase letter"]);
    }

    #[test]
    fn hashes_verify() {
        let h = hash_password("Secr3t!pw").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("Secr3t!pw", &h));
        assert!(!verify_password("Secr3t!pX", &h));
        assert!(hash_password("weak").is_err());
    }
}
