//! Settings for the whole process, applied by [`init`] first thing in `main` (the judge
//! benchmark calls it too, so that it measures what `engine` runs).
//!
//! - glibc's allocator keeps freed tensors: [`crate::alloc`].
//! - candle's element-wise thread pool is left without workers.
//!
//! candle 0.11 runs element-wise ops on large tensors (64 Ki elements and up: SiLU, products,
//! residual sums) on a thread pool of its own with `CANDLE_NUM_THREADS − 1` workers (by
//! default rayon's thread count less one). After each op a worker spins for 25,000
//! iterations before it sleeps. Our matrix products and attention kernels run on rayon's
//! threads, one per core, so after every element-wise op the spinning worker takes a core
//! from them while they multiply. `CANDLE_NUM_THREADS=1` leaves the pool without workers:
//! each element-wise op runs on the thread that asked for it, and rayon keeps every core.
//! Measured on 2 threads with `scripts/bench_candle_pool.sh` (the judge bench and `engine
//! train`, both settings alternating; BENCHMARKS.md, "candle's element-wise pool"): the
//! judge 1.03–1.24× as fast depending on the method, training 1.05×. A user's own
//! `CANDLE_NUM_THREADS` wins.

/// Applies both settings; call it once, first thing in `main`, before any other thread
/// exists.
pub fn init() {
    crate::alloc::tune();
    if std::env::var_os("CANDLE_NUM_THREADS").is_some() {
        return;
    }
    // SAFETY: `set_var` is unsound only while another thread may read or write the
    // environment; `init` runs first thing in `main`, before any thread is started. candle
    // reads the variable once, when its pool is first used, which is later.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
