//! The backend's own CUDA kernels (what cuDNN does not offer), as CUDA C compiled at start-up
//! by NVRTC for the GPU at hand (to a CUBIN for its `sm_XY`, so the driver never has to JIT
//! PTX newer than it knows).
//!
//! Rules for every kernel here:
//! - strict fp32: compiled with `--fmad=false`, no fast-math intrinsics, so each result is
//!   the correctly rounded IEEE operation, as on the CPU;
//! - deterministic: no atomics; every reduction runs in a fixed order that does not depend on
//!   scheduling (one thread per output summing in index order, or a fixed-shape tree in
//!   shared memory), so a rerun on the same GPU is bit-identical.

/// Names of the kernels in [`SOURCE`], as the driver looks them up.
pub const KERNELS: [&str; 6] = [
    "bias_relu_nchw",
    "relu_backward",
    "bias_grad_nchw",
    "avg_pool_forward",
    "avg_pool_backward",
    "adam_step",
];

/// Threads per block of [`SOURCE`]'s `bias_grad_nchw` (its shared-memory tree needs a
/// power of two).
pub const REDUCE_THREADS: u32 = 256;

/// The kernels' CUDA C source.
pub const SOURCE: &str = r#"
// y[b, c, i] = max(y[b, c, i] + bias[c], 0) over n images of c channels of hw values.
extern "C" __global__ void bias_relu_nchw(float* y, const float* bias, int n, int c, int hw) {
    long long total = (long long)n * c * hw;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        int ch = (int)((i / hw) % c);
        float v = y[i] + bias[ch];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

// dy[i] = y[i] > 0 ? dy[i] : 0, where y is the ReLU's output (the gradient at its input).
extern "C" __global__ void relu_backward(float* dy, const float* y, long long len) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    }
}

// db[ch] = sum over b, i of dy[b, ch, i]: one block per channel, 256 threads. Thread t sums
// elements t, t + 256, ... in order; the block then adds the partial sums in a fixed tree.
extern "C" __global__ void bias_grad_nchw(const float* dy, float* db, int n, int c, int hw) {
    __shared__ float part[256];
    int ch = blockIdx.x;
    long long count = (long long)n * hw;
    float acc = 0.0f;
    for (long long j = threadIdx.x; j < count; j += 256) {
        long long b = j / hw;
        long long i = j % hw;
        acc += dy[(b * c + ch) * hw + i];
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int stride = 128; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) {
            part[threadIdx.x] += part[threadIdx.x + stride];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        db[ch] = part[0];
    }
}

// y[b, ch] = mean of the top-left k x k window of the side x side map x[b, ch]: one thread
// per (b, ch), summing rows then columns in order.
extern "C" __global__ void avg_pool_forward(const float* x, float* y, int nc, int side, int k) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nc) return;
    const float* map = x + (long long)i * side * side;
    float acc = 0.0f;
    for (int r = 0; r < k; ++r) {
        for (int q = 0; q < k; ++q) {
            acc += map[r * side + q];
        }
    }
    y[i] = acc / (float)(k * k);
}

// dx[b, ch, r, q] = dy[b, ch] / (k k) inside the window, 0 outside.
extern "C" __global__ void avg_pool_backward(const float* dy, float* dx, int nc, int side, int k) {
    long long total = (long long)nc * side * side;
    for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < total;
         j += (long long)gridDim.x * blockDim.x) {
        long long i = j / (side * side);
        int rem = (int)(j % (side * side));
        int r = rem / side;
        int q = rem % side;
        dx[j] = (r < k && q < k) ? dy[i] / (float)(k * k) : 0.0f;
    }
}

// Adam as dfdx computes it (no weight decay): c1 = 1 / (1 - beta1^t), c2 = 1 / (1 - beta2^t)
// come from the host, computed as dfdx does.
extern "C" __global__ void adam_step(float* p, float* m, float* v, const float* g, long long len,
                                     float lr, float beta1, float beta2, float eps, float c1,
                                     float c2) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        float gi = g[i];
        float mi = m[i] * beta1 + gi * (1.0f - beta1);
        float vi = v[i] * beta2 + (gi * gi) * (1.0f - beta2);
        float m_hat = mi * c1;
        float v_hat = vi * c2;
        p[i] = p[i] - lr * m_hat / (sqrtf(v_hat) + eps);
        m[i] = mi;
        v[i] = vi;
    }
}
"#;

/// NVRTC options: strict IEEE fp32 (no contraction into FMAs, exact division and square
/// root, no flush of subnormals).
pub const STRICT_OPTIONS: [&str; 4] = [
    "--fmad=false",
    "--prec-div=true",
    "--prec-sqrt=true",
    "--ftz=false",
];

/// What NVRTC is asked to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// PTX for a virtual architecture `compute_XY` (JIT-compiled by the driver).
    Ptx { major: i32, minor: i32 },
    /// Machine code for a real architecture `sm_XY` (loaded as is).
    Cubin { major: i32, minor: i32 },
}

impl Target {
    /// The `--gpu-architecture` option.
    pub fn arch_option(&self) -> String {
        match *self {
            Target::Ptx { major, minor } => format!("--gpu-architecture=compute_{major}{minor}"),
            Target::Cubin { major, minor } => format!("--gpu-architecture=sm_{major}{minor}"),
        }
    }
}

#[cfg(feature = "cuda")]
pub use self::nvrtc::{compile, nvrtc_version};

#[cfg(feature = "cuda")]
mod nvrtc {
    use super::{Target, SOURCE, STRICT_OPTIONS};
    use cudarc::nvrtc::{result, sys};
    use std::ffi::{CStr, CString};

    /// NVRTC's version `(major, minor)`. NVRTC must have been loaded ([`super::super::libs`]).
    pub fn nvrtc_version() -> Result<(i32, i32), String> {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: both pointers are valid for writes.
        unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
            .result()
            .map_err(|e| format!("nvrtcVersion: {e:?}"))?;
        Ok((major, minor))
    }

    /// Compiles [`SOURCE`] for `target`: PTX text (NUL-terminated) or a CUBIN image. NVRTC
    /// must have been loaded ([`super::super::libs`]); errors carry NVRTC's log.
    pub fn compile(target: Target) -> Result<Vec<u8>, String> {
        let src = CString::new(SOURCE).map_err(|e| e.to_string())?;
        let name = c"pipeline_kernels.cu";
        let prog = result::create_program(&src, Some(name)).map_err(|e| format!("{e:?}"))?;
        let mut options: Vec<String> = STRICT_OPTIONS.iter().map(|s| s.to_string()).collect();
        options.push(target.arch_option());
        // SAFETY: `prog` was just created and is destroyed below, once.
        let compiled = unsafe { result::compile_program(prog, &options) };
        let out = match compiled {
            Err(e) => {
                // SAFETY: `prog` is valid; the log is NUL-terminated.
                let log = unsafe { result::get_program_log(prog) }
                    .map(|raw| {
                        unsafe { CStr::from_ptr(raw.as_ptr()) }
                            .to_string_lossy()
                            .into_owned()
                    })
                    .unwrap_or_default();
                Err(format!("NVRTC failed ({e:?}) with {options:?}: {log}"))
            }
            Ok(()) => match target {
                // SAFETY: `prog` compiled successfully.
                Target::Ptx { .. } => unsafe { result::get_ptx(prog) }
                    .map(|v| v.into_iter().map(|c| c as u8).collect())
                    .map_err(|e| format!("nvrtcGetPTX: {e:?}")),
                Target::Cubin { .. } => cubin(prog),
            },
        };
        // SAFETY: created above, not used after this.
        let _ = unsafe { result::destroy_program(prog) };
        out
    }

    fn cubin(prog: sys::nvrtcProgram) -> Result<Vec<u8>, String> {
        let mut size = 0usize;
        // SAFETY: `prog` compiled successfully; `size` is valid for writes.
        unsafe { sys::nvrtcGetCUBINSize(prog, &mut size) }
            .result()
            .map_err(|e| format!("nvrtcGetCUBINSize: {e:?}"))?;
        let mut image = vec![0u8; size];
        // SAFETY: `image` holds `size` bytes, as NVRTC asked.
        unsafe { sys::nvrtcGetCUBIN(prog, image.as_mut_ptr().cast()) }
            .result()
            .map_err(|e| format!("nvrtcGetCUBIN: {e:?}"))?;
        Ok(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_is_defined_once_and_none_uses_atomics_or_fast_math() {
        for name in KERNELS {
            let decl = format!("extern \"C\" __global__ void {name}(");
            assert_eq!(SOURCE.matches(&decl).count(), 1, "{name}");
        }
        assert_eq!(
            SOURCE.matches("__global__").count(),
            KERNELS.len(),
            "a kernel missing from KERNELS"
        );
        // Atomics would make sums depend on scheduling; intrinsics like __expf, __fdividef
        // or __fmaf_rn would break strict fp32.
        for banned in [
            "atomic",
            "__expf",
            "__fdividef",
            "__fmaf",
            "__fmul_r",
            "fmaf(",
        ] {
            assert!(!SOURCE.contains(banned), "{banned} in the kernels");
        }
        assert!(SOURCE.contains(&format!("__shared__ float part[{REDUCE_THREADS}]")));
        assert_eq!(
            Target::Cubin { major: 9, minor: 0 }.arch_option(),
            "--gpu-architecture=sm_90"
        );
    }

    /// NVRTC from a Python environment, or from a venv this test makes with
    /// `pip install nvidia-cuda-nvrtc` (kept under `target/` for later runs).
    #[cfg(feature = "cuda")]
    fn nvrtc_dirs() -> Result<Vec<super::super::libs::SearchDir>, String> {
        use super::super::libs::{nvidia_lib_dirs, python_site_dirs};
        let found = nvidia_lib_dirs(&python_site_dirs());
        if found
            .iter()
            .any(|d| d.path.join("libnvrtc.so.13").is_file())
        {
            return Ok(found);
        }
        let venv =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cuda-test-venv");
        let site = |venv: &std::path::Path| -> Vec<std::path::PathBuf> {
            std::fs::read_dir(venv.join("lib"))
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("site-packages"))
                .collect()
        };
        let dirs = nvidia_lib_dirs(&site(&venv));
        if dirs.iter().any(|d| d.path.join("libnvrtc.so.13").is_file()) {
            return Ok(dirs);
        }
        let run = |cmd: &mut std::process::Command| -> Result<(), String> {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{cmd:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        run(std::process::Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv))?;
        run(std::process::Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "nvidia-cuda-nvrtc",
        ]))?;
        let dirs = nvidia_lib_dirs(&site(&venv));
        if dirs.iter().any(|d| d.path.join("libnvrtc.so.13").is_file()) {
            Ok(dirs)
        } else {
            Err("pip installed nvidia-cuda-nvrtc but no libnvrtc.so.13 appeared".into())
        }
    }

    /// The kernels compile under NVRTC to PTX and to an sm_90 (H100/H200) CUBIN, with the
    /// strict options, on a machine without a GPU.
    #[cfg(feature = "cuda")]
    #[test]
    fn the_kernels_compile_to_ptx_and_cubin_with_nvrtc() {
        use super::super::libs::{load, NVRTC};
        let dirs = match nvrtc_dirs() {
            Ok(d) => d,
            Err(why) => {
                crate::test_skip::skip(&format!("no NVRTC (pip install nvidia-cuda-nvrtc: {why})"));
                return;
            }
        };
        load(&NVRTC, &dirs, &mut Vec::new).expect("NVRTC loads from the venv");
        let (major, _) = nvrtc_version().unwrap();
        assert!(major >= 13, "NVRTC {major}");
        let ptx = compile(Target::Ptx { major: 9, minor: 0 }).unwrap();
        let text = String::from_utf8_lossy(&ptx);
        assert!(
            text.contains(".target sm_90"),
            "{}",
            &text[..300.min(text.len())]
        );
        for name in KERNELS {
            assert!(
                text.contains(&format!(".entry {name}(")),
                "{name} missing from the PTX"
            );
        }
        // --fmad=false: the adam kernel multiplies and adds separately.
        assert!(
            !text.contains("fma.rn.f32"),
            "a fused multiply-add in strict fp32 code"
        );
        let cubin = compile(Target::Cubin { major: 9, minor: 0 }).unwrap();
        assert_eq!(&cubin[..4], b"\x7fELF", "a CUBIN is an ELF image");
        let bad = compile(Target::Cubin { major: 1, minor: 0 }).unwrap_err();
        assert!(bad.contains("sm_10"), "{bad}");
    }
}
