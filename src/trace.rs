//! The layers' `debug` events when the `tracing` feature is on, nothing when it is off (the
//! retry layer's spans and leveled events are in `retry::trace`).

#[cfg(feature = "tracing")]
pub(crate) use tracing::debug;

#[cfg(not(feature = "tracing"))]
macro_rules! debug {
    ($($anything:tt)*) => {};
}
#[cfg(not(feature = "tracing"))]
pub(crate) use debug;
