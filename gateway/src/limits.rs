//! Login attempts are rate limited per username and per client address, so
//! guessing passwords stays slow whichever of the two an attacker varies.
//! The limits are per gateway process.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota};

/// Login attempts allowed per minute, each with an equal burst.
pub struct LoginLimits {
    per_user: DefaultKeyedRateLimiter<String>,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

impl LoginLimits {
    pub fn new(per_user_per_minute: u32, per_address_per_minute: u32) -> Self {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least 1"));
        Self {
            per_user: DefaultKeyedRateLimiter::keyed(quota(per_user_per_minute)),
            per_address: DefaultKeyedRateLimiter::keyed(quota(per_address_per_minute)),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one attempt; `Err(wait)` if the user or the address is over its limit.
    pub fn check(&self, username: &str, address: Option<IpAddr>) -> Result<(), Duration> {
        // Forget idle keys now and then, so the tables stay small.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.per_user.retain_recent();
            self.per_address.retain_recent();
        }
        let clock = governor::clock::DefaultClock::default();
        let wait = |not_until: governor::NotUntil<_>| not_until.wait_time_from(clock.now());
        if let Some(address) = address {
            self.per_address.check_key(&address).map_err(wait)?;
        }
        self.per_user
            .check_key(&username.trim().to_lowercase())
            .map_err(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_its_burst_then_waits_whatever_the_address() {
        let limits = LoginLimits::new(3, 100);
        let from = |last: u8| Some(IpAddr::from([10, 0, 0, last]));
        for i in 0..3 {
            assert!(limits.check("Dana", from(i)).is_ok());
        }
        let wait = limits.check(" dana ", from(9)).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(limits.check("someone-else", from(9)).is_ok());
    }

    #[test]
    fn an_address_gets_its_burst_then_waits_whatever_the_user() {
        let limits = LoginLimits::new(100, 2);
        let here = Some(IpAddr::from([192, 0, 2, 1]));
        assert!(limits.check("a", here).is_ok());
        assert!(limits.check("b", here).is_ok());
        assert!(limits.check("c", here).is_err());
        assert!(limits
            .check("c", Some(IpAddr::from([192, 0, 2, 2])))
            .is_ok());
    }
}
