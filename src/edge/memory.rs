//! Keep the daemon's resident memory near what one frame needs, without
//! paying for it in page faults.
//!
//! Every frame allocates and frees the models' activations, up to 16 MB
//! each, from two threads, in the same order every frame. glibc's defaults
//! serve a freed mmap-sized block's successors from its heap arenas once its
//! "dynamic" mmap threshold has risen past that size, and arenas rarely
//! shrink: resident memory grows to the worst interleaving of both threads'
//! buffers and stays there (`fchm bench pipeline`: 178 MB). A fixed
//! threshold (which also turns the dynamic one off) maps every large buffer
//! and unmaps it on free: memory stays bounded, but the kernel then faults in
//! every 4 KiB page of every buffer, every frame, which cost the daemon 40 %
//! of its throughput in a VM.
//!
//! `lean_memory` keeps the fixed threshold and gives the biggest blocks their
//! own mapping, aligned to and advised for transparent huge pages: one fault
//! per 2 MiB instead of 512. Where the kernel has no usable THP (off, absent,
//! or huge pages other than 2 MiB) [`configure`] says why in the log and
//! leaves those blocks to glibc, and the cost of 4 KiB faults comes back.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Blocks of this size and above get their own mapping from glibc.
const LARGE: usize = 256 * 1024;

/// A transparent huge page on x86-64 and aarch64 (with 4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// Blocks of this size and above get a huge-page mapping of their own,
/// rounded up to whole huge pages (a 1 MiB buffer holds 2 MiB once touched).
/// In one `fchm bench pipeline` run each, 1 MiB and 512 KiB were alike and
/// 2 MiB slower.
const HUGE_MIN: usize = 1 << 20;

/// Huge-page blocks alive at once; beyond this, blocks come from glibc.
/// One frame in flight holds a few dozen at most.
const HUGE_SLOTS: usize = 128;

/// Whether big blocks get huge-page mappings: `lean_memory` is on and the
/// kernel has usable transparent huge pages.
static HUGE_ON: AtomicBool = AtomicBool::new(false);

/// The addresses of the live huge-page blocks (0 = free slot). `dealloc`
/// finds its block here, so a block allocated before [`configure`] (from
/// glibc) is never unmapped as one of ours.
static HUGE_BLOCKS: [AtomicUsize; HUGE_SLOTS] = [const { AtomicUsize::new(0) }; HUGE_SLOTS];

/// Apply the allocator settings (`pipeline.lean_memory`); call before any
/// thread starts. Without `lean`, glibc's defaults stay.
pub fn configure(lean: bool) {
    if !lean {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; called before
        // other threads exist.
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE as i32) };
        if ok != 1 {
            log::warn!("mallopt(M_MMAP_THRESHOLD) refused; resident memory may grow");
        }
    }
    match huge_pages() {
        Ok(()) => HUGE_ON.store(true, Ordering::Release),
        Err(why) => log::warn!(
            "{why}: lean_memory will fault in every 4 KiB page of each activation \
             buffer, each frame, which costs throughput; enable THP (always or \
             madvise), or set pipeline.lean_memory = false if memory allows"
        ),
    }
}

/// Whether this kernel gives 2 MiB transparent huge pages to a mapping that
/// asks for them; why not, if it does not.
fn huge_pages() -> Result<(), String> {
    const THP: &str = "/sys/kernel/mm/transparent_hugepage";
    if !cfg!(target_os = "linux") {
        return Err("transparent huge pages are Linux only".into());
    }
    let enabled = std::fs::read_to_string(format!("{THP}/enabled"))
        .map_err(|e| format!("no transparent huge pages in this kernel ({THP}/enabled: {e})"))?;
    if enabled.contains("[never]") {
        return Err("transparent huge pages are off (never)".into());
    }
    // 64 KiB-page arm64 kernels have 512 MiB huge pages: no use for buffers.
    match std::fs::read_to_string(format!("{THP}/hpage_pmd_size")) {
        Ok(s) if s.trim() == HUGE_PAGE.to_string() => Ok(()),
        Ok(s) => Err(format!("huge pages are {} bytes here, not 2 MiB", s.trim())),
        Err(e) => Err(format!(
            "huge page size unknown ({THP}/hpage_pmd_size: {e})"
        )),
    }
}

/// The system allocator, with whole huge-page mappings for the biggest
/// blocks once [`configure`] turns `lean_memory` on. Install it with
/// `#[global_allocator]` in a binary; until then it is `System`.
pub struct LeanAlloc;

fn huge_len(size: usize) -> usize {
    size.div_ceil(HUGE_PAGE) * HUGE_PAGE
}

fn wants_huge(layout: Layout) -> bool {
    layout.size() >= HUGE_MIN && layout.align() <= HUGE_PAGE && HUGE_ON.load(Ordering::Acquire)
}

#[cfg(not(target_os = "linux"))]
fn map_huge(_size: usize) -> Option<*mut u8> {
    None
}

/// A fresh, zeroed mapping of `huge_len(size)` bytes at a huge-page
/// boundary, advised for huge pages, or None.
#[cfg(target_os = "linux")]
fn map_huge(size: usize) -> Option<*mut u8> {
    let len = huge_len(size);
    // Over-map by one huge page, then trim both ends to the boundary.
    let span = len.checked_add(HUGE_PAGE)?;
    // SAFETY: an anonymous private mapping, no existing memory is touched;
    // the munmap calls trim parts of that fresh mapping only.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return None;
        }
        let base = p as usize;
        let start = base.next_multiple_of(HUGE_PAGE);
        if start > base {
            libc::munmap(p, start - base);
        }
        let tail = base + span - (start + len);
        if tail > 0 {
            libc::munmap((start + len) as *mut libc::c_void, tail);
        }
        // Advice only: without THP the mapping still works, with 4 KiB pages.
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        Some(start as *mut u8)
    }
}

/// The record's slot holding `ptr`, if it is a live huge-page block.
fn record_of(ptr: *mut u8) -> Option<&'static AtomicUsize> {
    HUGE_BLOCKS
        .iter()
        .find(|s| s.load(Ordering::Acquire) == ptr as usize)
}

/// Map a huge-page block and record it; None (use glibc) if either fails.
fn alloc_huge(layout: Layout) -> Option<*mut u8> {
    let p = map_huge(layout.size())?;
    let free = |s: &AtomicUsize| {
        s.compare_exchange(0, p as usize, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    };
    if HUGE_BLOCKS.iter().any(free) {
        return Some(p);
    }
    // The record is full: this block goes back, and glibc serves it.
    // SAFETY: the mapping made just above, unrecorded and unused.
    unsafe { libc::munmap(p.cast(), huge_len(layout.size())) };
    None
}

/// Unmap `ptr` if it is a recorded huge-page block; false if it is not one.
fn free_huge(ptr: *mut u8, layout: Layout) -> bool {
    if layout.size() < HUGE_MIN {
        return false;
    }
    let Some(slot) = record_of(ptr) else {
        return false;
    };
    slot.store(0, Ordering::Release);
    // SAFETY: a mapping of huge_len(size) bytes made by map_huge for this
    // block, which the caller gives up.
    unsafe { libc::munmap(ptr.cast(), huge_len(layout.size())) };
    true
}

// SAFETY: huge-page blocks are fresh zeroed mappings of at least the
// requested size at a 2 MiB boundary (≥ any align they are used for), freed
// only through the record; everything else is `System`'s.
unsafe impl GlobalAlloc for LeanAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if wants_huge(layout) {
            if let Some(p) = alloc_huge(layout) {
                return p;
            }
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if wants_huge(layout) {
            // A fresh anonymous mapping reads as zeros.
            if let Some(p) = alloc_huge(layout) {
                return p;
            }
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !free_huge(ptr, layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let is_huge = layout.size() >= HUGE_MIN && record_of(ptr).is_some();
        if !is_huge && !wants_huge(new) {
            // SAFETY: the caller's contract, for a block of System's.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller's contract: ptr holds layout.size() bytes.
        unsafe {
            let p = self.alloc(new);
            if !p.is_null() {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // These tests call the allocator directly (the test binary does not
    // install it) and turn `HUGE_ON` on for themselves only; the library's
    // other code never reads it.

    fn recorded(p: *mut u8) -> bool {
        record_of(p).is_some()
    }

    #[test]
    fn big_blocks_get_their_own_huge_page_aligned_mapping() {
        HUGE_ON.store(true, Ordering::Release);
        let a = LeanAlloc;
        for size in [HUGE_MIN, 3 * HUGE_PAGE + 5, 16 << 20] {
            let l = Layout::from_size_align(size, 64).unwrap();
            unsafe {
                let p = a.alloc_zeroed(l);
                assert_eq!(p as usize % HUGE_PAGE, 0, "{size}");
                assert!(recorded(p));
                let bytes = std::slice::from_raw_parts_mut(p, size);
                assert!(bytes.iter().all(|&b| b == 0));
                bytes.fill(0xAB);
                // Grown and shrunk: the contents move along, and so does
                // the record.
                let q = a.realloc(p, l, size + HUGE_PAGE);
                assert!(recorded(q) && (q == p || !recorded(p)));
                assert_eq!(*q.add(size - 1), 0xAB);
                let l2 = Layout::from_size_align(size + HUGE_PAGE, 64).unwrap();
                let r = a.realloc(q, l2, 1000);
                assert_eq!(*r.add(999), 0xAB);
                assert!(!recorded(q) && !recorded(r));
                a.dealloc(r, Layout::from_size_align(1000, 64).unwrap());
            }
        }
    }

    #[test]
    fn a_small_block_grown_past_the_threshold_moves_to_its_own_mapping() {
        HUGE_ON.store(true, Ordering::Release);
        let a = LeanAlloc;
        let l = Layout::from_size_align(4096, 16).unwrap();
        unsafe {
            let p = a.alloc(l);
            assert!(!recorded(p));
            std::slice::from_raw_parts_mut(p, 4096).fill(7);
            let q = a.realloc(p, l, 2 * HUGE_MIN);
            assert!(recorded(q));
            assert!(std::slice::from_raw_parts(q, 4096).iter().all(|&b| b == 7));
            a.dealloc(q, Layout::from_size_align(2 * HUGE_MIN, 16).unwrap());
            assert!(!recorded(q));
        }
    }

    #[test]
    fn blocks_from_glibc_are_freed_by_glibc() {
        let a = LeanAlloc;
        let l = Layout::from_size_align(4 << 20, 16).unwrap();
        // Allocated as `System`'s (as before `configure`), freed by this
        // allocator's dealloc: not in the record, so glibc frees it (a wrong munmap of a
        // glibc chunk would crash or corrupt here).
        let p = unsafe { System.alloc(l) };
        assert!(!p.is_null());
        assert!(!free_huge(p, l));
        unsafe { a.dealloc(p, l) };
    }

    #[test]
    fn small_blocks_stay_with_glibc() {
        HUGE_ON.store(true, Ordering::Release);
        let l = Layout::from_size_align(HUGE_MIN - 1, 8).unwrap();
        assert!(!wants_huge(l));
        unsafe {
            let p = LeanAlloc.alloc(l);
            assert!(!p.is_null() && !recorded(p));
            LeanAlloc.dealloc(p, l);
        }
        assert!(wants_huge(Layout::from_size_align(HUGE_MIN, 8).unwrap()));
        assert!(!wants_huge(
            Layout::from_size_align(HUGE_MIN, 2 * HUGE_PAGE).unwrap()
        ));
    }
}
