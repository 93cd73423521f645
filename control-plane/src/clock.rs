//! Wall-clock time comes in through this trait, so that decisions stay pure
//! and simulations control the clock.

use std::fmt;
use std::sync::Arc;

use crate::api::Time;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Time;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Time {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        Time(secs)
    }
}

/// A clock a configuration struct can hold: cloned cheaply, printed as its
/// kind, the system clock by default. Simulations put their own in.
#[derive(Clone)]
pub struct SharedClock(pub Arc<dyn Clock>);

impl Default for SharedClock {
    fn default() -> Self {
        SharedClock(Arc::new(SystemClock))
    }
}

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedClock")
    }
}

impl Clock for SharedClock {
    fn now(&self) -> Time {
        self.0.now()
    }
}
