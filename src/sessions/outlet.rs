//! The write half of one socket: a bounded queue of frames that IS the
//! socket's HTTP response body. Rooms push shared frames with `try_send` and
//! never wait; when the connection can take more bytes, the body drains every
//! queued frame, encodes them into one buffer, and hands that to the
//! connection: one queue hop per frame and one write for many frames. A full
//! queue means a slow consumer. Closing goes around the queue through a
//! [`CloseSignal`], so a socket whose queue is full can still be told to close.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use actix_codec::Encoder;
use actix_http::ws::{CloseCode, CloseReason, Codec, Message};
use actix_web::web::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::{task::AtomicWaker, Stream};
use tokio::sync::mpsc;

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
    /// A ping.
    Ping(Bytes),
    /// A pong answering the client's ping.
    Pong(Bytes),
    /// Close after every frame queued before it.
    Close(u16, &'static str),
}

/// A one-shot "close with this reason" flag the body checks before the queue.
#[derive(Default)]
pub struct CloseSignal {
    reason: Mutex<Option<CloseReason>>,
    waker: AtomicWaker,
}

impl CloseSignal {
    /// Requests a close; the first reason wins.
    pub fn close(&self, code: u16, description: &str) {
        let mut r = self.reason.lock().unwrap();
        if r.is_none() {
            *r = Some(CloseReason {
                code: CloseCode::from(code),
                description: (!description.is_empty()).then(|| description.to_string()),
            });
            drop(r);
            self.waker.wake();
        }
    }

    /// True once a close was requested.
    pub fn is_closing(&self) -> bool {
        self.reason.lock().unwrap().is_some()
    }

    fn take(&self) -> Option<CloseReason> {
        self.reason.lock().unwrap().clone()
    }
}

/// What a room holds to reach one socket.
#[derive(Clone)]
pub struct Outlet {
    tx: mpsc::Sender<Outbound>,
    close: Arc<CloseSignal>,
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
        self.tx.try_send(item).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PushError::Full,
            mpsc::error::TrySendError::Closed(_) => PushError::Closed,
        })
    }

    /// Queues a text frame; a full queue closes the socket as a slow consumer.
    /// Returns false when the socket is (now) gone.
    pub fn send_text(&self, frame: &ByteString) -> bool {
        match self.push(Outbound::Text(frame.clone())) {
            Ok(()) => true,
            Err(PushError::Full) => {
                crate::metrics::SLOW_CONSUMERS.inc();
                self.close(codes::SLOW_CONSUMER, "slow consumer");
                false
            }
            Err(PushError::Closed) => false,
        }
    }

    /// Closes the socket with this code at once, dropping anything still queued.
    pub fn close(&self, code: u16, description: &str) {
        self.close.close(code, description);
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
        self.close.is_closing()
    }
}

/// An outlet whose frames are read by the caller instead of a socket (a
/// message posted over HTTP waits for its answer on it).
pub fn detached(capacity: usize) -> (Outlet, mpsc::Receiver<Outbound>) {
    let (tx, rx) = mpsc::channel::<Outbound>(capacity.max(1));
    (
        Outlet {
            tx,
            close: Arc::new(CloseSignal::default()),
        },
        rx,
    )
}

/// Most bytes encoded into one chunk before it is handed to the connection.
const CHUNK: usize = 16 * 1024;

/// The socket's response body: drains the outlet's queue.
pub struct OutletBody {
    rx: mpsc::Receiver<Outbound>,
    close: Arc<CloseSignal>,
    codec: Codec,
    buf: BytesMut,
    done: bool,
    on_done: Option<Box<dyn FnOnce()>>,
}

/// Creates an outlet with a queue of `capacity` frames and the body that
/// drains it; `on_done` runs once the body is finished or dropped (the socket
/// is closed or gone).
pub fn channel(capacity: usize, on_done: impl FnOnce() + 'static) -> (Outlet, OutletBody) {
    let (tx, rx) = mpsc::channel::<Outbound>(capacity.max(1));
    let close = Arc::new(CloseSignal::default());
    let body = OutletBody {
        rx,
        close: close.clone(),
        codec: Codec::new(),
        buf: BytesMut::new(),
        done: false,
        on_done: Some(Box::new(on_done)),
    };
    (Outlet { tx, close }, body)
}

impl OutletBody {
    fn encode(&mut self, msg: Message) {
        // Encoding server frames into a buffer cannot fail.
        let _ = self.codec.encode(msg, &mut self.buf);
    }
}

impl Stream for OutletBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        this.close.waker.register(cx.waker());
        if this.close.is_closing() {
            // A close requested around the queue: what is queued is dropped.
            let reason = this.close.take();
            this.encode(Message::Close(reason));
            this.done = true;
        } else {
            while this.buf.len() < CHUNK {
                match this.rx.poll_recv(cx) {
                    Poll::Ready(Some(Outbound::Text(t))) => this.encode(Message::Text(t)),
                    Poll::Ready(Some(Outbound::Ping(b))) => this.encode(Message::Ping(b)),
                    Poll::Ready(Some(Outbound::Pong(b))) => this.encode(Message::Pong(b)),
                    Poll::Ready(Some(Outbound::Close(code, description))) => {
                        this.close.close(code, description);
                        let reason = this.close.take();
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
            return Poll::Ready(Some(Ok(this.buf.split().freeze())));
        }
        if this.done {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl Drop for OutletBody {
    fn drop(&mut self) {
        if let Some(f) = self.on_done.take() {
            f();
        }
    }
}
