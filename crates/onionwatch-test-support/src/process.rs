//! Child processes of tests (the `onionwatch` binary).

use std::process::{Child, ExitStatus};
use std::time::Duration;

use crate::poll::wait_for;

/// Stops the command if the test fails half-way: SIGINT (it then kills its
/// tors), and SIGKILL if it is still there after 10 s.
#[derive(Debug)]
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
            let exited = wait_for(Duration::from_secs(10), || {
                (!matches!(self.0.try_wait(), Ok(None))).then_some(())
            });
            if exited.is_none() {
                let _ = self.0.kill();
            }
            let _ = self.0.wait();
        }
    }
}

/// Wait for `child` to exit (30 s at most, then kill it and fail).
#[track_caller]
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    match wait_for(Duration::from_secs(30), || child.try_wait().unwrap()) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            panic!("the command did not exit within 30 s");
        }
    }
}
