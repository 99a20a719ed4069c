//! The classifier's body replay: any status, body, chunking and read limit. Downstream gets
//! exactly the bytes the transport produced, in order, whatever was read ahead.
#![no_main]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt, service_fn};
use tower_infoplug::ClassifyLayer;

/// A body that yields the fuzzer's chunks as they are.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
    }
}

fuzz_target!(|input: (u16, u16, Vec<&[u8]>)| {
    let (status, limit, chunks) = input;
    let Ok(status) = StatusCode::from_u16(200 + status % 400) else {
        return;
    };
    let Ok(layer) = ClassifyLayer::builder()
        .body_limit(usize::from(limit))
        .build()
    else {
        return;
    };
    let expected = Bytes::from(chunks.concat());
    let chunks: VecDeque<Bytes> = chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect();
    let transport = service_fn(move |_: Request<()>| {
        let body = Chunks(chunks.clone());
        async move {
            let mut res = Response::new(body);
            *res.status_mut() = status;
            Ok::<_, Infallible>(res)
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let res = layer
            .layer(transport)
            .oneshot(Request::new(()))
            .await
            .expect("infallible");
        let got = res
            .into_body()
            .collect()
            .await
            .expect("no stream error")
            .to_bytes();
        assert_eq!(got, expected);
    });
});
