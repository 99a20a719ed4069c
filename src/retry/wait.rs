//! A wait between attempts (a backoff, a gate, a pacing slot), and the draining of the last
//! response's body meanwhile, so its connection can be reused.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::Body;
use tokio::time::{Instant, Sleep, sleep_until};

use super::later;

/// A wait's times.
pub(super) struct Wait {
    /// When it began; `None`: a first attempt, planned once polled.
    pub(super) started: Option<Instant>,
    pub(super) until: Instant,
    /// How long the last body is drained for at most (from `started`), and how many bytes
    /// of it.
    pub(super) drain_for: Duration,
    pub(super) drain_left: usize,
}

impl Wait {
    /// Ready once `until` has passed and the last body is done with (or out of time), with
    /// how long it waited (`None`: not a wait, a first attempt to plan).
    pub(super) fn poll<R: Body>(
        &mut self,
        cx: &mut Context<'_>,
        sleep: &mut Option<Pin<Box<Sleep>>>,
        mut drain: Pin<&mut Option<R>>,
    ) -> Poll<Option<Duration>> {
        loop {
            let left = &mut self.drain_left;
            if drain
                .as_mut()
                .as_pin_mut()
                .is_some_and(|d| drained(d, left, cx))
            {
                drain.set(None);
            }
            let now = Instant::now();
            // Worked out only while a body is still being drained (most are done at once).
            let drain_until = self
                .started
                .filter(|_| drain.is_some())
                .map(|started| later(started, self.drain_for));
            let draining = drain_until.filter(|until| now < *until);
            if now >= self.until && draining.is_none() {
                return Poll::Ready(self.started.map(|s| now.saturating_duration_since(s)));
            }
            let wake_at = match draining {
                Some(drain_until) if now >= self.until => drain_until,
                _ => self.until,
            };
            let timer = sleep.get_or_insert_with(|| Box::pin(sleep_until(wake_at)));
            if timer.deadline() != wake_at {
                timer.as_mut().reset(wake_at);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

/// Reads what is there of the body of a response that is being retried, so the connection
/// can be reused; `true` once the body is done with (ended, failed, or `left` bytes read).
/// At most [`DRAIN_FRAMES_PER_POLL`] frames a poll: then it yields, so a body that is always
/// ready (with empty frames, which no byte bound stops) is held to the drain's time bound.
fn drained<R: Body>(mut body: Pin<&mut R>, left: &mut usize, cx: &mut Context<'_>) -> bool {
    for _ in 0..DRAIN_FRAMES_PER_POLL {
        if *left == 0 {
            return true;
        }
        match body.as_mut().poll_frame(cx) {
            Poll::Pending => return false,
            Poll::Ready(None | Some(Err(_))) => return true,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *left = left.saturating_sub(data.remaining());
                }
            }
        }
    }
    cx.waker().wake_by_ref();
    false
}

/// See [`drained`].
const DRAIN_FRAMES_PER_POLL: usize = 32;
