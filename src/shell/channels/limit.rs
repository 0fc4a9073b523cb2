//! Per-robot send windows. DingTalk's custom robots and WeCom's group robots take at most 20
//! messages a minute each and answer the 21st with an error code (DingTalk 130101, WeCom
//! 45009); the robot is then muted for a while. So we count our own sends per robot and, when
//! its window is full, queue the attempt for the moment a slot frees up instead of sending
//! (and never drop it). One window per process: several workers may together exceed it
//! briefly, and then the vendor's own rate-limit reply queues the attempt the same way.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

#[derive(Debug, Default)]
pub struct Limits {
    /// sha256(robot URL) → send instants within the last window. The key is hashed so that
    /// no token-bearing URL sits in memory dumps longer than an attempt.
    windows: Mutex<HashMap<[u8; 32], VecDeque<Instant>>>,
}

impl Limits {
    /// Take a slot for one send to `robot`, at most `per_window` per `window`: `Ok` to send
    /// now, `Err(wait)` when the next slot frees up only after `wait`.
    pub fn take(&self, robot: &str, per_window: usize, window: Duration) -> Result<(), Duration> {
        self.take_at(robot, per_window, window, Instant::now())
    }

    fn take_at(
        &self,
        robot: &str,
        per_window: usize,
        window: Duration,
        now: Instant,
    ) -> Result<(), Duration> {
        let key: [u8; 32] = Sha256::digest(robot.as_bytes()).into();
        let Ok(mut all) = self.windows.lock() else {
            // A poisoned lock only means another attempt panicked; sending is still safe,
            // and the vendor's own rate-limit reply is the backstop.
            return Ok(());
        };
        let q = all.entry(key).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() >= per_window {
            let oldest = q.front().copied().unwrap_or(now);
            let wait = window.saturating_sub(now.duration_since(oldest));
            return Err(wait.max(Duration::from_millis(100)));
        }
        q.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_21st_message_in_a_minute_waits_for_the_first_to_age_out() {
        let l = Limits::default();
        let t0 = Instant::now();
        let min = Duration::from_secs(60);
        for i in 0..20 {
            assert!(l.take_at("r", 20, min, t0 + Duration::from_secs(i)).is_ok());
        }
        let wait = l.take_at("r", 20, min, t0 + Duration::from_secs(30));
        assert_eq!(wait, Err(Duration::from_secs(30)));
        // Another robot has its own window.
        assert!(l.take_at("other", 20, min, t0).is_ok());
        assert!(
            l.take_at("r", 20, min, t0 + Duration::from_secs(60))
                .is_ok()
        );
    }
}
