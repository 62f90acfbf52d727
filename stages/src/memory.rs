//! Process-wide allocator setting for the model's large, short-lived buffers.
//!
//! Every layer of the VGG16 forward pass allocates and frees buffers of tens to hundreds of
//! MB (a 237x237x64 activation for 8 images is 115 MB). glibc serves anything above 32 MB
//! with a fresh `mmap` and returns it on `free`, so each batch touches every page anew:
//! about a million page faults per 40 images, a fifth of the forward pass's time
//! (measured with `perf stat` on the vgg16 bench). Keeping freed memory in the heap for
//! reuse removes most of them. Peak memory is unchanged: the same buffers are live at the
//! peak either way.

/// Makes glibc's `malloc` keep large freed blocks for reuse instead of unmapping them.
/// Call once at the start of a binary, before threads start. A no-op on other C libraries.
pub fn reuse_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads
    // allocate (the caller's contract), and both values are valid for these parameters.
    unsafe {
        // Never mmap individual blocks (glibc caps the mmap threshold at 32 MB, so raising
        // it is not enough), and never give the heap's free top back to the system.
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
