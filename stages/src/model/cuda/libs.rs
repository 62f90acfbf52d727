//! Finding and loading the CUDA libraries before cudarc asks for them.
//!
//! cudarc opens each library lazily by bare name (`libcudnn.so.9`, `libnvrtc.so.13`, ...)
//! and panics when none of its candidate names loads. So before any cudarc call, this module
//! looks for each library in, in order:
//!
//! 1. the folders of `PIPELINE_CUDA_LIB_DIRS` (`:`-separated);
//! 2. the folders of `LD_LIBRARY_PATH`;
//! 3. the system's default search path (`dlopen` by bare name: ldconfig, the driver);
//! 4. the `nvidia/*/lib` folders of a Python environment, where PyPI's `nvidia-cudnn-cu13`,
//!    `nvidia-cublas` and `nvidia-cuda-nvrtc` wheels, and PyTorch's CUDA wheel, put them:
//!    `$VIRTUAL_ENV`, `$CONDA_PREFIX`, and the `sys.path` of `python3` (or of
//!    `PIPELINE_CUDA_PYTHON`).
//!
//! A library found in a folder is loaded by absolute path with `RTLD_GLOBAL`, together with
//! the other libraries of its family in that folder (cuDNN 9 is a dozen `libcudnn_*.so.9`,
//! cuBLAS needs `libcublasLt`, NVRTC its builtins). The dynamic loader then answers cudarc's
//! later `dlopen("libcudnn.so.9")` with the library already loaded under that soname.
//!
//! The libraries are loaded in dependency order ([`IN_ORDER`]: the driver, cuBLAS, NVRTC,
//! then cuDNN, whose engines open cuBLAS and NVRTC themselves), and every file that exists
//! but fails to load, the main library or a companion, is kept with the loader's `dlerror`
//! text: in the [`LoadReport`], and for the whole process in [`load_failures`], which a
//! failing cuDNN call names ([`failure_note`]) instead of a bare `CUDNN_STATUS_*`.
//!
//! Nothing here touches a GPU or cudarc: it runs (and is tested) on any machine.

use std::ffi::{CStr, CString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One library the backend needs, by the names the dynamic loader knows it under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LibSpec {
    /// What to call it in messages (`cuDNN 9`).
    pub what: &'static str,
    /// Sonames, preferred first.
    pub sonames: &'static [&'static str],
    /// File-name prefix of the companion libraries loaded from the same folder.
    pub family: &'static str,
    /// Whether Python environments may hold it (the driver never comes from a wheel).
    pub in_wheels: bool,
}

/// The NVIDIA driver's user-space library (installed with the driver, not with CUDA).
pub const DRIVER: LibSpec = LibSpec {
    what: "the NVIDIA driver (libcuda)",
    sonames: &["libcuda.so.1", "libcuda.so"],
    family: "libcuda.so",
    in_wheels: false,
};

/// cuDNN 9: convolutions and pooling.
pub const CUDNN: LibSpec = LibSpec {
    what: "cuDNN 9",
    sonames: &["libcudnn.so.9"],
    family: "libcudnn",
    in_wheels: true,
};

/// cuBLAS for CUDA 13 (with cuBLASLt, which it links).
pub const CUBLAS: LibSpec = LibSpec {
    what: "cuBLAS 13",
    sonames: &["libcublas.so.13"],
    family: "libcublas",
    in_wheels: true,
};

/// NVRTC for CUDA 13 (with its builtins): compiles the backend's own kernels at start-up.
pub const NVRTC: LibSpec = LibSpec {
    what: "NVRTC 13",
    sonames: &["libnvrtc.so.13"],
    family: "libnvrtc",
    in_wheels: true,
};

/// Every library, in the order they must be loaded: the driver, which all of them need; then
/// cuBLAS (with cuBLASLt) and NVRTC, which cuDNN 9's engines open at run time (its
/// precompiled engines call cuBLASLt, its runtime-fused ones NVRTC); cuDNN last, so that a
/// companion of cuDNN fails only for a reason of its own.
pub const IN_ORDER: [LibSpec; 4] = [DRIVER, CUBLAS, NVRTC, CUDNN];

/// A file that exists but did not load, with the loader's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadFailure {
    pub file: PathBuf,
    /// The `dlerror` text.
    pub error: String,
}

/// `FILE: DLERROR`, or the `dlerror` text alone when it already starts with the file (it
/// does when the file itself is broken; when a dependency is missing it names that one).
impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display().to_string();
        if self.error.starts_with(&file) {
            write!(f, "{}", self.error)
        } else {
            write!(f, "{file}: {}", self.error)
        }
    }
}

/// Every load failure of this process, for the messages of later failures: cuDNN loads its
/// companions itself when first used, and reports one that did not load only as a status.
static FAILURES: Mutex<Vec<LoadFailure>> = Mutex::new(Vec::new());

fn remember(failures: &[LoadFailure]) {
    let mut all = FAILURES.lock().unwrap_or_else(|e| e.into_inner());
    for f in failures {
        if !all.contains(f) {
            all.push(f.clone());
        }
    }
}

/// Every file that failed to load in this process so far, in the order they failed.
pub fn load_failures() -> Vec<LoadFailure> {
    FAILURES.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// ` (libraries that did not load: FILE: DLERROR; ...)`, or nothing when all loaded: what a
/// library call's error appends, since a missing companion shows only as a failed status.
pub fn failure_note(failures: &[LoadFailure]) -> String {
    if failures.is_empty() {
        return String::new();
    }
    let list: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
    format!(" (libraries that did not load: {})", list.join("; "))
}

/// Where a folder to search came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `PIPELINE_CUDA_LIB_DIRS`.
    Configured,
    /// `LD_LIBRARY_PATH`.
    LdLibraryPath,
    /// A Python environment's `nvidia/*/lib`.
    Python,
}

/// A folder that may hold CUDA libraries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchDir {
    pub path: PathBuf,
    pub origin: Origin,
}

/// Where one library was loaded from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loaded {
    /// By absolute path, from this file.
    File(PathBuf),
    /// By bare name from the system's default search path.
    System(&'static str),
}

impl fmt::Display for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loaded::File(p) => write!(f, "{}", p.display()),
            Loaded::System(name) => write!(f, "{name} (system search path)"),
        }
    }
}

/// A library found and loaded, and the companions of its family that did not load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub from: Loaded,
    pub companion_failures: Vec<LoadFailure>,
}

/// A library that could not be found or loaded anywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub what: &'static str,
    pub sonames: &'static [&'static str],
    /// Each file that exists but failed to load (the library or one of its companions), with
    /// the loader's message: what the one-line message names.
    pub load_failures: Vec<LoadFailure>,
    /// The loader's message for each soname tried by bare name on the system's search path
    /// (`cannot open shared object file` when it is absent): kept for [`LoadReport::details`],
    /// left out of the one-line message, which already says where it was looked for.
    pub system_errors: Vec<LoadFailure>,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.what, self.sonames.join(" or "))?;
        let mut sep = ": ";
        for e in &self.load_failures {
            write!(f, "{sep}{e}")?;
            sep = "; ";
        }
        Ok(())
    }
}

/// The folders named by a `:`-separated list, skipping empty entries.
fn split_dirs(list: &str) -> impl Iterator<Item = PathBuf> + '_ {
    list.split(':').filter(|s| !s.is_empty()).map(PathBuf::from)
}

/// The folders configured by the environment (`PIPELINE_CUDA_LIB_DIRS`, then
/// `LD_LIBRARY_PATH`), in order.
pub fn configured_dirs() -> Vec<SearchDir> {
    let mut dirs = Vec::new();
    for (var, origin) in [
        ("PIPELINE_CUDA_LIB_DIRS", Origin::Configured),
        ("LD_LIBRARY_PATH", Origin::LdLibraryPath),
    ] {
        if let Ok(list) = std::env::var(var) {
            dirs.extend(split_dirs(&list).map(|path| SearchDir {
                path,
                origin: origin.clone(),
            }));
        }
    }
    dirs
}

/// The `nvidia/*/lib` folders under the site-packages folders `roots`, sorted within each
/// root so that the order does not depend on the file system.
pub fn nvidia_lib_dirs(roots: &[PathBuf]) -> Vec<SearchDir> {
    let mut dirs = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root.join("nvidia")) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("lib"))
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        dirs.extend(found.into_iter().map(|path| SearchDir {
            path,
            origin: Origin::Python,
        }));
    }
    dirs
}

/// The site-packages folders of the Python environments in view: `$VIRTUAL_ENV` and
/// `$CONDA_PREFIX` (`lib/python3*/site-packages`), then the `sys.path` of `python3` (or of
/// `PIPELINE_CUDA_PYTHON`), when it runs.
pub fn python_site_dirs() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        let Some(prefix) = std::env::var_os(var) else {
            continue;
        };
        let lib = Path::new(&prefix).join("lib");
        let Ok(entries) = std::fs::read_dir(&lib) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages"))
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        roots.extend(found);
    }
    let python = std::env::var("PIPELINE_CUDA_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys; print('\\n'.join(p for p in sys.path if p))",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    if let Ok(out) = out {
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            roots.extend(
                text.lines()
                    .map(PathBuf::from)
                    .filter(|p| p.join("nvidia").is_dir()),
            );
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    roots.retain(|r| seen.insert(r.clone()));
    roots
}

/// Loads `path` with `RTLD_NOW | RTLD_GLOBAL`; the loader's message (`dlerror`) on failure. The handle is
/// kept open for the life of the process, as the libraries must stay loaded.
fn dlopen_global(path: &CStr) -> Result<(), String> {
    // SAFETY: `path` is a valid C string; loading a library runs its initialisers, which is
    // what loading it means. The handle is deliberately never closed.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a thread-local message or null.
        let message = unsafe { libc::dlerror() };
        if message.is_null() {
            return Err("dlopen failed".into());
        }
        // SAFETY: non-null dlerror results are valid C strings.
        return Err(unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned());
    }
    Ok(())
}

fn c_path(path: &Path) -> Option<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).ok()
}

/// Whether a library of this soname is already loaded in the process (no loading done).
pub fn is_loaded(soname: &str) -> bool {
    let Ok(name) = CString::new(soname) else {
        return false;
    };
    // SAFETY: RTLD_NOLOAD only looks the name up among loaded objects.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    !handle.is_null()
}

/// Whether a file name is a shared library's: `.so`, or `.so.` and a version
/// (`libcudnn_ops.so.9`, `libnvrtc-builtins.so.13.0`), not a file beside one (`libx.so.9.c`).
fn is_shared_object(name: &str) -> bool {
    name.split_once(".so").is_some_and(|(_, version)| {
        version.is_empty()
            || (version.starts_with('.')
                && version[1..]
                    .split('.')
                    .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())))
    })
}

/// The files of `spec`'s family in `dir`, the main sonames first, then the others sorted.
fn family_files(spec: &LibSpec, dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(spec.family) && is_shared_object(&name)
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// What loading one folder's family gave: the main library's error, if it did not load, and
/// each companion that did not.
struct FamilyLoad {
    main_error: Option<String>,
    companion_failures: Vec<LoadFailure>,
}

/// Loads every library of `spec`'s family in `dir`, retrying those whose dependencies were
/// not loaded yet until no more can be loaded (cuDNN's pieces depend on one another, and
/// their folders are rarely on the loader's path). The errors of the last try are kept.
fn load_family(spec: &LibSpec, dir: &Path, main: &Path) -> FamilyLoad {
    let mut pending = family_files(spec, dir);
    let mut failed: Vec<LoadFailure> = Vec::new();
    loop {
        let before = pending.len();
        let mut still = Vec::new();
        failed.clear();
        for file in pending {
            let Some(c) = c_path(&file) else { continue };
            if let Err(error) = dlopen_global(&c) {
                failed.push(LoadFailure {
                    file: file.clone(),
                    error,
                });
                still.push(file);
            }
        }
        pending = still;
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    let main_error = failed
        .iter()
        .position(|f| f.file == main)
        .map(|at| failed.remove(at).error);
    FamilyLoad {
        main_error,
        companion_failures: failed,
    }
}

/// Finds and loads `spec`: from the first of `dirs` that holds one of its sonames, else by
/// bare name from the system's search path, else from the folders `fallback()` returns
/// (Python environments, looked up only when needed). Every file that failed to load is
/// kept in the answer and remembered for [`load_failures`].
pub fn load(
    spec: &LibSpec,
    dirs: &[SearchDir],
    fallback: &mut dyn FnMut() -> Vec<SearchDir>,
) -> Result<Found, Missing> {
    let mut failures = Vec::new();
    let try_dirs = |dirs: &[SearchDir], failures: &mut Vec<LoadFailure>| {
        for dir in dirs {
            for soname in spec.sonames {
                let file = dir.path.join(soname);
                if !file.is_file() {
                    continue;
                }
                let family = load_family(spec, &dir.path, &file);
                remember(&family.companion_failures);
                match family.main_error {
                    None => {
                        return Some(Found {
                            from: Loaded::File(file),
                            companion_failures: family.companion_failures,
                        })
                    }
                    Some(error) => {
                        let main = LoadFailure { file, error };
                        remember(std::slice::from_ref(&main));
                        failures.push(main);
                        failures.extend(family.companion_failures);
                    }
                }
            }
        }
        None
    };
    if let Some(found) = try_dirs(dirs, &mut failures) {
        return Ok(found);
    }
    let mut system_errors = Vec::new();
    for soname in spec.sonames {
        let Ok(c) = CString::new(*soname) else {
            continue;
        };
        match dlopen_global(&c) {
            Ok(()) => {
                return Ok(Found {
                    from: Loaded::System(soname),
                    companion_failures: Vec::new(),
                })
            }
            Err(error) => system_errors.push(LoadFailure {
                file: PathBuf::from(soname),
                error,
            }),
        }
    }
    if spec.in_wheels {
        let more = fallback();
        if let Some(found) = try_dirs(&more, &mut failures) {
            return Ok(found);
        }
    }
    Err(Missing {
        what: spec.what,
        sonames: spec.sonames,
        load_failures: failures,
        system_errors,
    })
}

/// What [`load_all`] found: each library's origin, the missing ones, and every folder looked
/// in (for the message when something is missing).
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub loaded: Vec<(&'static str, Loaded)>,
    /// Companions of loaded libraries that did not load (a library can load while a
    /// companion it opens later, such as one of cuDNN's engines, cannot).
    pub companion_failures: Vec<LoadFailure>,
    pub missing: Vec<Missing>,
    pub searched: Vec<SearchDir>,
    /// Whether Python environments were looked in (only for libraries not found elsewhere
    /// that wheels can hold).
    pub python_searched: bool,
}

impl LoadReport {
    /// One line per library that did not load, and per file that failed: what was tried and
    /// the loader's message for each (`libcudnn.so.9: cannot open shared object file: ...`).
    pub fn details(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for m in &self.missing {
            for e in m.load_failures.iter().chain(&m.system_errors) {
                lines.push(format!("{}: {e}", m.what));
            }
        }
        for e in &self.companion_failures {
            lines.push(format!("companion library: {e}"));
        }
        lines
    }

    /// `PIPELINE_CUDA_LIB_DIRS, LD_LIBRARY_PATH (a, b), the system search path, Python
    /// (c)`: where a missing library was looked for.
    pub fn where_searched(&self) -> String {
        let list = |origin: Origin| {
            self.searched
                .iter()
                .filter(|d| d.origin == origin)
                .map(|d| d.path.display().to_string())
                .collect::<Vec<_>>()
        };
        let mut parts = Vec::new();
        let configured = list(Origin::Configured);
        parts.push(if configured.is_empty() {
            "PIPELINE_CUDA_LIB_DIRS (unset)".to_string()
        } else {
            format!("PIPELINE_CUDA_LIB_DIRS ({})", configured.join(", "))
        });
        let ld = list(Origin::LdLibraryPath);
        if !ld.is_empty() {
            parts.push(format!("LD_LIBRARY_PATH ({})", ld.join(", ")));
        }
        parts.push("the system search path".to_string());
        let python = list(Origin::Python);
        if !self.python_searched {
            return parts.join(", ");
        }
        parts.push(if python.is_empty() {
            "Python environments (no nvidia/*/lib found)".to_string()
        } else {
            format!("Python's nvidia/*/lib ({})", python.join(", "))
        });
        parts.join(", ")
    }
}

/// Loads every library of `specs` in the order given ([`IN_ORDER`] for all of them), looking
/// in Python environments only if one is not found elsewhere (running `python3` costs a few
/// tens of milliseconds).
pub fn load_all(specs: &[LibSpec]) -> LoadReport {
    let dirs = configured_dirs();
    let mut python: Option<Vec<SearchDir>> = None;
    let mut report = LoadReport {
        searched: dirs.clone(),
        ..LoadReport::default()
    };
    for spec in specs {
        let mut fallback = || {
            python
                .get_or_insert_with(|| nvidia_lib_dirs(&python_site_dirs()))
                .clone()
        };
        match load(spec, &dirs, &mut fallback) {
            Ok(found) => {
                report.loaded.push((spec.what, found.from));
                report.companion_failures.extend(found.companion_failures);
            }
            Err(missing) => report.missing.push(missing),
        }
    }
    if let Some(p) = python {
        report.searched.extend(p);
        report.python_searched = true;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_skip::skip;
    use std::process::Command;

    #[test]
    fn only_shared_libraries_are_loaded_as_companions() {
        for name in [
            "libcudnn.so",
            "libcudnn_ops.so.9",
            "libnvrtc-builtins.so.13.0",
        ] {
            assert!(is_shared_object(name), "{name}");
        }
        for name in [
            "libcudnn.so.9.c",
            "libcudnn.sox",
            "libcudnn.so.",
            "libcudnn.h",
        ] {
            assert!(!is_shared_object(name), "{name}");
        }
    }

    #[test]
    fn nvidia_lib_folders_of_a_python_environment_are_found_in_order() {
        let root = tempfile::tempdir().unwrap();
        let site = root.path().join("site-packages");
        for pkg in ["cudnn", "cu13", "cublas"] {
            std::fs::create_dir_all(site.join("nvidia").join(pkg).join("lib")).unwrap();
        }
        // A package without a lib folder is not a library folder.
        std::fs::create_dir_all(site.join("nvidia/nccl/include")).unwrap();
        let dirs = nvidia_lib_dirs(&[site.clone(), root.path().join("absent")]);
        let names: Vec<String> = dirs
            .iter()
            .map(|d| d.path.strip_prefix(&site).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            ["nvidia/cu13/lib", "nvidia/cublas/lib", "nvidia/cudnn/lib"]
        );
        assert!(dirs.iter().all(|d| d.origin == Origin::Python));
        assert_eq!(
            split_dirs("/a::/b:").collect::<Vec<_>>(),
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
    }

    /// Builds `lib{name}.so.9` with that soname in `dir` from C `source`, linked to `links`
    /// (libraries in `dir`, by `-l` name); `None` without a C compiler.
    fn build_stub(dir: &Path, file: &str, source: &str, links: &[&str]) -> Option<()> {
        let c = dir.join(format!("{file}.c"));
        std::fs::write(&c, source).unwrap();
        let mut cmd = Command::new("cc");
        cmd.args(["-shared", "-fPIC", "-o"])
            .arg(dir.join(file))
            .arg(format!("-Wl,-soname,{file}"))
            .arg(&c)
            .arg("-L")
            .arg(dir);
        for l in links {
            cmd.arg(format!("-l:{l}"));
        }
        let status = cmd.status().ok()?;
        assert!(status.success(), "cc failed on the stub {file}");
        Some(())
    }

    /// The mechanism cudarc relies on, with stand-in libraries (never the real CUDA names,
    /// so that a GPU machine's own libraries are not shadowed in this process): a library
    /// and a companion that depends on it, in a folder that is on no search path. Loaded by
    /// absolute path with RTLD_GLOBAL, in whatever order the folder lists them, both become
    /// reachable by bare soname, as cudarc opens them.
    #[test]
    fn preloading_by_absolute_path_makes_a_library_reachable_by_its_bare_soname() {
        let dir = tempfile::tempdir().unwrap();
        let main = "libpipelinestub.so.9";
        // Sorted first, so it is tried before what it depends on, and must be retried.
        let companion = "libpipelinestub_a_ops.so.9";
        let built = build_stub(
            dir.path(),
            main,
            "int pipeline_stub_version(void) { return 90100; }",
            &[],
        )
        .and_then(|()| {
            build_stub(
                dir.path(),
                companion,
                "int pipeline_stub_version(void);\n\
                 int pipeline_stub_ops(void) { return pipeline_stub_version() + 1; }",
                &[main],
            )
        });
        if built.is_none() {
            skip("no C compiler (cc) to build the stub libraries");
            return;
        }
        const STUB: LibSpec = LibSpec {
            what: "the stub",
            sonames: &["libpipelinestub.so.9"],
            family: "libpipelinestub",
            in_wheels: true,
        };
        assert!(!is_loaded(main));
        // Not on any search path: a bare-name load fails before preloading.
        let c = CString::new(main).unwrap();
        assert!(dlopen_global(&c).is_err());
        let mut asked_python = false;
        let dirs = [SearchDir {
            path: dir.path().to_path_buf(),
            origin: Origin::Configured,
        }];
        let loaded = load(&STUB, &dirs, &mut || {
            asked_python = true;
            Vec::new()
        })
        .unwrap();
        assert_eq!(loaded.from, Loaded::File(dir.path().join(main)));
        assert_eq!(loaded.companion_failures, []);
        assert!(!asked_python, "found in the configured folder first");
        assert!(is_loaded(main), "reachable by its soname");
        assert!(is_loaded(companion), "the companion was retried and loaded");
        // The symbol resolves through a bare-name handle, as cudarc's would.
        // SAFETY: the handle and symbol come from the stub just built; the function takes no
        // arguments and returns an int.
        unsafe {
            let h = libc::dlopen(
                CString::new(companion).unwrap().as_ptr(),
                libc::RTLD_NOW | libc::RTLD_NOLOAD,
            );
            assert!(!h.is_null());
            let sym = libc::dlsym(h, c"pipeline_stub_ops".as_ptr());
            assert!(!sym.is_null());
            let f: extern "C" fn() -> i32 = std::mem::transmute(sym);
            assert_eq!(f(), 90101);
        }
    }

    #[test]
    fn a_library_found_nowhere_is_reported_with_where_it_was_looked_for() {
        const ABSENT: LibSpec = LibSpec {
            what: "an absent library",
            sonames: &["libpipeline-absent.so.1"],
            family: "libpipeline-absent",
            in_wheels: true,
        };
        let empty = tempfile::tempdir().unwrap();
        let dirs = [SearchDir {
            path: empty.path().to_path_buf(),
            origin: Origin::Configured,
        }];
        let mut asked = 0;
        let missing = load(&ABSENT, &dirs, &mut || {
            asked += 1;
            vec![SearchDir {
                path: empty.path().join("nvidia/cudnn/lib"),
                origin: Origin::Python,
            }]
        })
        .unwrap_err();
        assert_eq!(asked, 1, "Python environments are the last resort");
        assert_eq!(
            missing.to_string(),
            "an absent library (libpipeline-absent.so.1)"
        );
        // The bare-name try is kept with the loader's own words for it.
        assert_eq!(missing.system_errors.len(), 1, "{missing:?}");
        assert_eq!(
            missing.system_errors[0].file,
            PathBuf::from("libpipeline-absent.so.1")
        );
        assert!(
            missing.system_errors[0]
                .error
                .contains("libpipeline-absent.so.1: cannot open shared object file"),
            "{missing:?}"
        );
        let report = LoadReport {
            loaded: Vec::new(),
            companion_failures: Vec::new(),
            missing: vec![missing],
            searched: vec![
                dirs[0].clone(),
                SearchDir {
                    path: PathBuf::from("/venv/nvidia/cudnn/lib"),
                    origin: Origin::Python,
                },
            ],
            python_searched: true,
        };
        let details = report.details();
        assert_eq!(details.len(), 1, "{details:?}");
        assert!(
            details[0].starts_with(
                "an absent library: libpipeline-absent.so.1: cannot open shared object file"
            ),
            "{details:?}"
        );
        assert_eq!(
            report.where_searched(),
            format!(
                "PIPELINE_CUDA_LIB_DIRS ({}), the system search path, Python's nvidia/*/lib (/venv/nvidia/cudnn/lib)",
                empty.path().display()
            )
        );
        let driver_only = LoadReport {
            python_searched: false,
            searched: Vec::new(),
            ..report
        };
        assert_eq!(
            driver_only.where_searched(),
            "PIPELINE_CUDA_LIB_DIRS (unset), the system search path"
        );
    }

    /// A file that is there but is no library: the message names the file and the loader's
    /// reason, not just the library.
    #[test]
    fn a_library_file_that_does_not_load_is_named_with_the_loaders_message() {
        const BROKEN: LibSpec = LibSpec {
            what: "a broken library",
            sonames: &["libpipelinebroken.so.9"],
            family: "libpipelinebroken",
            in_wheels: false,
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libpipelinebroken.so.9");
        std::fs::write(&file, b"not an ELF file").unwrap();
        let dirs = [SearchDir {
            path: dir.path().to_path_buf(),
            origin: Origin::Configured,
        }];
        let missing = load(&BROKEN, &dirs, &mut Vec::new).unwrap_err();
        assert_eq!(missing.load_failures.len(), 1, "{missing:?}");
        assert_eq!(missing.load_failures[0].file, file);
        let message = missing.to_string();
        let expected = format!(
            "a broken library (libpipelinebroken.so.9): {}: ",
            file.display()
        );
        assert!(message.starts_with(&expected), "{message}");
        // dlerror's reason follows: glibc says "invalid ELF header" or "file too short".
        assert!(message.len() > expected.len(), "{message}");
        assert!(load_failures().contains(&missing.load_failures[0]));
    }

    /// A companion that cannot load (its own dependency is missing) does not stop the main
    /// library, but is kept: in the answer, in the process's list, and in the note a failing
    /// library call appends.
    #[test]
    fn a_companion_that_does_not_load_is_kept_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let main = "libpipelinecomp.so.9";
        let companion = "libpipelinecomp_engines.so.9";
        let dep = "libpipelinegone.so.1";
        let built = build_stub(
            dir.path(),
            main,
            "int pipeline_comp(void) { return 1; }",
            &[],
        )
        .and_then(|()| {
            build_stub(
                dir.path(),
                dep,
                "int pipeline_gone(void) { return 2; }",
                &[],
            )
        })
        .and_then(|()| {
            build_stub(
                dir.path(),
                companion,
                "int pipeline_gone(void);\n\
                     int pipeline_engines(void) { return pipeline_gone(); }",
                &[dep],
            )
        });
        if built.is_none() {
            skip("no C compiler (cc) to build the stub libraries");
            return;
        }
        // The dependency goes away after linking: the companion can no longer load.
        std::fs::remove_file(dir.path().join(dep)).unwrap();
        const COMP: LibSpec = LibSpec {
            what: "the companion stub",
            sonames: &["libpipelinecomp.so.9"],
            family: "libpipelinecomp",
            in_wheels: false,
        };
        let dirs = [SearchDir {
            path: dir.path().to_path_buf(),
            origin: Origin::Configured,
        }];
        let found = load(&COMP, &dirs, &mut Vec::new).unwrap();
        assert_eq!(found.from, Loaded::File(dir.path().join(main)));
        assert_eq!(found.companion_failures.len(), 1, "{found:?}");
        let failure = &found.companion_failures[0];
        assert_eq!(failure.file, dir.path().join(companion));
        assert!(
            failure
                .error
                .contains("libpipelinegone.so.1: cannot open shared object file"),
            "{failure}"
        );
        assert!(load_failures().contains(failure));
        let note = failure_note(std::slice::from_ref(failure));
        assert_eq!(
            note,
            format!(
                " (libraries that did not load: {}: {})",
                failure.file.display(),
                failure.error
            )
        );
        assert_eq!(failure_note(&[]), "");
    }
}
