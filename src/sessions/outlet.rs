//! The write half of one socket: a bounded queue of frames drained by exactly
//! ONE writer task that owns the `actix_ws::Session` (one writer keeps frame
//! order). Rooms push with `try_send` and never wait; a full queue means a slow
//! consumer. Closing goes around the queue through a [`CloseSignal`], so a
//! socket whose queue is full can still be told to close.

use std::sync::{Arc, Mutex};

use actix_ws::{CloseCode, CloseReason};
use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::{mpsc, Notify};

/// Close codes of PROTOCOL.md beyond the standard ones.
pub mod codes {
    /// Session ended (logout, password change, expiry).
    pub const SESSION_ENDED: u16 = 4001;
    /// Banned while connected.
    pub const BANNED: u16 = 4003;
    /// Slow consumer: the outgoing queue stayed full.
    pub const SLOW_CONSUMER: u16 = 4008;
}

/// One item for the writer.
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

/// A one-shot "close with this reason" flag the writer watches with priority.
#[derive(Default)]
pub struct CloseSignal {
    reason: Mutex<Option<CloseReason>>,
    notify: Notify,
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
            self.notify.notify_one();
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

    /// Asks the writer to close the socket with this code at once, dropping
    /// anything still queued.
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

/// Creates an outlet with a queue of `capacity` frames and spawns its writer
/// task; `on_done` runs when the writer has finished (socket closed or gone).
pub fn spawn_writer(
    mut session: actix_ws::Session,
    capacity: usize,
    on_done: impl FnOnce() + 'static,
) -> Outlet {
    let (tx, mut rx) = mpsc::channel::<Outbound>(capacity.max(1));
    let close = Arc::new(CloseSignal::default());
    let signal = close.clone();
    actix_rt::spawn(async move {
        loop {
            let item = tokio::select! {
                biased;
                _ = signal.notify.notified() => break,
                item = rx.recv() => match item {
                    Some(item) => item,
                    None => break,
                },
            };
            let write = async {
                match item {
                    Outbound::Text(t) => session.text(t).await,
                    Outbound::Ping(b) => session.ping(&b).await,
                    Outbound::Pong(b) => session.pong(&b).await,
                    Outbound::Close(code, description) => {
                        signal.close(code, description);
                        Err(actix_ws::Closed)
                    }
                }
            };
            let ok = tokio::select! {
                biased;
                _ = signal.notify.notified() => break,
                r = write => r.is_ok(),
            };
            if !ok {
                break;
            }
        }
        // A close frame, if the peer is still there to take it; bounded, since a
        // slow consumer may never read it.
        let reason = signal.take();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(2), session.close(reason)).await;
        on_done();
    });
    Outlet { tx, close }
}
