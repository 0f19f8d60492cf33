//! Bounded retries with exponential backoff and jitter, honouring `Retry-After`.
//!
//! Retried: connection failures (refused, reset, EOF, timeouts) and HTTP 408, 429, 500, 502, 503,
//! 504 — the answers distribution-spec and RFC 9110 mark as transient. Never retried: 4xx that say
//! the request itself is wrong. Jitter spreads clients that failed together (a registry restart) so
//! they do not come back together; `Retry-After` (seconds, or an HTTP date) overrides the backoff, up
//! to [`RetryPolicy::max_retry_after`] so a hostile server cannot park us for hours.

use std::time::{Duration, SystemTime};

/// How many times and how long to wait between tries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts for one request (1 = no retry).
    pub attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
    /// Largest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based), with "equal jitter": half fixed, half random,
    /// so the wait never collapses to zero yet clients spread out.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(jitter_fraction())
    }

    /// The wait before the next try: `Retry-After` if the server sent a usable one, else backoff.
    pub fn wait(&self, retry: u32, retry_after: Option<&str>) -> Duration {
        match retry_after.and_then(parse_retry_after) {
            Some(d) => d.min(self.max_retry_after),
            None => self.backoff(retry),
        }
    }
}

/// Whether an HTTP status is worth retrying.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// `Retry-After: <seconds>` or `Retry-After: <IMF-fixdate>` (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = parse_http_date(value)?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, the one form servers must send) as a time.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let secs = u64::try_from(http_date_secs(s)?).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`: RFC 9110 §5.6.7,
/// the one form servers must send), for years 0 to 9999; `None` for anything else. Used for
/// `Retry-After` here and for `Last-Modified` by the builder's `ADD <url>`.
pub fn http_date_secs(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as i64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3
        || !(1..=31).contains(&day)
        || !(0..=9999).contains(&year)
        || hms[0] > 23
        || hms[1] > 59
        || hms[2] > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

/// A number in [0, 1) that differs between threads and calls; no crypto needed, just spread.
fn jitter_fraction() -> f64 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
            h.finish() | 1
        });
    }
    STATE.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(5),
        };
        for retry in 0..40 {
            let d = p.backoff(retry);
            let full = (Duration::from_millis(100) * 2u32.saturating_pow(retry.min(20)))
                .min(Duration::from_secs(1));
            assert!(
                d >= full / 2 && d <= full,
                "retry {retry}: {d:?} vs {full:?}"
            );
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(3)).collect();
        assert!(spread.len() > 1, "no jitter");
    }

    #[test]
    fn retry_after_seconds_and_dates_are_honoured_and_capped() {
        let p = RetryPolicy {
            max_retry_after: Duration::from_secs(30),
            ..RetryPolicy::default()
        };
        assert_eq!(p.wait(0, Some("2")), Duration::from_secs(2));
        assert_eq!(p.wait(0, Some("86400")), Duration::from_secs(30));
        assert_eq!(
            p.wait(0, Some("Sun, 06 Nov 1994 08:49:37 GMT")),
            Duration::ZERO
        );
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784111777))
        );
        assert!(p.wait(0, Some("soon")) <= p.base_delay);
        assert_eq!(parse_retry_after("Sun, 99 Nov 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s));
        }
        for s in [200, 201, 202, 400, 401, 403, 404, 416] {
            assert!(!is_retryable_status(s));
        }
    }
}
