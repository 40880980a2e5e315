//! Memory handed back to the system after a wave of sockets has left. glibc's
//! allocator keeps freed memory in its arenas for reuse: a node that held
//! 10,000 sockets for a while would keep their peak for ever. One node-level
//! task watches the socket and room counts and, once a wave of leavers is
//! over (the count fell by [`WAVE`] since its peak and then held still for a
//! [`PERIOD`]) or a room has stopped, asks the allocator to return its free
//! pages (`malloc_trim`). Steady traffic never triggers it; one trim costs
//! milliseconds, off the runtime's threads.

use std::{sync::Arc, time::Duration};

use crate::metrics::Metrics;

/// Sockets that must have left since the last peak before memory is trimmed.
pub const WAVE: u64 = 500;

/// How often the counts are looked at.
pub const PERIOD: Duration = Duration::from_secs(2);

/// When to trim, from the counts seen at each period.
#[derive(Debug, Default)]
pub struct Watch {
    peak: u64,
    last: u64,
    rooms: u64,
}

impl Watch {
    /// Takes this period's socket and room counts; true when memory should
    /// be trimmed now.
    pub fn trim_now(&mut self, sockets: u64, rooms: u64) -> bool {
        let settled = sockets >= self.last;
        let wave_over = settled && self.peak >= sockets + WAVE;
        let room_gone = rooms < self.rooms;
        self.peak = self.peak.max(sockets);
        self.last = sockets;
        self.rooms = rooms;
        if wave_over || (room_gone && settled) {
            self.peak = sockets;
            return true;
        }
        false
    }
}

/// Watches the node's counts (its `connections` and `rooms` gauges) for
/// ever; trims after every wave of leavers.
pub async fn return_after_waves(metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = Watch::default();
    loop {
        tick.tick().await;
        if watch.trim_now(metrics.connections.get(), metrics.rooms.get()) {
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}

/// Returns the allocator's free memory to the system, where the allocator
/// can (glibc); a no-op elsewhere.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the allocator holds: bytes the program has allocated and not freed,
/// and bytes of the allocator's pages resident in memory (the difference is
/// what freed memory the allocator keeps, plus its own metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heap {
    /// Live allocations.
    pub allocated: u64,
    /// Resident pages of the allocator.
    pub resident: u64,
}

/// Set by the binary that makes jemalloc its global allocator.
static ON_JEMALLOC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says that this process allocates with jemalloc (the `stampede` binary with
/// the `jemalloc` feature calls it first thing): [`heap`] reports from then on.
pub fn running_on_jemalloc() {
    ON_JEMALLOC.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The allocator's figures now, when the process runs on jemalloc (see
/// [`running_on_jemalloc`]); `None` elsewhere, as in tests that link the
/// library with another allocator.
pub fn heap() -> Option<Heap> {
    if !ON_JEMALLOC.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    #[cfg(feature = "jemalloc")]
    {
        use tikv_jemalloc_ctl::{epoch, stats};
        epoch::advance().ok()?;
        let allocated = stats::allocated::read().ok()? as u64;
        let resident = stats::resident::read().ok()? as u64;
        (allocated > 0).then_some(Heap {
            allocated,
            resident,
        })
    }
    #[cfg(not(feature = "jemalloc"))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_a_wave_is_over_and_when_a_room_stops() {
        let mut w = Watch::default();
        assert!(!w.trim_now(0, 1));
        assert!(!w.trim_now(3_000, 1), "joining");
        assert!(!w.trim_now(10_000, 1));
        assert!(!w.trim_now(6_000, 1), "still leaving");
        assert!(!w.trim_now(200, 1), "still leaving");
        assert!(w.trim_now(200, 1), "the wave is over");
        assert!(!w.trim_now(200, 1), "once");
        assert!(!w.trim_now(150, 1), "a few leave");
        assert!(!w.trim_now(150, 1), "fewer than a wave");
        assert!(w.trim_now(150, 0), "a room stopped");
        assert!(!w.trim_now(150, 0));
    }
}
