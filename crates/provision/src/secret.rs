//! The digest password: generated with the OS CSPRNG; stored sealed by
//! [`ucbridge_auth::SecretBox`].

use rand::Rng;
use ucbridge_axl::Secret;

/// Length of generated digest passwords. CUCM's limit is not in the XSD (`digestCredentials`
/// is a plain string); a third-party model documents 1–42 characters (notes §5), so 24
/// alphanumerics (~143 bits) stay well inside it and type easily into a phone's web page.
pub const DIGEST_PASSWORD_LEN: usize = 24;

/// A new digest password from the OS CSPRNG: [`DIGEST_PASSWORD_LEN`] characters of
/// `[A-Za-z0-9]`, sampled uniformly.
pub fn generate_digest_password() -> Secret {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    let text: String = (0..DIGEST_PASSWORD_LEN)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    Secret::new(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ucbridge_auth::SecretBox;

    #[test]
    fn digest_passwords_are_long_random_and_seal() {
        let pw = generate_digest_password();
        assert_eq!(pw.expose().len(), DIGEST_PASSWORD_LEN);
        assert!(pw.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(!format!("{pw:?}").contains(pw.expose()));
        let key = SecretBox::from_base64(&SecretBox::generate_key_base64(), "test").unwrap();
        let sealed = key.seal("alice", &pw);
        assert_eq!(
            key.open("alice", &sealed, key.key_id()).unwrap().expose(),
            pw.expose()
        );
    }

    #[test]
    fn passwords_differ() {
        assert_ne!(
            generate_digest_password().expose(),
            generate_digest_password().expose()
        );
    }
}
