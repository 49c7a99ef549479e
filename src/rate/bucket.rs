//! Token bucket in bits: refilled at the target rate, paid by every coded frame.

use std::collections::VecDeque;

/// Reservations awaiting their frame's actual size; beyond this the oldest is
/// left as paid at its prediction (a caller that never reports sizes).
const MAX_PENDING: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct TokenBucket {
    /// Bits available; negative is debt from frames larger than predicted.
    level: f64,
    /// Predicted sizes already deducted for frames not yet observed, oldest first.
    pending: VecDeque<f64>,
}

impl TokenBucket {
    /// Add `bits`, keeping at most `depth` banked (debt is never forgiven).
    pub fn refill(&mut self, bits: f64, depth: f64) {
        self.level = (self.level + bits).min(depth);
    }

    pub fn level(&self) -> f64 {
        self.level
    }

    /// Pay for a frame up front at its predicted size, so a caller that plans
    /// the next frame before reporting this one cannot spend the same bits twice.
    pub fn reserve(&mut self, predicted_bits: f64) {
        self.level -= predicted_bits;
        self.pending.push_back(predicted_bits);
        if self.pending.len() > MAX_PENDING {
            self.pending.pop_front();
        }
    }

    /// The oldest reserved frame came out at `actual_bits`: settle the difference.
    pub fn settle(&mut self, actual_bits: f64) {
        let reserved = self.pending.pop_front().unwrap_or(0.0);
        self.level += reserved - actual_bits;
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_then_settle_charges_the_actual_size() {
        let mut b = TokenBucket::default();
        b.refill(1000.0, 5000.0);
        b.reserve(800.0);
        assert_eq!(b.level(), 200.0);
        b.settle(1100.0);
        assert_eq!(b.level(), -100.0);
        // Unreserved frames are charged in full.
        b.settle(50.0);
        assert_eq!(b.level(), -150.0);
    }

    #[test]
    fn depth_caps_savings_but_not_debt() {
        let mut b = TokenBucket::default();
        b.refill(10_000.0, 3000.0);
        assert_eq!(b.level(), 3000.0);
        b.reserve(9000.0);
        b.refill(1000.0, 3000.0);
        assert_eq!(b.level(), -5000.0);
    }

    #[test]
    fn pipelined_reservations_settle_in_order() {
        let mut b = TokenBucket::default();
        b.refill(2000.0, 5000.0);
        b.reserve(500.0);
        b.reserve(700.0);
        b.settle(600.0); // first frame: 100 over
        b.settle(700.0); // second: exact
        assert_eq!(b.level(), 2000.0 - 600.0 - 700.0);
    }
}
