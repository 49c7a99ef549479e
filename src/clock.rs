//! Wall-clock stamps, as frames (`capture_us`), `stats` (`ts_us`) and the
//! daemon's debug trace carry them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch; 0 on a clock set before it.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
