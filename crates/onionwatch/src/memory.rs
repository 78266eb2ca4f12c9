//! How the process's allocator keeps memory.
//!
//! glibc's malloc gives threads their own arenas, up to 8 per core, and
//! keeps what is freed in each for that arena's later use. The runtime's
//! blocking threads come and go (a `/metrics` render, a dashboard sample),
//! so over hours `watch` spread its allocations over 16 arenas that held
//! 217 MB from the system for 50 MB in use (`scripts/soak`, RELIABILITY.md
//! "Soak"). Two arenas, and what is free handed back to the system every
//! minute, keep the resident size near what is in use.

/// Arenas unless `MALLOC_ARENA_MAX` says otherwise: one for the runtime's
/// workers to share with the main thread, one to spare contention.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 2;

/// How often free memory goes back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Limit malloc's arenas. Call before any thread starts (arenas are made
/// as threads first allocate); an operator's `MALLOC_ARENA_MAX` wins.
pub fn init() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
    }
}

/// Hand free memory back to the system every [`TRIM_EVERY`], for as long as
/// the runtime runs (a long-running command; a short one exits first).
pub fn spawn_trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            // It walks every arena: off the async workers.
            // SAFETY: malloc_trim only releases free pages.
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
    });
}
