//! The write half of one socket: a bounded queue of frames that IS the
//! socket's HTTP response body. Rooms push shared frames without waiting;
//! when the connection can take more bytes, the body drains the queued frames,
//! encodes them into one buffer, and hands that to the connection in chunks:
//! one queue hop per frame and one write for many frames. A full queue means a
//! slow consumer. A close request goes around the queue, so a socket whose
//! queue is full can still be told to close. An idle socket holds no queue
//! storage and no encoding buffer: both are allocated by a burst and freed
//! once it has been written.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{
        atomic::{AtomicU32, AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
    task::{Context, Poll},
    time::Instant,
};

use actix_codec::Encoder;
use actix_http::ws::{CloseCode, CloseReason, Codec, Message};
use actix_web::web::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::{task::AtomicWaker, Stream};

use crate::metrics::Metrics;

/// Close codes of PROTOCOL.md beyond the standard ones.
pub mod codes {
    /// Session ended (logout, password change, expiry).
    pub const SESSION_ENDED: u16 = 4001;
    /// Banned while connected.
    pub const BANNED: u16 = 4003;
    /// Slow consumer: the outgoing queue stayed full.
    pub const SLOW_CONSUMER: u16 = 4008;
}

/// One item for the socket.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A text frame (shared bytes).
    Text(ByteString),
    /// A whole server frame, encoded once for every socket of a broadcast
    /// (server frames are not masked, so every socket sends the same bytes).
    Encoded(Bytes),
    /// A ping.
    Ping(Bytes),
    /// A pong answering the client's ping.
    Pong(Bytes),
    /// Close after every frame queued before it.
    Close(u16, &'static str),
}

/// What the room side and the body share: the queue, the close request and
/// the body's waker. Nothing is allocated for the queue until a frame is
/// queued, and a queue a burst grew is given back once it has drained.
struct Shared {
    state: Mutex<State>,
    /// The reader's waker (the socket's body, or a detached reader).
    waker: AtomicWaker,
    /// Most frames queued at once.
    capacity: usize,
    /// Live [`Outlet`] handles; the reader sees the end when none is left.
    senders: AtomicUsize,
    /// When the client was last heard from (a pong), in [`clock`] seconds.
    heard: AtomicU32,
    /// The node's metrics (slow consumers are counted there).
    metrics: Arc<Metrics>,
}

/// Seconds since this process first asked: a coarse clock for keep-alive.
pub fn clock() -> u32 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs() as u32
}

#[derive(Default)]
struct State {
    queue: VecDeque<Outbound>,
    /// A close requested around the queue; the first reason wins.
    close: Option<CloseReason>,
    /// The reader is gone: nothing more is queued.
    reader_gone: bool,
}

/// Slots a queue keeps once drained: enough for a live socket's usual
/// backlog without reallocating on every frame; a burst beyond it is freed.
const KEEP_SLOTS: usize = 8;

impl Shared {
    fn new(capacity: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            waker: AtomicWaker::new(),
            capacity: capacity.max(1),
            senders: AtomicUsize::new(1),
            heard: AtomicU32::new(clock()),
            metrics,
        })
    }

    fn close(&self, code: u16, description: &str) {
        let mut st = self.state.lock().unwrap();
        if st.close.is_none() {
            st.close = Some(CloseReason {
                code: CloseCode::from(code),
                description: (!description.is_empty()).then(|| description.to_string()),
            });
            drop(st);
            self.waker.wake();
        }
    }

    /// True once a close was requested.
    fn closing(&self) -> bool {
        self.state.lock().unwrap().close.is_some()
    }

    fn close_reason(&self) -> Option<CloseReason> {
        self.state.lock().unwrap().close.clone()
    }

    /// The next frame, `Ready(None)` once every outlet is gone and the queue
    /// is empty.
    fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<Outbound>> {
        self.waker.register(cx.waker());
        let mut st = self.state.lock().unwrap();
        match st.queue.pop_front() {
            Some(item) => {
                if st.queue.is_empty() && st.queue.capacity() > KEEP_SLOTS {
                    st.queue.shrink_to(KEEP_SLOTS);
                }
                Poll::Ready(Some(item))
            }
            None if self.senders.load(Ordering::Acquire) == 0 => Poll::Ready(None),
            None => Poll::Pending,
        }
    }

    /// The reader went away: queued frames are dropped, pushes fail.
    fn reader_gone(&self) {
        let mut st = self.state.lock().unwrap();
        st.reader_gone = true;
        st.queue = VecDeque::new();
    }
}

/// What a room holds to reach one socket.
pub struct Outlet {
    shared: Arc<Shared>,
}

impl Clone for Outlet {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Outlet {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last one: the reader sees the end.
            self.shared.waker.wake();
        }
    }
}

/// Why a frame could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// The queue is full: a slow consumer.
    Full,
    /// The socket is gone.
    Closed,
}

impl Outlet {
    /// Queues a frame without waiting.
    pub fn push(&self, item: Outbound) -> Result<(), PushError> {
        let mut st = self.shared.state.lock().unwrap();
        if st.reader_gone {
            return Err(PushError::Closed);
        }
        if st.queue.len() >= self.shared.capacity {
            return Err(PushError::Full);
        }
        st.queue.push_back(item);
        drop(st);
        self.shared.waker.wake();
        Ok(())
    }

    /// Queues a text frame; a full queue closes the socket as a slow consumer.
    /// Returns false when the socket is (now) gone.
    pub fn send_text(&self, frame: &ByteString) -> bool {
        self.send(Outbound::Text(frame.clone()))
    }

    /// Queues a frame [`encode_text`] made, like [`Outlet::send_text`].
    pub fn send_encoded(&self, frame: &Bytes) -> bool {
        self.send(Outbound::Encoded(frame.clone()))
    }

    fn send(&self, item: Outbound) -> bool {
        match self.push(item) {
            Ok(()) => true,
            Err(PushError::Full) => {
                self.shared.metrics.slow_consumers.inc();
                self.close(codes::SLOW_CONSUMER, "slow consumer");
                false
            }
            Err(PushError::Closed) => false,
        }
    }

    /// Closes the socket with this code at once, dropping anything still queued.
    pub fn close(&self, code: u16, description: &str) {
        self.shared.close(code, description);
    }

    /// Closes the socket after the frames already queued have been written
    /// (at once if the queue is full).
    pub fn close_after_queue(&self, code: u16, description: &'static str) {
        if self.push(Outbound::Close(code, description)).is_err() {
            self.close(code, description);
        }
    }

    /// True once a close was requested.
    pub fn is_closing(&self) -> bool {
        self.shared.closing()
    }

    /// Records that the client answered a ping.
    pub fn heard(&self) {
        self.shared.heard.store(clock(), Ordering::Relaxed);
    }

    /// Seconds, at `now` (a [`clock`] reading), since the client last
    /// answered a ping (or connected).
    pub fn silent_at(&self, now: u32) -> u32 {
        now.saturating_sub(self.shared.heard.load(Ordering::Relaxed))
    }
}

/// The reading end of a [`detached`] outlet.
pub struct Answers {
    shared: Arc<Shared>,
}

impl Answers {
    /// The next frame; `None` once every outlet handle is gone and nothing is queued.
    pub async fn recv(&mut self) -> Option<Outbound> {
        std::future::poll_fn(|cx| self.shared.poll_pop(cx)).await
    }

    /// The next frame if one is queued now.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        self.shared.state.lock().unwrap().queue.pop_front()
    }
}

impl Drop for Answers {
    fn drop(&mut self) {
        self.shared.reader_gone();
    }
}

/// An outlet whose frames are read by the caller instead of a socket (a
/// message posted over HTTP waits for its answer on it).
pub fn detached(capacity: usize, metrics: Arc<Metrics>) -> (Outlet, Answers) {
    let shared = Shared::new(capacity, metrics);
    (
        Outlet {
            shared: shared.clone(),
        },
        Answers { shared },
    )
}

/// Most bytes handed to the connection at once: the connection
/// (`web::upgrade`) writes each chunk straight from these bytes, and joins
/// small ones up to this size, so a burst (hello + a 50-message history)
/// goes out in a few writes and leaves no buffer behind an idle socket.
pub const CHUNK: usize = 4 * 1024;

/// A text frame encoded as the server sends it, for [`Outlet::send_encoded`]:
/// a broadcast encodes once instead of once per socket.
pub fn encode_text(text: &ByteString) -> Bytes {
    let mut buf = BytesMut::with_capacity(text.len() + 10);
    // Encoding a server frame into a buffer cannot fail.
    let _ = Codec::new().encode(Message::Text(text.clone()), &mut buf);
    buf.freeze()
}

/// The socket's response body: drains the outlet's queue.
pub struct OutletBody {
    shared: Arc<Shared>,
    codec: Codec,
    /// Frames being encoded; empty (no allocation) between bursts.
    buf: BytesMut,
    /// Encoded bytes not yet handed to the connection, in [`CHUNK`] slices.
    pending: Bytes,
    done: bool,
    on_done: Option<Box<dyn FnOnce()>>,
}

/// Creates an outlet with a queue of `capacity` frames and the body that
/// drains it; `on_done` runs once the body is finished or dropped (the socket
/// is closed or gone). A slow consumer is counted in `metrics`.
pub fn channel(
    capacity: usize,
    metrics: Arc<Metrics>,
    on_done: impl FnOnce() + 'static,
) -> (Outlet, OutletBody) {
    let shared = Shared::new(capacity, metrics);
    let body = OutletBody {
        shared: shared.clone(),
        codec: Codec::new(),
        buf: BytesMut::new(),
        pending: Bytes::new(),
        done: false,
        on_done: Some(Box::new(on_done)),
    };
    (Outlet { shared }, body)
}

/// Tells whether a socket's close was requested, for the connection writing
/// its body (`web::upgrade`): a write the peer no longer reads cannot make
/// the connection outlive a closed socket.
#[derive(Clone)]
pub struct Closing(Arc<Shared>);

impl Closing {
    /// True once a close was requested (the body may not have got to it);
    /// until then, the task is woken when one is (or a frame is queued).
    /// For the task that polls the body, as the body's own waker is.
    pub fn poll_requested(&self, cx: &mut Context<'_>) -> bool {
        self.0.waker.register(cx.waker());
        self.0.closing()
    }
}

impl OutletBody {
    /// What the connection watches for a close the body cannot yet write.
    pub fn closing(&self) -> Closing {
        Closing(self.shared.clone())
    }

    fn encode(&mut self, msg: Message) {
        // Encoding server frames into a buffer cannot fail.
        let _ = self.codec.encode(msg, &mut self.buf);
    }
}

impl Stream for OutletBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if !this.pending.is_empty() {
            let n = this.pending.len().min(CHUNK);
            return Poll::Ready(Some(Ok(this.pending.split_to(n))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        this.shared.waker.register(cx.waker());
        if let Some(reason) = this.shared.close_reason() {
            // A close requested around the queue: what is queued is dropped.
            this.encode(Message::Close(Some(reason)));
            this.done = true;
        } else {
            while this.buf.len() < CHUNK {
                match this.shared.poll_pop(cx) {
                    Poll::Ready(Some(Outbound::Text(t))) => this.encode(Message::Text(t)),
                    Poll::Ready(Some(Outbound::Encoded(b))) if this.buf.is_empty() => {
                        // Handed over as it is: no copy, no buffer.
                        this.pending = b;
                        let n = this.pending.len().min(CHUNK);
                        return Poll::Ready(Some(Ok(this.pending.split_to(n))));
                    }
                    Poll::Ready(Some(Outbound::Encoded(b))) => this.buf.extend_from_slice(&b),
                    Poll::Ready(Some(Outbound::Ping(b))) => this.encode(Message::Ping(b)),
                    Poll::Ready(Some(Outbound::Pong(b))) => this.encode(Message::Pong(b)),
                    Poll::Ready(Some(Outbound::Close(code, description))) => {
                        this.shared.close(code, description);
                        let reason = this.shared.close_reason();
                        this.encode(Message::Close(reason));
                        this.done = true;
                        break;
                    }
                    Poll::Ready(None) => {
                        this.done = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        if !this.buf.is_empty() {
            // The whole buffer goes, not a split of it: a split would keep the
            // burst's allocation (hello + history: tens of KiB) behind an idle
            // socket for as long as it stays open. The slices share it until
            // the connection has copied the last one.
            this.pending = std::mem::take(&mut this.buf).freeze();
            let n = this.pending.len().min(CHUNK);
            return Poll::Ready(Some(Ok(this.pending.split_to(n))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl Drop for OutletBody {
    fn drop(&mut self) {
        self.shared.reader_gone();
        if let Some(f) = self.on_done.take() {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{FutureExt, StreamExt};

    use super::*;

    /// Everything the body hands over before it would wait.
    fn drain(body: &mut OutletBody) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(Some(Ok(chunk))) = body.next().now_or_never() {
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[test]
    fn a_broadcast_frame_goes_out_as_the_text_frame_would() {
        let metrics = Arc::new(Metrics::default());
        let (outlet, mut body) = channel(8, metrics, || {});
        let text = ByteString::from("{\"type\":\"message\"}");
        let shared = encode_text(&text);

        // Alone: handed over as it is, the very same bytes.
        assert!(outlet.send_encoded(&shared));
        let alone = body.next().now_or_never().unwrap().unwrap().unwrap();
        assert_eq!(alone.as_ptr(), shared.as_ptr(), "no copy");

        // After a text frame: one write with both, each encoded alike.
        assert!(outlet.send_text(&text));
        assert!(outlet.send_encoded(&shared));
        let both = drain(&mut body);
        assert_eq!(both, [&shared[..], &shared[..]].concat());
    }
}
