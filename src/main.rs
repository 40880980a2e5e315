//! The `stampede` binary: parse the command line and hand over to [`stampede::cli`].
//!
//! With the `jemalloc` feature (the default) the binary's allocator is
//! jemalloc, set up to give freed memory back: background threads purge
//! dirty pages after a second, and purged pages are returned at once (no
//! "muzzy" stage). Measured in the README: fewer bytes per idle socket than
//! glibc's malloc, and memory back within seconds after a wave of sockets.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (the `MALLOC_CONF` of its
/// prefixed build); `_RJEM_MALLOC_CONF` in the environment overrides them.
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static u8> =
    Some(&b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0]);

fn main() -> std::process::ExitCode {
    #[cfg(feature = "jemalloc")]
    stampede::memory::running_on_jemalloc();
    stampede::cli::main()
}
