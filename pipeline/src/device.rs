//! Which device computes a run (`--device cpu|cuda|auto`, `PIPELINE_DEVICE`): an execution
//! option, not part of the experiment. [`resolve`] is the one place that decides what was
//! asked for (flag, then environment, then pipeline.toml, then the default); [`Device`]
//! holds the choice with its backend and record, which [`select`] opens, saying in the run
//! record which device was chosen and why.

use std::sync::Arc;

use clap::ValueEnum;
use pipeline_engine::device::DeviceRecord;
use stages::model::cuda::{self, CudaUnavailable, DeviceFacts};
use stages::model::{Backend, CpuBackend, CudaBackend, GpuMath};

use crate::config::Source;
use crate::usage::UsageError;

/// The environment variable that chooses the device when `--device` is not given.
pub const DEVICE_ENV: &str = "PIPELINE_DEVICE";
/// The environment variable that chooses the GPU's fp32 math when `--gpu-math` is not given.
pub const GPU_MATH_ENV: &str = "PIPELINE_GPU_MATH";

/// What the user asked to compute on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// The CPU (dfdx and the project's kernels): the reference.
    Cpu,
    /// An NVIDIA GPU; an error naming what is missing when none is usable.
    Cuda,
    /// The GPU when one is usable, otherwise the CPU (the run records which, and why).
    Auto,
}

impl DeviceChoice {
    pub fn name(self) -> &'static str {
        match self {
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
            DeviceChoice::Auto => "auto",
        }
    }
}

/// The GPU's fp32 math, as `--gpu-math` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MathChoice {
    /// Strict fp32 (FMA, no TF32 tensor cores): the default.
    Fp32,
    /// TF32 tensor cores: faster, about 1e-3 relative error; a device class of its own.
    Tf32,
}

impl From<MathChoice> for GpuMath {
    fn from(m: MathChoice) -> Self {
        match m {
            MathChoice::Fp32 => GpuMath::Fp32,
            MathChoice::Tf32 => GpuMath::Tf32,
        }
    }
}

/// A value given, trimmed; an empty one is not given.
fn nonempty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Who chose the device, as the run record's reason says it ("--device chose CUDA").
fn chooser(source: Source) -> &'static str {
    match source {
        Source::Flag => "--device",
        Source::Environment(_) => DEVICE_ENV,
        Source::File => "pipeline.toml's `device`",
        Source::Default => "the default",
    }
}

/// What to compute on, decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub device: DeviceChoice,
    /// Where the device choice came from.
    pub source: Source,
    pub math: GpuMath,
}

/// The device asked for: `--device`, else `PIPELINE_DEVICE`, else `device` in pipeline.toml
/// (`setting`), else the CPU (results do not change class because a GPU happens to be
/// present); the GPU math likewise from `--gpu-math`, `PIPELINE_GPU_MATH`, else fp32. The
/// one place either is decided.
pub fn resolve(
    flag: Option<DeviceChoice>,
    env: Option<&str>,
    setting: Option<&str>,
    math_flag: Option<MathChoice>,
    math_env: Option<&str>,
) -> Result<Request, UsageError> {
    let (device, source) = match (flag, nonempty(env), nonempty(setting)) {
        (Some(d), _, _) => (d, Source::Flag),
        (None, Some(v), _) => (
            DeviceChoice::from_str(v, true).map_err(|_| {
                UsageError(format!(
                    "{DEVICE_ENV}={v:?} is not a device: use cpu, cuda or auto"
                ))
            })?,
            Source::Environment(DEVICE_ENV),
        ),
        (None, None, Some(v)) => (
            DeviceChoice::from_str(v, true).map_err(|_| {
                UsageError(format!(
                    "pipeline.toml: device = {v:?} is not a device: use cpu, cuda or auto"
                ))
            })?,
            Source::File,
        ),
        (None, None, None) => (DeviceChoice::Cpu, Source::Default),
    };
    let math = match (math_flag, nonempty(math_env)) {
        (Some(m), _) => m.into(),
        (None, Some(v)) => GpuMath::from_name(&v.to_ascii_lowercase()).ok_or_else(|| {
            UsageError(format!(
                "{GPU_MATH_ENV}={v:?} is not a GPU math mode: use fp32 or tf32"
            ))
        })?,
        (None, None) => GpuMath::Fp32,
    };
    Ok(Request {
        device,
        source,
        math,
    })
}

impl Request {
    /// Puts the choice in this process's environment, so that the `pipeline run` children a
    /// sweep or a Slurm task starts compute on the device asked for here.
    /// Only a flag's choice needs passing on: the environment and pipeline.toml reach the
    /// children as they reached this process, and the record then names the right source.
    pub fn export_to_children(&self) {
        if self.source == Source::Flag {
            std::env::set_var(DEVICE_ENV, self.device.name());
        }
        std::env::set_var(GPU_MATH_ENV, self.math.name());
    }
}

/// How far a command needs the device: computing commands open it; `status` and `sweep`
/// only need the class a run would record; the others none of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Open,
    ClassOnly,
    Nothing,
}

/// The device choice as one value: what was asked for and where that came from
/// ([`Request`]), the backend that computes, and what a run records about it. The backend
/// and the record are made together, so they cannot disagree.
pub struct Device {
    pub request: Request,
    pub backend: Arc<dyn Backend>,
    /// What a run records; `None` where the command needs nothing of the device (the
    /// backend is then the CPU, unused).
    pub record: Option<DeviceRecord>,
}

impl Device {
    /// The device `request` names, opened as far as `need` says: [`select`] opens it;
    /// [`class_only`] only tells its class (the CPU computes keys); otherwise the CPU.
    pub fn new(request: Request, need: Need) -> Result<Device, CudaUnavailable> {
        let (backend, record) = match need {
            Need::Open => {
                let selected = select(request)?;
                (selected.backend, Some(selected.record))
            }
            Need::ClassOnly => (cpu_backend(), Some(class_only(request)?)),
            Need::Nothing => (cpu_backend(), None),
        };
        Ok(Device {
            request,
            backend,
            record,
        })
    }
}

fn cpu_backend() -> Arc<dyn Backend> {
    Arc::new(CpuBackend)
}

/// A device, open, and what the run records about it.
struct Selected {
    backend: Arc<dyn Backend>,
    record: DeviceRecord,
}

/// Opens the device `request` names. `cuda` without a usable GPU is an error naming what is
/// missing and where it was looked for; `auto` then falls back to the CPU and says why (on
/// stderr, and in the record).
fn select(request: Request) -> Result<Selected, CudaUnavailable> {
    match request.device {
        DeviceChoice::Cpu => Ok(cpu(
            request,
            format!("{} chose the CPU", chooser(request.source)),
        )),
        DeviceChoice::Cuda => {
            let gpu = CudaBackend::new(request.math)?;
            let why = format!("{} chose CUDA", chooser(request.source));
            Ok(gpu_selected(request, gpu, why))
        }
        DeviceChoice::Auto => {
            let opened =
                cuda::probe(false).and_then(|facts| CudaBackend::open(request.math, facts));
            let selected = match opened {
                Ok(gpu) => {
                    let why = format!("auto ({}): a usable GPU was found", chooser(request.source));
                    gpu_selected(request, gpu, why)
                }
                Err(e) => cpu(
                    request,
                    format!(
                        "auto ({}): no usable GPU, so the CPU: {e}",
                        chooser(request.source)
                    ),
                ),
            };
            eprintln!(
                "device: {} ({})",
                selected.record.class,
                selected.record.reason.as_deref().unwrap_or_default()
            );
            Ok(selected)
        }
    }
}

/// The record a run on `request` would carry, without opening the GPU (for `pipeline
/// status`, which computes keys but runs nothing).
fn class_only(request: Request) -> Result<DeviceRecord, CudaUnavailable> {
    let gpu = |facts: DeviceFacts, why: String| DeviceRecord {
        class: gpu_class(request.math).to_string(),
        requested: request.device.name().to_string(),
        reason: Some(why),
        facts: facts_table(&facts, request.math),
    };
    Ok(match request.device {
        DeviceChoice::Cpu => cpu(request, String::new()).record,
        DeviceChoice::Cuda => gpu(cuda::probe(true)?, String::new()),
        DeviceChoice::Auto => match cuda::probe(false) {
            Ok(facts) => gpu(facts, "auto: a usable GPU was found".into()),
            Err(e) => cpu(request, format!("auto: no usable GPU, so the CPU: {e}")).record,
        },
    })
}

fn cpu(request: Request, why: String) -> Selected {
    let backend = cpu_backend();
    Selected {
        record: DeviceRecord {
            class: backend.device_class().name().to_string(),
            requested: request.device.name().to_string(),
            reason: (!why.is_empty()).then_some(why),
            facts: Default::default(),
        },
        backend,
    }
}

fn gpu_selected(request: Request, gpu: CudaBackend, why: String) -> Selected {
    let facts = facts_table(gpu.facts(), request.math);
    let backend: Arc<dyn Backend> = Arc::new(gpu);
    Selected {
        record: DeviceRecord {
            class: backend.device_class().name().to_string(),
            requested: request.device.name().to_string(),
            reason: Some(why),
            facts,
        },
        backend,
    }
}

fn gpu_class(math: GpuMath) -> &'static str {
    match math {
        GpuMath::Fp32 => stages::model::DeviceClass::CudaFp32.name(),
        GpuMath::Tf32 => stages::model::DeviceClass::CudaTf32.name(),
    }
}

/// The facts run.toml records about a GPU: name, architecture, memory, driver, library
/// versions, and where each library was loaded from.
fn facts_table(facts: &DeviceFacts, math: GpuMath) -> std::collections::BTreeMap<String, String> {
    let mut t = std::collections::BTreeMap::from([
        ("name".to_string(), facts.name.clone()),
        ("arch".to_string(), facts.arch.clone()),
        ("memory_bytes".to_string(), facts.memory_bytes.to_string()),
        ("driver_cuda".to_string(), facts.driver.clone()),
        ("cudnn".to_string(), facts.cudnn.clone()),
        ("cublas".to_string(), facts.cublas.clone()),
        ("nvrtc".to_string(), facts.nvrtc.clone()),
        ("gpu_math".to_string(), math.name().to_string()),
    ]);
    for (what, from) in &facts.libraries {
        t.insert(format!("lib.{what}"), from.clone());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_environment_then_the_file_then_the_cpu() {
        let r = resolve(
            Some(DeviceChoice::Auto),
            Some("cuda"),
            Some("cuda"),
            None,
            None,
        )
        .expect("valid");
        assert_eq!((r.device, r.source), (DeviceChoice::Auto, Source::Flag));
        let r = resolve(None, Some(" CUDA "), Some("cpu"), None, Some("tf32")).expect("valid");
        assert_eq!(
            (r.device, r.source),
            (DeviceChoice::Cuda, Source::Environment(DEVICE_ENV))
        );
        assert_eq!(r.math, GpuMath::Tf32);
        let r = resolve(None, Some(""), None, Some(MathChoice::Fp32), Some("tf32")).expect("valid");
        assert_eq!((r.device, r.source), (DeviceChoice::Cpu, Source::Default));
        assert_eq!(r.math, GpuMath::Fp32);
        let r = resolve(None, Some(""), Some("auto"), None, None).expect("a device");
        assert_eq!((r.device, r.source), (DeviceChoice::Auto, Source::File));
        let e = resolve(None, None, Some("tpu"), None, None).unwrap_err().0;
        assert_eq!(
            e,
            "pipeline.toml: device = \"tpu\" is not a device: use cpu, cuda or auto"
        );
        let e = resolve(None, Some("gpu"), None, None, None).unwrap_err().0;
        assert_eq!(
            e,
            "PIPELINE_DEVICE=\"gpu\" is not a device: use cpu, cuda or auto"
        );
        let e = resolve(None, None, None, None, Some("fp16")).unwrap_err().0;
        assert_eq!(
            e,
            "PIPELINE_GPU_MATH=\"fp16\" is not a GPU math mode: use fp32 or tf32"
        );
    }

    #[test]
    fn the_cpu_is_recorded_with_its_class_and_why() {
        let request = resolve(None, None, None, None, None).expect("valid");
        let device = Device::new(request, Need::Open).expect("the CPU is always there");
        let record = device.record.expect("an opened device has a record");
        assert_eq!(record.class, "cpu");
        assert_eq!(record.requested, "cpu");
        assert_eq!(record.reason.as_deref(), Some("the default chose the CPU"));
        assert_eq!(device.backend.name(), "cpu");
        let file = resolve(None, None, Some("cpu"), None, None).expect("valid");
        let record = Device::new(file, Need::Open).expect("cpu").record;
        assert_eq!(
            record.and_then(|r| r.reason).as_deref(),
            Some("pipeline.toml's `device` chose the CPU")
        );
        let unneeded = Device::new(request, Need::Nothing).expect("cpu");
        assert!(unneeded.record.is_none());
    }
}
