//! HTTP connections: a cap on open connections per client address, and a
//! deadline on every request head of a keep-alive connection.
//!
//! actix-http's `client_request_timeout` only covers the *first* request of a
//! connection: once a keep-alive connection has served one request, the next
//! head may arrive one byte a second for ever. [`HeadDeadline`] wraps the TCP
//! stream and watches what is read and written, without parsing HTTP beyond
//! the end of a head:
//!
//! - the first byte read after a response started (or on a new connection)
//!   starts a request head and arms the deadline;
//! - a blank line (`\r\n\r\n` or `\n\n`) ends the head and disarms it;
//! - the next write (the response's status line) makes the next byte read the
//!   start of another head; a `101` response (a WebSocket) ends all watching,
//!   an interim `100 Continue` does not count as a response;
//! - when the deadline passes, reads fail and the connection is dropped.
//!
//! Limits of the approach: a pipelining client whose next head had already
//! partly arrived gets the deadline from the first byte read after the
//! response; a request body sent after a response started is treated as a new
//! head (it must end in a blank line within the deadline). Neither occurs with
//! browsers or ordinary HTTP clients, which do not pipeline and send bodies
//! before reading responses.

use std::{
    collections::HashMap,
    future::Future as _,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use actix_rt::net::TcpStream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

use crate::web::{address_key, TrustedProxies};

/// Open HTTP connections per client address, capped.
pub struct ConnectionLimits {
    cap: u32,
    exempt: TrustedProxies,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One counted connection; uncounted when dropped.
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    key: Option<IpAddr>,
}

impl ConnectionLimits {
    /// `cap` connections per address (0: no cap); peers in `exempt` (trusted
    /// proxies, which carry many clients) are not counted.
    pub fn new(cap: u32, exempt: TrustedProxies) -> Arc<Self> {
        Arc::new(Self {
            cap,
            exempt,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection from `peer`, or `None` when the address holds
    /// `cap` already.
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Option<ConnectionSlot> {
        let key = peer
            .filter(|_| self.cap > 0)
            .filter(|ip| !self.exempt.contains(ip))
            .map(address_key);
        if let Some(key) = key {
            let mut open = self.open.lock().unwrap();
            let n = open.entry(key).or_insert(0);
            if *n >= self.cap {
                return None;
            }
            *n += 1;
        }
        Some(ConnectionSlot {
            limits: self.clone(),
            key,
        })
    }

    /// Connections counted for `peer` now.
    pub fn open(&self, peer: IpAddr) -> u32 {
        let open = self.open.lock().unwrap();
        open.get(&address_key(peer)).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut open = self.limits.open.lock().unwrap();
            if let Some(n) = open.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&key);
                }
            }
        }
    }
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request head (no deadline).
    Idle,
    /// Reading a head: the deadline is armed. `nl` tracks the blank line.
    Head { nl: u8 },
    /// The head is in; the next write starts the response.
    Request,
    /// The response has started; the next byte read starts another head.
    Responding,
    /// Upgraded (WebSocket): no more HTTP heads.
    Upgraded,
}

/// What the deadline should do after some bytes.
#[derive(Debug, PartialEq, Eq)]
enum Arm {
    Keep,
    Start,
    Stop,
}

/// Follows heads and responses through the bytes read and written.
#[derive(Debug)]
struct HeadWatch {
    phase: Phase,
}

impl HeadWatch {
    fn new() -> Self {
        Self { phase: Phase::Idle }
    }

    /// Follows bytes read.
    fn read(&mut self, bytes: &[u8]) -> Arm {
        if bytes.is_empty() || self.phase == Phase::Upgraded {
            return Arm::Keep;
        }
        let mut arm = Arm::Keep;
        if matches!(self.phase, Phase::Idle | Phase::Responding) {
            self.phase = Phase::Head { nl: 0 };
            arm = Arm::Start;
        }
        let Phase::Head { mut nl } = self.phase else {
            return arm;
        };
        for &b in bytes {
            nl = match (nl, b) {
                (1 | 2, b'\n') => {
                    self.phase = Phase::Request;
                    return Arm::Stop;
                }
                (1, b'\r') => 2,
                (_, b'\n') => 1,
                _ => 0,
            };
        }
        self.phase = Phase::Head { nl };
        arm
    }

    /// Follows a write.
    fn write(&mut self, bytes: &[u8]) {
        if self.phase != Phase::Request || bytes.is_empty() {
            return;
        }
        if bytes.starts_with(b"HTTP/1.1 101 ") {
            self.phase = Phase::Upgraded;
        } else if !bytes.starts_with(b"HTTP/1.1 100 ") {
            self.phase = Phase::Responding;
        }
    }
}

/// A TCP stream whose every request head must arrive within `timeout`.
pub struct HeadDeadline {
    io: TcpStream,
    timeout: Duration,
    watch: HeadWatch,
    deadline: Option<Pin<Box<Sleep>>>,
    _slot: ConnectionSlot,
}

impl HeadDeadline {
    /// Wraps an accepted stream holding its connection slot.
    pub fn new(io: TcpStream, timeout: Duration, slot: ConnectionSlot) -> Self {
        Self {
            io,
            timeout,
            watch: HeadWatch::new(),
            deadline: None,
            _slot: slot,
        }
    }

    fn timed_out() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "request head took too long")
    }
}

impl AsyncRead for HeadDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.deadline.as_ref().is_some_and(|d| d.is_elapsed()) {
            return Poll::Ready(Err(Self::timed_out()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                match this.watch.read(&buf.filled()[before..]) {
                    Arm::Keep => {}
                    Arm::Start => {
                        let at = Instant::now() + this.timeout;
                        this.deadline = Some(Box::pin(tokio::time::sleep_until(at)));
                    }
                    Arm::Stop => this.deadline = None,
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // Wake the reader when the deadline passes.
                if let Some(deadline) = &mut this.deadline {
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(Self::timed_out()));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for HeadDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            this.watch.write(&buf[..n]);
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One moment of a connection, as [`HeadWatch`] sees it.
    enum Io {
        /// Bytes read, and what the watch should do about the deadline.
        Read(&'static [u8], Arm),
        /// Bytes written.
        Write(&'static [u8]),
    }

    #[test]
    fn heads_arm_and_disarm_the_deadline() {
        use Io::{Read, Write};
        // One connection's steps, in order, as data (reads and writes alike by design).
        let scenario = [
            Read(b"GET / HTTP/1.1\r\nHost: a\r\n", Arm::Start),
            Read(b"\r", Arm::Keep),
            Read(b"\n", Arm::Stop),
            // A body read before the response is not a head.
            Read(b"{}", Arm::Keep),
            Write(b"HTTP/1.1 100 Continue\r\n\r\n"),
            Read(b"{}", Arm::Keep),
            Write(b"HTTP/1.1 200 OK\r\n"),
            Write(b"more of the body"),
            // The next request on the connection: armed again, bare LFs end it too.
            Read(b"G", Arm::Start),
            Read(b"ET / HTTP/1.1\nHost: a\n", Arm::Keep),
            Read(b"\n", Arm::Stop),
            Write(b"HTTP/1.1 101 Switching Protocols\r\n"),
            // WebSocket frames are never heads.
            Read(b"\x81\x85abcd", Arm::Keep),
            Write(b"HTTP/1.1 200 OK\r\n"),
            Read(b"GET", Arm::Keep),
        ];
        let mut w = HeadWatch::new();
        for (step, io) in scenario.into_iter().enumerate() {
            match io {
                Read(bytes, want) => assert_eq!(w.read(bytes), want, "step {step}"),
                Write(bytes) => w.write(bytes),
            }
        }
    }

    #[test]
    fn connections_are_counted_per_address_key() {
        let limits = ConnectionLimits::new(1, TrustedProxies(vec!["10.0.0.1".parse().unwrap()]));
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let held = limits.admit(ip("2001:db8:0:1::1")).expect("first");
        assert!(limits.admit(ip("2001:db8:0:1::2")).is_none(), "same /64");
        assert!(limits.admit(ip("2001:db8:0:2::1")).is_some());
        // Trusted proxies carry many clients: never counted.
        let _p1 = limits.admit(ip("10.0.0.1")).unwrap();
        let _p2 = limits.admit(ip("10.0.0.1")).unwrap();
        drop(held);
        assert!(limits.admit(ip("2001:db8:0:1::3")).is_some());
    }
}
