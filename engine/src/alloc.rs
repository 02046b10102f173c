//! Allocator settings for the CPU tensor work (training, the judge, the reward server).
//!
//! candle allocates a fresh buffer for every tensor it makes, and backprop adds a few more
//! per graph edge; in training most of them are megabytes. glibc's malloc serves a block of
//! that size with its own `mmap` once the block is above `M_MMAP_THRESHOLD` (128 KiB to start,
//! raised on the fly only up to the size of blocks already freed), gives it back with
//! `munmap` on free, and hands surplus heap back to the kernel past `M_TRIM_THRESHOLD`. Every
//! new tensor then faults its pages in again and the kernel zeroes each one: a profile of
//! `engine train` (perf, MiniLM, batch 8) put about a quarter of all CPU time in page faults.
//!
//! [`tune`] pins the mmap threshold at glibc's maximum (32 MiB) and stops trimming, so freed
//! tensors go back to the heap and the next step reuses them. The process keeps its peak
//! memory instead of returning it, which is what a training or scoring job wants. Measured
//! with `engine train` (BENCHMARKS.md; the judge bench did not apply it before
//! [`crate::process`]). mimalloc, tried instead, gained as much only with its purging turned
//! off, and needs a C build; these are three `mallopt` calls.
//!
//! A user who sets glibc's own variables (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
//! `MALLOC_TOP_PAD_`) keeps them: [`tune`] then changes nothing. Other platforms: nothing.

/// Environment variables through which glibc takes these settings from the user.
const USER_SETTINGS: [&str; 3] = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"];

/// Applies the settings above; returns whether it did (false off glibc, or when the user set
/// glibc's variables). [`crate::process::init`] calls it first thing in `main`.
pub fn tune() -> bool {
    if USER_SETTINGS.iter().any(|v| std::env::var_os(v).is_some()) {
        return false;
    }
    imp::tune()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    /// glibc caps the mmap threshold at half its 64 MiB heap size on 64-bit targets.
    const MMAP_THRESHOLD: libc::c_int = 32 << 20;
    /// Free memory at the top of the heap kept rather than trimmed (2 GiB − 1: never, in practice).
    const TRIM_THRESHOLD: libc::c_int = libc::c_int::MAX;
    /// Extra heap requested on each growth, so a growing step does not grow it page by page.
    const TOP_PAD: libc::c_int = 64 << 20;

    pub fn tune() -> bool {
        // SAFETY: mallopt takes plain integers and only changes malloc's tuning parameters;
        // it is called from `main` before any other thread exists.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
                && libc::mallopt(libc::M_TOP_PAD, TOP_PAD) == 1
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn tune() -> bool {
        false
    }
}
