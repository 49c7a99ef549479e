//! Keep the daemon's resident memory at what one frame needs.
//!
//! Every frame allocates and frees the models' activations, several MB
//! each, from two threads. glibc serves a freed mmap-sized block's successors
//! from its heap arenas once it has raised its "dynamic" mmap threshold past
//! that size, and arenas rarely shrink: resident memory then grows to the
//! worst interleaving of both threads' buffers and stays there. A fixed
//! threshold (which also turns the dynamic one off) maps every large buffer
//! and unmaps it on free. The price is fresh pages (page faults) for every
//! such buffer, every frame. `fchm bench pipeline` measures both settings
//! (the README quotes them).

/// Blocks of this size and above get their own mapping, returned on free.
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// Apply the allocator settings (`pipeline.lean_memory`); call before any
/// thread starts. Without `lean`, glibc's defaults stay.
pub fn configure(lean: bool) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if lean {
        // SAFETY: mallopt only sets allocator parameters; called before
        // other threads exist.
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        if ok != 1 {
            log::warn!("mallopt(M_MMAP_THRESHOLD) refused; resident memory may grow");
        }
    }
}
