//! The one retry schedule every part that reconnects or retries uses: a first wait, doubling after each failure,
//! capped, optionally jittered so that several instances do not retry in step.

use std::time::Duration;

use rand::Rng;

/// Waits that double from `first` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// Each wait is spread over ±20 % at random.
    pub jitter: bool,
}

impl Backoff {
    /// The wait after `failures` failures in a row (0: the first retry waits `first`).
    pub fn delay(&self, failures: u32) -> Duration {
        let base = self
            .first
            .saturating_mul(1u32 << failures.min(16))
            .min(self.max);
        if self.jitter {
            base.mul_f64(rand::rng().random_range(0.8..1.2))
        } else {
            base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEADY: Backoff = Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_secs(5),
        jitter: false,
    };

    #[test]
    fn waits_double_from_the_first_and_stop_at_the_cap() {
        let waits: Vec<u128> = (0..8).map(|n| STEADY.delay(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(STEADY.delay(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn jitter_stays_within_a_fifth_of_the_wait() {
        let jittered = Backoff {
            jitter: true,
            ..STEADY
        };
        for failures in [0, 3, 40] {
            let plain = STEADY.delay(failures);
            for _ in 0..100 {
                let wait = jittered.delay(failures);
                assert!(
                    wait >= plain.mul_f64(0.8) && wait <= plain.mul_f64(1.2),
                    "{wait:?} around {plain:?}"
                );
            }
        }
    }
}
