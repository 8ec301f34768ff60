//! Throttling of login attempts, per client address and per username, so passwords cannot
//! be guessed at the speed of the network, nor the node's CPU burnt on argon2 by a flood.
//!
//! Both limits count every attempt (a GCRA: `ucbridge_signin::Throttle`), checked before the password
//! hash is computed. The per-username limit also holds against guesses spread over many
//! addresses; the price is that a flood can keep that account's owner waiting too (the
//! `ucbridge admin` CLI and API tokens are unaffected). Behind a reverse proxy every
//! client has the proxy's address, so the per-address limit is then a node-wide one.
//!
//! Memory is bounded whatever a flood sends: usernames are cut to [`MAX_USERNAME_BYTES`]
//! before anything else looks at them, and both limits are kept per *bucket* — a keyed
//! hash (random per process) of the username or address, 65,536 of them (a `u16`) — so the
//! key maps hold at most that many small entries. Two names in one bucket share a budget;
//! with 65,536 buckets that is rare, and nobody can aim for it without the process's key.

use std::net::IpAddr;
use std::time::Duration;

use ucbridge_signin::Throttle;

/// Longest username looked at (bytes). Account names are at most 64 characters; longer
/// input is cut here, before throttling, lookups and logging.
pub(crate) const MAX_USERNAME_BYTES: usize = 256;

/// `text` cut to at most `max` bytes, on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The admin login limit: the sign-in service's [`Throttle`] with one rate for both keys.
pub struct LoginLimiter(Throttle);

impl LoginLimiter {
    /// `per_minute` attempts per minute per key, in a burst of as many; `0` turns
    /// throttling off.
    pub fn new(per_minute: u32) -> Option<LoginLimiter> {
        (per_minute > 0).then(|| LoginLimiter(Throttle::new(per_minute, per_minute)))
    }

    /// Count one attempt; `Err(wait)` when it is over either limit. Names are counted
    /// case-insensitively, so "Admin", "ADMIN", ... do not each get a budget.
    pub fn check(&self, address: Option<IpAddr>, username: &str) -> Result<(), Duration> {
        self.0
            .check(address, truncate(username, MAX_USERNAME_BYTES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_attempts_wait() {
        let limiter = LoginLimiter::new(3).unwrap();
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..3 {
            assert!(limiter.check(ip, "admin").is_ok());
        }
        let wait = limiter.check(ip, "admin").expect_err("the 4th waits");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
    }

    #[test]
    fn one_username_is_limited_across_addresses_and_one_address_across_usernames() {
        let limiter = LoginLimiter::new(2).unwrap();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert!(limiter.check(a, "Admin").is_ok());
        assert!(limiter.check(b, "admin").is_ok());
        assert!(limiter
            .check(Some(IpAddr::from([10, 0, 0, 3])), "ADMIN")
            .is_err());
        // Address a has one attempt left, for another user; then it is done too.
        assert!(limiter.check(a, "operator").is_ok());
        assert!(limiter.check(a, "someone").is_err());
    }

    #[test]
    fn a_flood_of_distinct_names_keeps_the_key_maps_bounded() {
        let limiter = LoginLimiter::new(1000).unwrap();
        for i in 0..200_000u32 {
            let ip = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) << 64));
            let _ = limiter.check(Some(ip), &format!("user-{i}-{}", "x".repeat(300)));
        }
        let buckets = usize::from(u16::MAX) + 1;
        let (by_username, by_address) = limiter.0.tracked_keys();
        assert!(by_username <= buckets, "{by_username}");
        assert!(by_address <= buckets, "{by_address}");
    }

    #[test]
    fn usernames_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 256), "abc");
        let long = "é".repeat(200);
        let cut = truncate(&long, MAX_USERNAME_BYTES);
        assert_eq!(cut.len(), MAX_USERNAME_BYTES);
        assert_eq!(truncate("aé", 2), "a");
        // Two names equal in their first 256 bytes share a budget: the rest is not read.
        let limiter = LoginLimiter::new(1).unwrap();
        let a = format!("{}a", "x".repeat(MAX_USERNAME_BYTES));
        let b = format!("{}b", "x".repeat(MAX_USERNAME_BYTES));
        assert!(limiter.check(None, &a).is_ok());
        assert!(limiter.check(None, &b).is_err());
    }

    #[test]
    fn zero_turns_it_off() {
        assert!(LoginLimiter::new(0).is_none());
    }
}
