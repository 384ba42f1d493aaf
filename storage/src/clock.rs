//! Wall-clock milliseconds that never go backwards within one owner, so expiry decisions
//! stay monotonic even if the system clock is stepped back.

use std::time::{SystemTime, UNIX_EPOCH};

/// A monotonic reading of the wall clock, in milliseconds since the Unix epoch.
#[derive(Debug, Default)]
pub struct Clock {
    last: i64,
}

impl Clock {
    /// Now, or the last reading if the wall clock went backwards.
    pub fn now_ms(&mut self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.last = self.last.max(wall);
        self.last
    }
}
