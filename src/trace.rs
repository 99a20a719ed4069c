//! `tracing` events when the `tracing` feature is on, nothing when it is off.

#[cfg(feature = "tracing")]
#[allow(unused_imports)] // unused in builds with no layer
pub(crate) use tracing::debug;

#[cfg(not(feature = "tracing"))]
#[allow(unused_macros)] // unused in builds with no layer
macro_rules! debug {
    ($($anything:tt)*) => {};
}
#[cfg(not(feature = "tracing"))]
#[allow(unused_imports)]
pub(crate) use debug;
