//! Upgraded connections: a WebSocket served without the HTTP layer's buffers.
//!
//! actix-http's h1 dispatcher gives every connection an 8 KiB read buffer and
//! an 8 KiB write buffer for its whole life. A WebSocket served through it as
//! a streaming response keeps both while it idles: 16 KiB of the 21 KB of heap
//! an idle socket cost. With an upgrade service, the dispatcher hands a
//! request carrying `Upgrade: websocket` (and its connection) here instead.
//! [`service`] asks the same application for the response (the handshake's
//! checks and the session are the `/ws/...` route's, unchanged), writes its
//! head, and then runs [`Duplex`]: what the peer sends goes to the request's
//! payload (actix-ws decodes it there), the response body (the socket's
//! outlet) is written as it comes, and nothing is buffered while the socket
//! is idle: reads go through a buffer on the stack, writes straight from the
//! body's bytes.
//!
//! A response that does not switch protocols (a refused handshake, or a
//! page asked for with `Upgrade: websocket`) is written whole with
//! `Connection: close`, and the connection ends. Requests other than `GET`
//! get an empty body: a WebSocket handshake is always a `GET`, and no other
//! route of the server waits for the body of an upgrade request.

use std::{
    cell::RefCell,
    fmt,
    future::Future,
    mem::MaybeUninit,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use actix_codec::{AsyncRead, AsyncWrite, Encoder, Framed, ReadBuf};
use actix_http::{
    body::{BoxBody, MessageBody},
    error::PayloadError,
    h1::{Codec, Message},
    ConnectionType, Method, Payload, Request, Response, StatusCode,
};
use actix_service::{fn_factory, fn_service, Service, ServiceFactory};
use actix_web::web::{Buf, Bytes, BytesMut};
use tokio::{io::AsyncWriteExt, time::Sleep};

use crate::sessions::outlet::{Closing, CHUNK};

/// Most bytes read from the peer at once (on the stack, never kept).
const READ_SIZE: usize = 8 * 1024;

/// How long a connection may take over its end.
#[derive(Clone, Copy)]
struct Deadlines {
    /// For a closing socket's last bytes (its close frame), before the
    /// connection is dropped: a peer that stopped reading cannot hold it open.
    closing_write: Duration,
    /// For the peer's end once ours is shut down (as actix-http's
    /// `client_disconnect_timeout` in the server's set-up).
    linger: Duration,
}

const DEADLINES: Deadlines = Deadlines {
    closing_write: Duration::from_secs(5),
    linger: Duration::from_secs(1),
};

/// The upgrade service for actix-http's `HttpServiceBuilder::upgrade`: each
/// upgrade request is answered by `app` (a service built once per worker),
/// then served as described in the module's comment.
pub fn service<T, S, B>(
    app: S,
) -> impl ServiceFactory<
    (Request, Framed<T, Codec>),
    Config = (),
    Response = (),
    Error = actix_http::Error,
    InitError = (),
>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: ServiceFactory<Request, Config = ()> + 'static,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    S::InitError: fmt::Debug,
    B: MessageBody + 'static,
{
    let app = Rc::new(app);
    fn_factory(move || {
        let init = app.new_service(());
        async move {
            let app = Rc::new(init.await.map_err(|e| {
                tracing::error!(error = ?e, "the upgrade service's application did not start");
            })?);
            Ok::<_, ()>(fn_service(
                move |(req, framed): (Request, Framed<T, Codec>)| {
                    let app = app.clone();
                    async move {
                        // The handshake's state (the application's call, the
                        // request, the codec) lives in a box freed once it is
                        // answered: the connection's task keeps only the socket.
                        if let Some(socket) = Box::pin(answer(&*app, req, framed)).await {
                            socket.await;
                        }
                        Ok::<_, actix_http::Error>(())
                    }
                },
            ))
        }
    })
}

/// Answers one upgrade request on its connection; the socket to serve if the
/// answer switched protocols.
async fn answer<T, S, B>(app: &S, mut req: Request, framed: Framed<T, Codec>) -> Option<Duplex<T>>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request>,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
{
    let inbox = Rc::new(RefCell::new(Inbox::default()));
    if req.method() != Method::GET {
        inbox.borrow_mut().eof = true;
    }
    *req.payload() = Payload::Stream {
        payload: Box::pin(InboxReader(inbox.clone())),
    };
    let response: Response<BoxBody> = match app.call(req).await {
        Ok(res) => res.into().map_into_boxed_body(),
        Err(err) => err.into(),
    };
    let mut parts = framed.into_parts();
    let (mut head, body) = response.into_parts();
    let upgraded = head.status() == StatusCode::SWITCHING_PROTOCOLS;
    let closing = head.extensions_mut().remove::<Closing>();
    if !upgraded {
        head.head_mut().set_connection_type(ConnectionType::Close);
    }
    // Anything the dispatcher had not written yet goes first; the head is
    // encoded into a buffer of its own size, not into the dispatcher's.
    let mut out = BytesMut::new();
    out.extend_from_slice(&parts.write_buf);
    drop(std::mem::take(&mut parts.write_buf));
    if parts
        .codec
        .encode(Message::Item((head, body.size())), &mut out)
        .is_err()
    {
        return None;
    }
    if !upgraded {
        // The whole answer, then the connection closes.
        let Ok(bytes) = actix_http::body::to_bytes(body).await else {
            return None;
        };
        let encoded = parts
            .codec
            .encode(Message::Chunk(Some(bytes)), &mut out)
            .and_then(|()| parts.codec.encode(Message::Chunk(None), &mut out));
        if encoded.is_ok() {
            // Within the closing deadline: a client that reads nothing cannot
            // hold the connection.
            let io = &mut parts.io;
            let write = async move {
                io.write_all(&out).await?;
                io.shutdown().await
            };
            let _ = tokio::time::timeout(DEADLINES.closing_write, write).await;
        }
        return None;
    }
    // Bytes that came after the head are the client's first frames.
    if !parts.read_buf.is_empty() {
        inbox
            .borrow_mut()
            .put(Bytes::copy_from_slice(&parts.read_buf));
    }
    // From here on the dispatcher's two buffers are gone: `out` holds only
    // the head (a few hundred bytes, freed once written).
    drop(parts.read_buf);
    Some(Duplex::new(
        parts.io,
        body,
        out.freeze(),
        inbox,
        closing,
        DEADLINES,
    ))
}

/// What the connection has read and the payload has not yet taken.
#[derive(Default)]
struct Inbox {
    /// One read's bytes; the connection reads again once they are taken.
    data: Option<Bytes>,
    /// The peer closed its side (or the request has no body).
    eof: bool,
    /// Reading failed.
    error: Option<PayloadError>,
    /// The payload's reader, waiting for bytes.
    reader: Option<Waker>,
    /// The connection, waiting for the reader to take `data`.
    connection: Option<Waker>,
}

impl Inbox {
    /// Hands one read's bytes to the payload and wakes its reader, which may
    /// be waiting already (the session can poll before the head is written).
    fn put(&mut self, data: Bytes) {
        self.data = Some(data);
        wake(&mut self.reader);
    }
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(w) = waker.take() {
        w.wake();
    }
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// The request's payload: the bytes the connection reads.
struct InboxReader(Rc<RefCell<Inbox>>);

impl futures_util::Stream for InboxReader {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut inbox = self.0.borrow_mut();
        if let Some(data) = inbox.data.take() {
            wake(&mut inbox.connection);
            return Poll::Ready(Some(Ok(data)));
        }
        if let Some(err) = inbox.error.take() {
            inbox.eof = true;
            return Poll::Ready(Some(Err(err)));
        }
        if inbox.eof {
            return Poll::Ready(None);
        }
        register(&mut inbox.reader, cx);
        Poll::Pending
    }
}

/// An upgraded socket: reads into the payload and writes the body until the
/// body ends (the socket closed) or the connection fails. Once the socket is
/// closing, the last bytes get [`Deadlines::closing_write`], then our side is
/// shut down and the peer's end awaited for [`Deadlines::linger`] (dropping a connection
/// with unread bytes would reset it, and the peer could lose our close frame).
struct Duplex<T> {
    io: T,
    body: BoxBody,
    body_done: bool,
    /// Bytes taken from the body and not yet written.
    out: Bytes,
    inbox: Rc<RefCell<Inbox>>,
    read_closed: bool,
    /// The socket's close request, seen even while a write is stuck.
    closing: Option<Closing>,
    /// Our side is shut down: waiting for the peer's end.
    lingering: bool,
    /// Once the socket is closing: when the connection is dropped regardless.
    deadline: Option<Pin<Box<Sleep>>>,
    deadlines: Deadlines,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Duplex<T> {
    /// A socket on `io` whose first bytes to write are `out` (the head).
    fn new(
        io: T,
        body: BoxBody,
        out: Bytes,
        inbox: Rc<RefCell<Inbox>>,
        closing: Option<Closing>,
        deadlines: Deadlines,
    ) -> Self {
        Self {
            io,
            body,
            body_done: false,
            out,
            inbox,
            read_closed: false,
            closing,
            lingering: false,
            deadline: None,
            deadlines,
        }
    }

    /// Reads while the payload has taken what was read before.
    fn poll_read_side(&mut self, cx: &mut Context<'_>) {
        while !self.read_closed {
            {
                let mut inbox = self.inbox.borrow_mut();
                if Rc::strong_count(&self.inbox) == 1 {
                    // Nobody reads the payload any more: read only to see the end.
                    inbox.data = None;
                } else if inbox.data.is_some() {
                    register(&mut inbox.connection, cx);
                    return;
                }
            }
            let mut buf = [MaybeUninit::<u8>::uninit(); READ_SIZE];
            let mut read = ReadBuf::uninit(&mut buf);
            let result = match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Pending => return,
                Poll::Ready(result) => result,
            };
            let mut inbox = self.inbox.borrow_mut();
            match result {
                Ok(()) if read.filled().is_empty() => {
                    inbox.eof = true;
                    self.read_closed = true;
                }
                Ok(()) => inbox.put(Bytes::copy_from_slice(read.filled())),
                Err(err) => {
                    inbox.error = Some(PayloadError::Io(err));
                    self.read_closed = true;
                }
            }
            wake(&mut inbox.reader);
        }
    }

    /// Takes what the body has ready: one chunk, or several joined into one
    /// write (the first alone when nothing follows it, with no copy).
    /// `Ready(Err)` when the body failed.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        let mut joined: Option<BytesMut> = None;
        while joined.as_ref().map_or(self.out.len(), |j| j.len()) < CHUNK {
            match Pin::new(&mut self.body).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) if self.out.is_empty() && joined.is_none() => {
                    self.out = chunk;
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    let out = &self.out;
                    let j = joined.get_or_insert_with(|| {
                        let mut j = BytesMut::with_capacity(out.len() + chunk.len());
                        j.extend_from_slice(out);
                        j
                    });
                    j.extend_from_slice(&chunk);
                }
                Poll::Ready(Some(Err(_))) => return Poll::Ready(Err(())),
                Poll::Ready(None) => {
                    // Dropped now, not with the connection: the session learns
                    // at once that its socket is done.
                    self.body = BoxBody::new(());
                    self.body_done = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if let Some(j) = joined {
            self.out = j.freeze();
        }
        if self.out.is_empty() && !self.body_done {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    /// Sets the deadline (if not set yet) and tells whether it has passed.
    fn deadline_passed(&mut self, cx: &mut Context<'_>, after: Duration) -> bool {
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        deadline.as_mut().poll(cx).is_ready()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Duplex<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.poll_read_side(cx);
        if this.lingering {
            if this.read_closed || this.deadline_passed(cx, this.deadlines.linger) {
                return Poll::Ready(());
            }
            return Poll::Pending;
        }
        loop {
            if this.body_done && this.deadline_passed(cx, this.deadlines.closing_write) {
                return Poll::Ready(());
            }
            if this.out.is_empty() {
                if this.body_done {
                    // Everything is written: end our side, await the peer's.
                    if Pin::new(&mut this.io).poll_shutdown(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.lingering = true;
                    this.deadline = None;
                    return Pin::new(this).poll(cx);
                }
                match this.poll_body(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(())) => return Poll::Ready(()),
                    Poll::Ready(Ok(())) => continue,
                }
            }
            match Pin::new(&mut this.io).poll_write(cx, &this.out) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                // All written: the bytes' allocation goes now, not with the
                // next write (an idle socket keeps nothing).
                Poll::Ready(Ok(n)) if n == this.out.len() => this.out = Bytes::new(),
                Poll::Ready(Ok(n)) => this.out.advance(n),
                // A peer that reads no more: once its socket is closing (a
                // slow consumer, a pong timeout), the deadline runs.
                Poll::Pending
                    if !this.body_done
                        && this.closing.as_ref().is_some_and(|c| c.poll_requested(cx))
                        && this.deadline_passed(cx, this.deadlines.closing_write) =>
                {
                    return Poll::Ready(())
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use actix_web::body::BodyStream;
    use bytestring::ByteString;
    use futures_util::{FutureExt, StreamExt};
    use tokio::io::{AsyncReadExt, DuplexStream};

    use super::*;
    use crate::{metrics::Metrics, sessions::outlet};

    const SHORT: Deadlines = Deadlines {
        closing_write: Duration::from_millis(100),
        linger: Duration::from_millis(100),
    };

    /// A socket served on one end of an in-memory pipe of `capacity` bytes,
    /// its outlet, its payload, and the peer's end.
    fn socket(
        capacity: usize,
    ) -> (
        actix_rt::task::JoinHandle<()>,
        outlet::Outlet,
        InboxReader,
        DuplexStream,
    ) {
        let (ours, peer) = tokio::io::duplex(capacity);
        let (outlet, body) = outlet::channel(64, Arc::new(Metrics::default()), || {});
        let closing = body.closing();
        let inbox = Rc::new(RefCell::new(Inbox::default()));
        let reader = InboxReader(inbox.clone());
        let duplex = Duplex::new(
            ours,
            BoxBody::new(BodyStream::new(body)),
            Bytes::from_static(b"HEAD"),
            inbox,
            Some(closing),
            SHORT,
        );
        (actix_rt::spawn(duplex), outlet, reader, peer)
    }

    #[actix_rt::test]
    async fn what_the_peer_sends_reaches_the_payload_in_order_then_its_end() {
        let (_conn, _outlet, mut payload, mut peer) = socket(1024);
        peer.write_all(b"abc").await.unwrap();
        assert_eq!(&payload.next().await.unwrap().unwrap()[..], b"abc");
        peer.write_all(b"def").await.unwrap();
        assert_eq!(&payload.next().await.unwrap().unwrap()[..], b"def");
        drop(peer);
        assert!(
            payload.next().await.is_none(),
            "the peer's end ends the payload"
        );
    }

    #[actix_rt::test]
    async fn a_reader_waiting_before_the_first_bytes_is_woken_by_them() {
        // The session may poll its payload before the handshake's answer is
        // written and the bytes read with the head are put in the inbox.
        let inbox = Rc::new(RefCell::new(Inbox::default()));
        let mut payload = InboxReader(inbox.clone());
        let woken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let waker = Waker::from(Arc::new(Flag(woken.clone())));
        let mut cx = Context::from_waker(&waker);
        assert!(payload.poll_next_unpin(&mut cx).is_pending());
        inbox.borrow_mut().put(Bytes::from_static(b"frame"));
        assert!(
            woken.load(std::sync::atomic::Ordering::SeqCst),
            "the waiting reader is woken"
        );
        match payload.poll_next_unpin(&mut cx) {
            Poll::Ready(Some(Ok(b))) => assert_eq!(&b[..], b"frame"),
            other => panic!("expected the bytes, got {other:?}"),
        }
    }

    #[actix_rt::test]
    async fn the_head_and_the_frames_are_written_then_the_peer_s_end_awaited() {
        let (conn, outlet, _payload, mut peer) = socket(1024);
        assert!(outlet.send_text(&ByteString::from_static("hi")));
        outlet.close(1000, "");
        drop(outlet);
        let mut written = Vec::new();
        peer.read_to_end(&mut written).await.unwrap();
        // The head, then a close frame with code 1000 (the queued text was
        // dropped by the immediate close, or went first).
        assert!(written.starts_with(b"HEAD"), "{written:?}");
        assert!(written.ends_with(&[0x88, 0x02, 0x03, 0xe8]), "{written:?}");
        // Our side is shut down (the read above ended); the connection
        // stays until the peer's end or the linger deadline.
        drop(peer);
        conn.await.unwrap();
    }

    #[actix_rt::test]
    async fn a_closing_socket_whose_peer_reads_nothing_lets_its_connection_go() {
        let (conn, outlet, _payload, _peer) = socket(64);
        let frame = ByteString::from("x".repeat(1000));
        for _ in 0..8 {
            assert!(outlet.send_text(&frame));
        }
        // The pipe is full and the peer reads nothing: the connection waits.
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        let mut conn = conn;
        assert!(
            (&mut conn).now_or_never().is_none(),
            "no close was asked for"
        );
        // Once the socket is closing, its write has the deadline.
        outlet.close(4008, "slow consumer");
        tokio::time::timeout(Duration::from_secs(10), conn)
            .await
            .expect("the connection goes after the closing deadline")
            .unwrap();
    }
}
