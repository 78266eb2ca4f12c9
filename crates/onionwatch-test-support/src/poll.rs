//! Bounded polling, for conditions that have no event to wait on (another
//! process's state, a file another thread writes).

use std::time::{Duration, Instant};

/// Call `f` every 50 ms until it returns `Some`; `None` after `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
