//! What the layers leave each other in the extensions, in one place.
//!
//! Each layer is useful alone and safe in any order; where one layer's finding helps
//! another, it travels in the request's or the response's extensions:
//!
//! | value | written by | read by | the orders |
//! |---|---|---|---|
//! | [`SentCredential`] (crate-private) | `AuthLayer`, on a 4xx/5xx answer to a request it stamped | `ClassifyLayer`, which redacts the credential from the error and removes the note | classifier outside auth: the note waits in the response; classifier inside auth (the preset's order): the error is already there and is redacted at once, and no note is left |
//! | [`ApiError`](crate::ApiError) | `ClassifyLayer` (unless the response already carries one: a second classifier leaves it as it is) | `RetryLayer` (a body may only veto a retry), `AuthLayer` (redacts it), callers | retry outside classify sees each attempt's error; without a classifier the retry layer decides by status |
//! | [`RetryInfo`](crate::RetryInfo) | `RetryLayer`, on final responses | callers | outermost |
//! | [`Deadline`](crate::retry::Deadline) | callers, on requests | `RetryLayer` | any |
//!
//! Only the first is private, and only this module creates or reads it.

use http::HeaderValue;

/// The credential the auth layer sent with the request of an error response. Private to the
/// crate, so no one outside can read it from the extensions; the classifier removes it.
#[derive(Clone)]
pub(crate) struct SentCredential(pub(crate) HeaderValue);

/// Tells the classifier, in whichever order the layers are stacked, which credential to redact
/// from the error: redacts an [`ApiError`] that is already there (classifier inside the auth
/// layer, as in `InfoPlugLayer`) and leaves a note for one that comes later (classifier
/// outside).
#[cfg(feature = "auth")]
pub(crate) fn note_sent_credential<B>(res: &mut http::Response<B>, sent: HeaderValue) {
    use crate::ApiError;
    use crate::classify::parse::is_classified;

    if !is_classified(res.status()) {
        return;
    }
    match res.extensions_mut().get_mut::<ApiError>() {
        // Classified already: redacted at once, and nothing is left for anyone (a classifier
        // further out leaves a response it finds classified as it is).
        Some(error) => error.redact(&sent),
        None => {
            res.extensions_mut().insert(SentCredential(sent));
        }
    }
}
