//! Timeouts whose deadline moves later at almost no cost.
//!
//! Every request re-arms two timeouts (the next request head, the upstream's
//! answer), each a little later than the last. With tokio's timers that is a
//! timer-wheel removal and insertion per request, and tokio unparks its
//! driver (an eventfd write) whenever a new deadline is earlier than the one
//! it planned to wake for: measured, one extra syscall per request. A
//! [`LazySleep`] only records a later deadline; the timer underneath keeps
//! its earlier one, and when that fires early it is re-armed once for the
//! recorded deadline. So timeouts still fire at their deadline, and the
//! wheel is touched about once per timeout period instead of per request.
//! hyper drops its request-head timeout after every head and asks for a
//! new one, so [`LazyTimer`] keeps the timer underneath for the next one.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::time::Sleep;

/// A sleep until [`deadline`](LazySleep::deadline), which may be moved.
#[derive(Debug)]
pub(crate) struct LazySleep {
    /// `None` only while being dropped.
    inner: Option<Pin<Box<Sleep>>>,
    deadline: tokio::time::Instant,
    /// Where the timer underneath goes when this is dropped.
    spare: Option<Spare>,
}

type Spare = Arc<Mutex<Option<Pin<Box<Sleep>>>>>;

impl LazySleep {
    pub(crate) fn until(deadline: Instant) -> LazySleep {
        let deadline = deadline.into();
        LazySleep {
            inner: Some(Box::pin(tokio::time::sleep_until(deadline))),
            deadline,
            spare: None,
        }
    }

    fn inner(&mut self) -> Pin<&mut Sleep> {
        self.inner.as_mut().expect("only taken on drop").as_mut()
    }

    /// Fire at `deadline` instead. Later deadlines cost a store; only an
    /// earlier one re-arms the timer.
    pub(crate) fn set(&mut self, deadline: Instant) {
        let deadline = deadline.into();
        if deadline < self.inner().deadline() {
            self.inner().reset(deadline);
        }
        self.deadline = deadline;
    }
}

impl Future for LazySleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            std::task::ready!(this.inner().poll(cx));
            if this.inner().deadline() >= this.deadline {
                return Poll::Ready(());
            }
            // Fired for an older deadline: wait for the recorded one.
            let deadline = this.deadline;
            this.inner().reset(deadline);
        }
    }
}

impl Drop for LazySleep {
    fn drop(&mut self) {
        if let (Some(spare), Some(inner)) = (&self.spare, self.inner.take()) {
            *spare.lock().unwrap_or_else(|e| e.into_inner()) = Some(inner);
        }
    }
}

impl hyper::rt::Sleep for LazySleep {}

/// hyper's timer (request-head timeouts) built on [`LazySleep`]; one per
/// connection, so that the timer underneath is reused from head to head.
#[derive(Debug, Clone, Default)]
pub(crate) struct LazyTimer {
    spare: Spare,
}

impl hyper::rt::Timer for LazyTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut sleep = match spare {
            Some(inner) => LazySleep {
                inner: Some(inner),
                deadline: deadline.into(),
                spare: None,
            },
            None => LazySleep::until(deadline),
        };
        sleep.set(deadline);
        sleep.spare = Some(Arc::clone(&self.spare));
        Box::pin(sleep)
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<LazySleep>() {
            Some(s) => s.get_mut().set(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Paused tokio time: the sleeps run instantly and `elapsed` is virtual.
    fn elapsed_between(start: tokio::time::Instant, lo: u64) {
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(lo) && waited < Duration::from_secs(lo + 1),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_latest_deadline_not_the_first() {
        let start = tokio::time::Instant::now();
        let mut s = LazySleep::until(start.into_std() + Duration::from_secs(1));
        s.set(start.into_std() + Duration::from_secs(5));
        (&mut s).await;
        elapsed_between(start, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_fires_early() {
        let start = tokio::time::Instant::now();
        let mut s = LazySleep::until(start.into_std() + Duration::from_secs(60));
        s.set(start.into_std() + Duration::from_secs(2));
        (&mut s).await;
        elapsed_between(start, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn hyper_reset_moves_the_deadline() {
        use hyper::rt::Timer;
        let start = tokio::time::Instant::now();
        let timer = LazyTimer::default();
        let mut s = timer.sleep_until(start.into_std() + Duration::from_secs(1));
        timer.reset(&mut s, start.into_std() + Duration::from_secs(3));
        s.as_mut().await;
        elapsed_between(start, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_timer_keeps_each_deadline() {
        use hyper::rt::Timer;
        let start = tokio::time::Instant::now();
        let timer = LazyTimer::default();
        // Dropped before firing: its timer is the next sleep's.
        drop(timer.sleep_until(start.into_std() + Duration::from_secs(1)));
        let mut s = timer.sleep_until(start.into_std() + Duration::from_secs(4));
        s.as_mut().await;
        elapsed_between(start, 4);
        drop(s);
        // The spare timer has fired (at 4 s): the next sleep still waits for its own deadline.
        let mut s = timer.sleep_until(start.into_std() + Duration::from_secs(6));
        s.as_mut().await;
        elapsed_between(start, 6);
    }
}
