//! The positive cache: for each CUCM userid whose password CUCM accepted lately, an
//! argon2id verifier of that password (a PHC string with its own random salt), never the
//! password itself. Held in memory only, bounded in entries; failures are never cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Entries kept at most; a full cache first drops expired entries, then the oldest.
pub(crate) const MAX_ENTRIES: usize = 100_000;

/// What is remembered of one accepted sign-in.
#[derive(Clone)]
pub(crate) struct Entry {
    /// argon2id PHC string of the password CUCM accepted.
    pub verifier: Arc<str>,
    pub verified_at: Instant,
}

pub(crate) struct VerifierCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// How long past `verified_at` an entry is worth keeping (ttl + grace).
    keep_for: Duration,
}

impl VerifierCache {
    pub(crate) fn new(keep_for: Duration) -> VerifierCache {
        VerifierCache {
            entries: Mutex::new(HashMap::new()),
            keep_for,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &str) -> Option<Entry> {
        self.lock().get(key).cloned()
    }

    pub(crate) fn put(&self, key: &str, entry: Entry, now: Instant) {
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES && !map.contains_key(key) {
            let keep_for = self.keep_for;
            map.retain(|_, e| now.saturating_duration_since(e.verified_at) < keep_for);
            if map.len() >= MAX_ENTRIES {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, e)| e.verified_at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        map.insert(key.to_owned(), entry);
    }

    pub(crate) fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// argon2id with the crate's defaults (RFC 9106 / OWASP: m = 19 MiB, t = 2, p = 1).
fn argon2() -> Argon2<'static> {
    Argon2::default()
}

/// A new verifier of `password` (CPU-heavy: call off the async workers).
pub(crate) fn make_verifier(password: &[u8]) -> Option<Arc<str>> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password, &salt)
        .ok()
        .map(|h| Arc::from(h.to_string()))
}

/// Whether `password` matches `verifier` (CPU-heavy: call off the async workers).
pub(crate) fn verify(password: &[u8], verifier: &str) -> bool {
    PasswordHash::new(verifier)
        .map(|h| argon2().verify_password(password, &h).is_ok())
        .unwrap_or(false)
}

/// A verifier of a random password, checked against for unknown and disabled users so
/// they cost the same hash as a cached user with a wrong password.
pub(crate) fn dummy_verifier() -> Arc<str> {
    static DUMMY: OnceLock<Arc<str>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            use rand::RngCore;
            let mut random = [0u8; 24];
            rand::rngs::OsRng.fill_bytes(&mut random);
            make_verifier(&random).unwrap_or_else(|| Arc::from(""))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_checks_the_password_and_hides_it() {
        let v = make_verifier(b"ucbridge-user").unwrap();
        assert!(v.starts_with("$argon2id$"), "{v}");
        assert!(!v.contains("ucbridge-user"));
        assert!(verify(b"ucbridge-user", &v));
        assert!(!verify(b"ucbridge-usex", &v));
        assert!(!verify(b"ucbridge-user", "not a phc string"));
        assert!(!verify(b"anything", &dummy_verifier()));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = VerifierCache::new(Duration::from_secs(60));
        let now = Instant::now();
        let entry = Entry {
            verifier: Arc::from("x"),
            verified_at: now,
        };
        for i in 0..MAX_ENTRIES + 10 {
            cache.put(&format!("u{i}"), entry.clone(), now);
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        cache.remove("u5");
        assert!(cache.get("u5").is_none());
        cache.clear();
        assert_eq!(cache.len(), 0);
    }
}
