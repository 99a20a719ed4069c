use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Response};
use pin_project_lite::pin_project;

pin_project! {
    /// The response future of [`Auth`](super::Auth).
    ///
    /// It hands the response on unchanged, except that a header echoing the credential that
    /// was sent is marked sensitive, and an error response learns which credential was sent,
    /// so the classifier can redact it from an echoed error body.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        sent: Option<HeaderValue>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, sent: Option<HeaderValue>) -> Self {
        Self { inner, sent }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        if let Some(sent) = this.sent.take() {
            crate::key::mark_echoes(res.headers_mut(), &sent);
            #[cfg(feature = "classify")]
            crate::handoff::note_sent_credential(&mut res, sent);
        }
        Poll::Ready(Ok(res))
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
