//! A `tracing` subscriber that keeps every event and span field as text: a span's line ends
//! with its id and its parent's, a record's with the span's id, an event's with the span it
//! happened in.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records every event and span field as text.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<String>>>, Arc<Spans>);

/// Span ids handed out, and the spans entered (a test's subscriber serves one thread).
#[derive(Default)]
pub struct Spans {
    next: AtomicU64,
    entered: Mutex<Vec<u64>>,
}

impl Capture {
    fn current(&self) -> u64 {
        self.1.entered.lock().unwrap().last().copied().unwrap_or(0)
    }
}

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.1.next.fetch_add(1, Ordering::Relaxed) + 1;
        let parent = match attrs.parent() {
            Some(parent) => parent.into_u64(),
            None if attrs.is_contextual() => self.current(),
            None => 0,
        };
        let mut text = Text(format!("span {} ", attrs.metadata().name()));
        attrs.record(&mut text);
        let _ = write!(text.0, "#{id} parent=#{parent}");
        self.0.lock().unwrap().push(text.0);
        Id::from_u64(id)
    }

    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut text = Text(String::new());
        values.record(&mut text);
        let _ = write!(text.0, "#{}", id.into_u64());
        self.0.lock().unwrap().push(text.0);
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = Text(format!("{} ", event.metadata().level()));
        event.record(&mut text);
        let _ = write!(text.0, "in=#{}", self.current());
        self.0.lock().unwrap().push(text.0);
    }

    fn enter(&self, id: &Id) {
        self.1.entered.lock().unwrap().push(id.into_u64());
    }

    fn exit(&self, id: &Id) {
        let mut entered = self.1.entered.lock().unwrap();
        if let Some(at) = entered.iter().rposition(|e| *e == id.into_u64()) {
            entered.remove(at);
        }
    }
}

impl Capture {
    /// Everything recorded so far, a line per event, span or record.
    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}
