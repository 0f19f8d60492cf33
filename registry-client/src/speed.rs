//! The slowest transfer strata tolerates, in the manner of curl's `--speed-limit`/`--speed-time`:
//! a blob download whose rate stays below [`LowSpeed::bytes_per_sec`] for a whole
//! [`LowSpeed::window`] fails with [`crate::RegistryError::TooSlow`].
//!
//! Why: the per-read timeout only catches a connection that sends *nothing*; a registry (or a
//! proxy) that trickles one byte every few seconds keeps every read alive and a pull would never
//! end. The window is counted across resumed connections, so reconnecting does not reset it.

use std::time::{Duration, Instant};

/// Environment variable: the minimum rate in bytes per second (`0` turns the check off).
pub const ENV_LIMIT: &str = "STRATA_LOW_SPEED_LIMIT";
/// Environment variable: the window in seconds over which the rate is measured.
pub const ENV_TIME: &str = "STRATA_LOW_SPEED_TIME";

/// A minimum transfer rate over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowSpeed {
    /// Bytes per second a transfer must average over each window (0 = no minimum).
    pub bytes_per_sec: u64,
    /// The window.
    pub window: Duration,
}

impl Default for LowSpeed {
    /// 1 KiB/s over 60 s: slower than any working link, so only a stalled or trickling transfer
    /// trips it, and it does so within about a minute.
    fn default() -> LowSpeed {
        LowSpeed {
            bytes_per_sec: 1024,
            window: Duration::from_secs(60),
        }
    }
}

impl LowSpeed {
    /// The default, with `STRATA_LOW_SPEED_LIMIT` (bytes/s) and `STRATA_LOW_SPEED_TIME` (seconds)
    /// applied when set. A value that is not a whole number is ignored with a warning.
    pub fn from_env() -> LowSpeed {
        let mut speed = LowSpeed::default();
        if let Some(limit) = env_u64(ENV_LIMIT) {
            speed.bytes_per_sec = limit;
        }
        if let Some(secs) = env_u64(ENV_TIME).filter(|s| *s > 0) {
            speed.window = Duration::from_secs(secs);
        }
        speed
    }

    /// The fewest bytes a window must carry.
    fn min_bytes(&self) -> u64 {
        self.bytes_per_sec
            .saturating_mul(self.window.as_secs().max(1))
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            tracing::warn!(variable = name, value = %v, "not a whole number; ignored");
            None
        }
    }
}

/// A reader held to a [`LowSpeed`]: a read after a window that carried too little fails with an
/// [`std::io::Error`] wrapping [`TooSlow`].
pub(crate) struct SpeedReader<R> {
    inner: R,
    check: SpeedCheck,
    read: u64,
}

impl<R> SpeedReader<R> {
    pub(crate) fn new(inner: R, limit: LowSpeed) -> SpeedReader<R> {
        SpeedReader {
            inner,
            check: SpeedCheck::new(limit, 0),
            read: 0,
        }
    }
}

impl<R: std::io::Read> std::io::Read for SpeedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.check.check(self.read).map_err(std::io::Error::other)?;
        Ok(n)
    }
}

/// A transfer that went below the minimum rate: how many bytes the last window carried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TooSlow {
    pub(crate) bytes: u64,
    pub(crate) window: Duration,
}

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "transfer too slow: {} bytes in {} s (minimum set by {ENV_LIMIT}/{ENV_TIME})",
            self.bytes,
            self.window.as_secs()
        )
    }
}

impl std::error::Error for TooSlow {}

/// Measures one transfer against a [`LowSpeed`], window after window.
pub(crate) struct SpeedCheck {
    limit: LowSpeed,
    window_start: Instant,
    bytes_at_start: u64,
}

impl SpeedCheck {
    /// Starts the first window now, at `bytes` already transferred.
    pub(crate) fn new(limit: LowSpeed, bytes: u64) -> SpeedCheck {
        SpeedCheck {
            limit,
            window_start: Instant::now(),
            bytes_at_start: bytes,
        }
    }

    /// Called as the transfer goes, with the bytes transferred so far: fails when a whole window
    /// has passed carrying fewer than the minimum, else starts the next window when one is over.
    pub(crate) fn check(&mut self, bytes: u64) -> Result<(), TooSlow> {
        if self.limit.bytes_per_sec == 0 || self.window_start.elapsed() < self.limit.window {
            return Ok(());
        }
        let moved = bytes.saturating_sub(self.bytes_at_start);
        if moved < self.limit.min_bytes() {
            return Err(TooSlow {
                bytes: moved,
                window: self.window_start.elapsed(),
            });
        }
        self.window_start = Instant::now();
        self.bytes_at_start = bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_below_the_minimum_fails_and_one_above_passes() {
        let limit = LowSpeed {
            bytes_per_sec: 100,
            window: Duration::from_millis(0),
        };
        // A zero window is measured as one second's worth: 100 bytes.
        let mut c = SpeedCheck::new(limit, 0);
        assert!(
            c.check(150).is_ok(),
            "150 >= 100 passes and opens the next window"
        );
        let err = c.check(200).unwrap_err();
        assert_eq!(err.bytes, 50);
        let off = LowSpeed {
            bytes_per_sec: 0,
            ..limit
        };
        assert!(SpeedCheck::new(off, 0).check(0).is_ok());
    }
}
