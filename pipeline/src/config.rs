//! The project's settings file, `pipeline.toml` at the project root, as `.dvc/config` is for
//! DVC: where the data is, where the store is, which device to use, remembered so that no
//! command needs `--data-root` every time.
//!
//! ```toml
//! data_root = "../shared/data"   # relative paths are relative to the project root
//! artifacts = "artifacts"
//! device = "auto"                # cpu, cuda or auto
//! ```
//!
//! A flag wins over the environment variable, which wins over the file, which wins over the
//! default. Each setting has one function that decides it ([`data_root`], [`artifacts`],
//! [`remote`]; `device::resolve` for the device), used by every command and by
//! `pipeline config`, which shows the settings and where each comes from;
//! `pipeline config KEY VALUE` writes one.
//!
//! A `pipeline.toml` that is not yours (someone else's in a shared folder above the project,
//! say) may not set where results go or what runs: [`trust`] says when a file is yours and
//! how to trust another's (`pipeline config --trust DIR`).

pub mod trust;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use pipeline_engine::diagnostic::did_you_mean;

/// The file's name at the project root.
pub const FILE: &str = "pipeline.toml";

/// The keys the file may hold, with what each is for.
pub const KEYS: [(&str, &str); 4] = [
    (
        "data_root",
        "where experiment data paths are resolved (flag --data-root, env PIPELINE_DATA_ROOT)",
    ),
    (
        "artifacts",
        "the store: cache, runs and sweeps (flag --artifacts, env PIPELINE_ARTIFACTS)",
    ),
    ("device", "cpu, cuda or auto (env PIPELINE_DEVICE)"),
    (
        "remote",
        "a remote cache: s3://bucket/prefix or file:///path (flag --remote, env PIPELINE_REMOTE)",
    ),
];

/// The devices `device` may name.
pub const DEVICES: [&str; 3] = ["cpu", "cuda", "auto"];

/// What `pipeline.toml` holds; paths resolved against the project root.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// The file, when there is one.
    pub file: Option<PathBuf>,
    pub data_root: Option<PathBuf>,
    pub artifacts: Option<PathBuf>,
    pub device: Option<String>,
    /// The remote cache's URL, as written (checked when it is opened).
    pub remote: Option<String>,
    /// The `[slurm]` table, as written: job resources for `--executor slurm`, checked where
    /// they are used (`slurm::ExecutorArgs::resources`), so that a command that submits
    /// nothing is not refused for them.
    pub slurm: Option<toml::Table>,
}

/// A bad `pipeline.toml`: a usage error (exit 2), naming the file and key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

impl Settings {
    /// Reads `pipeline.toml` at `project`; no file means no settings. A file that is not
    /// yours ([`trust::not_yours`]) in a folder that is not trusted is refused when it sets
    /// any of [`trust::RISKY_KEYS`], naming them and how to trust the folder.
    pub fn load(project: &Path) -> Result<Settings, ConfigError> {
        let file = project.join(FILE);
        let fail = |message: String| ConfigError {
            file: file.clone(),
            message,
        };
        // The owner and mode are those of the file read: the open file's.
        let opened = fs::File::open(&file).and_then(|mut f| {
            let meta = f.metadata()?;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut f, &mut text)?;
            Ok((text, meta))
        });
        let (text, meta) = match opened {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => return Err(fail(format!("cannot read it: {e}"))),
        };
        let settings = Settings::parse(project, &file, &text)?;
        let Some(why) = trust::not_yours(&meta) else {
            return Ok(settings);
        };
        let risky: Vec<String> = trust::RISKY_KEYS
            .iter()
            .filter(|key| settings.sets(key))
            .map(|&key| match key {
                "slurm" => "`[slurm]`".to_string(),
                _ => format!("`{key}`"),
            })
            .collect();
        if risky.is_empty() || trust::is_trusted(project).map_err(&fail)? {
            return Ok(settings);
        }
        Err(fail(format!(
            "{} refused: {why}, and it could send your results elsewhere or run commands; if \
             you trust it, run `pipeline config --trust {}`",
            risky.join(", "),
            trust::shell_word(project)
        )))
    }

    /// Whether the file sets `key` (a key of [`KEYS`] or `slurm`).
    fn sets(&self, key: &str) -> bool {
        match key {
            "data_root" => self.data_root.is_some(),
            "artifacts" => self.artifacts.is_some(),
            "device" => self.device.is_some(),
            "remote" => self.remote.is_some(),
            "slurm" => self.slurm.is_some(),
            _ => false,
        }
    }

    fn parse(project: &Path, file: &Path, text: &str) -> Result<Settings, ConfigError> {
        let fail = |message: String| ConfigError {
            file: file.to_path_buf(),
            message,
        };
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| fail(format!("invalid TOML: {}", e.message().trim())))?;
        let mut settings = Settings {
            file: Some(file.to_path_buf()),
            ..Settings::default()
        };
        for (key, value) in &table {
            if let ("slurm", toml::Value::Table(slurm)) = (key.as_str(), value) {
                // Job resources for `--executor slurm`, checked where they are used
                // (`slurm::resources`), with the file and key named.
                settings.slurm = Some(slurm.clone());
                continue;
            }
            let text = value.as_str().ok_or_else(|| {
                fail(format!(
                    "`{key}` must be a string, not {}",
                    value.type_str()
                ))
            })?;
            match key.as_str() {
                "data_root" => settings.data_root = Some(project.join(text)),
                "artifacts" => settings.artifacts = Some(project.join(text)),
                "device" => {
                    check_device(text).map_err(fail)?;
                    settings.device = Some(text.to_string());
                }
                "remote" => settings.remote = Some(text.to_string()),
                other => {
                    let names = KEYS.iter().map(|(k, _)| *k);
                    return Err(fail(format!(
                        "unknown key `{other}`{}; the keys are {}",
                        did_you_mean(other, names.clone()),
                        names
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        Ok(settings)
    }
}

fn check_device(device: &str) -> Result<(), String> {
    if DEVICES.contains(&device) {
        Ok(())
    } else {
        Err(format!(
            "`device` must be one of cpu, cuda, auto, not {device:?}"
        ))
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Environment(&'static str),
    File,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("from the command line"),
            Source::Environment(var) => write!(f, "from {var}"),
            Source::File => write!(f, "from {FILE}"),
            Source::Default => f.write_str("the default"),
        }
    }
}

/// A resolved setting: its value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved<T> {
    pub value: T,
    pub source: Source,
}

/// Flag or environment (clap merges the two: the variable is told apart by its value), then
/// the file, then the default.
fn resolve_path(
    given: Option<&Path>,
    env_var: &'static str,
    from_file: Option<&Path>,
    default: PathBuf,
) -> Resolved<PathBuf> {
    if let Some(path) = given {
        let from_env = std::env::var_os(env_var).is_some_and(|v| Path::new(&v) == path);
        return Resolved {
            value: path.to_path_buf(),
            source: if from_env {
                Source::Environment(env_var)
            } else {
                Source::Flag
            },
        };
    }
    match from_file {
        Some(path) => Resolved {
            value: path.to_path_buf(),
            source: Source::File,
        },
        None => Resolved {
            value: default,
            source: Source::Default,
        },
    }
}

/// The data root: `--data-root`, `PIPELINE_DATA_ROOT`, `data_root` in `pipeline.toml`, or
/// `data/` at the project root.
pub fn data_root(given: Option<&Path>, project: &Path, settings: &Settings) -> Resolved<PathBuf> {
    resolve_path(
        given,
        "PIPELINE_DATA_ROOT",
        settings.data_root.as_deref(),
        project.join("data"),
    )
}

/// The store: `--artifacts`, `PIPELINE_ARTIFACTS`, `artifacts` in `pipeline.toml`, or
/// `artifacts/` at the project root.
pub fn artifacts(given: Option<&Path>, project: &Path, settings: &Settings) -> Resolved<PathBuf> {
    resolve_path(
        given,
        "PIPELINE_ARTIFACTS",
        settings.artifacts.as_deref(),
        project.join("artifacts"),
    )
}

/// The variable naming the remote cache.
pub const REMOTE_ENV: &str = "PIPELINE_REMOTE";

/// The remote cache's URL: `--remote` or `PIPELINE_REMOTE` (clap merges the two), else
/// `remote` in `pipeline.toml`, else none. An empty flag or variable is no remote, whatever
/// the file says: it is how to run without the project's remote.
pub fn remote(given: Option<&str>, settings: &Settings) -> Resolved<Option<String>> {
    let env = std::env::var(REMOTE_ENV).ok();
    // clap leaves out a variable set to the empty string; it still says "no remote".
    let given = match given {
        Some(url) if env.as_deref() == Some(url) => Some((url, Source::Environment(REMOTE_ENV))),
        Some(url) => Some((url, Source::Flag)),
        None => env
            .as_deref()
            .map(|url| (url, Source::Environment(REMOTE_ENV))),
    };
    if let Some((url, source)) = given {
        return Resolved {
            value: Some(url.to_string()).filter(|url| !url.is_empty()),
            source,
        };
    }
    match settings.remote.as_deref().filter(|url| !url.is_empty()) {
        Some(url) => Resolved {
            value: Some(url.to_string()),
            source: Source::File,
        },
        None => Resolved {
            value: None,
            source: Source::Default,
        },
    }
}

/// Why `url` cannot be a remote this binary opens, where that is known before opening it:
/// a `file://` URL must name an absolute path (`file:///path`); `file://relative/path` would
/// otherwise create `relative/path` under whatever the current directory is.
pub fn check_remote(url: &str) -> Result<(), String> {
    match url.strip_prefix("file://") {
        Some(path) if !Path::new(path).is_absolute() => Err(format!(
            "remote {url:?}: a file URL must name an absolute path, as file:///path"
        )),
        _ => Ok(()),
    }
}

/// How to set the data root, for every message that names one.
pub fn data_root_hint(root: &Resolved<PathBuf>) -> String {
    format!(
        "the data root is {} ({}); set it with --data-root DIR, PIPELINE_DATA_ROOT=DIR, or \
         `pipeline config data_root DIR` (saved in {FILE})",
        root.value.display(),
        root.source
    )
}

/// Adds how to set the data root to an error about a missing data file or folder, or one
/// that names the data root: the usual cause is a data root that is not where the data is.
pub fn with_data_root_hint(error: anyhow::Error, root: &Resolved<PathBuf>) -> anyhow::Error {
    let text = crate::render(&error);
    let root_text = root.value.display().to_string();
    let about_data = text.contains("data root")
        || text.contains(&root_text)
        || error.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        });
    if about_data && !text.contains("--data-root") {
        // The whole message first, then the hint: `render` leaves out the causes whose text
        // this context already holds.
        let hint = data_root_hint(root);
        error.context(format!("{text}; {hint}"))
    } else {
        error
    }
}

/// Writes `key = "value"` into `pipeline.toml` at `project` (or removes the key when `value`
/// is `None`), keeping the file's other lines and comments as they are.
pub fn set(project: &Path, key: &str, value: Option<&str>) -> anyhow::Result<PathBuf> {
    let file = project.join(FILE);
    if !KEYS.iter().any(|(k, _)| *k == key) {
        let names = KEYS.iter().map(|(k, _)| *k);
        return Err(crate::usage::UsageError(format!(
            "unknown setting `{key}`{}; the settings are {}",
            did_you_mean(key, names.clone()),
            names
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    }
    if let (Some(v), "device") = (value, key) {
        check_device(v).map_err(crate::usage::UsageError)?;
    }
    let old = match fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let text = edited(&old, key, value).map_err(|message| ConfigError {
        file: file.clone(),
        message,
    })?;
    // The edit must leave a file that reads back; if it would not (the file was already
    // broken), nothing is written.
    Settings::parse(project, &file, &text)?;
    let tmp = project.join(format!(".{FILE}.{}.tmp", std::process::id()));
    fs::write(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &file).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(file)
}

/// `text` with the top-level `key` set to `value` (or removed), edited as TOML rather than as
/// lines: a key appended after a `[slurm]` table would belong to that table and do nothing.
/// A replaced value keeps its place and its comments, a new key goes with the other
/// top-level keys, above the first table.
fn edited(text: &str, key: &str, value: Option<&str>) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| format!("invalid TOML: {}", e.message().trim()))?;
    match value {
        None => {
            // A comment above the removed key stays in the file, above what followed it.
            let names: Vec<String> = doc.iter().map(|(name, _)| name.to_string()).collect();
            let comments = doc
                .as_table_mut()
                .remove_entry(key)
                .and_then(|(removed, _)| removed.leaf_decor().prefix()?.as_str().map(String::from))
                .filter(|text| !text.trim().is_empty());
            if let Some(comments) = comments {
                let next = names.iter().skip_while(|name| *name != key).nth(1);
                keep_comments(&mut doc, next.map(String::as_str), &comments);
            }
        }
        Some(v) => match doc.get_mut(key).and_then(|item| item.as_value_mut()) {
            Some(old) => {
                let decor = old.decor().clone();
                *old = toml_edit::Value::from(v);
                *old.decor_mut() = decor;
            }
            None => {
                doc.insert(key, toml_edit::value(v));
            }
        },
    }
    Ok(doc.to_string())
}

/// Puts `comments` above the item `next` (a key or a table), or at the end of the file.
fn keep_comments(doc: &mut toml_edit::DocumentMut, next: Option<&str>, comments: &str) {
    fn prepend(decor: &mut toml_edit::Decor, text: &str) {
        let old = decor.prefix().and_then(|p| p.as_str()).unwrap_or("");
        decor.set_prefix(format!("{text}{old}"));
    }
    match next {
        Some(name) => match doc.get_mut(name) {
            Some(toml_edit::Item::Table(table)) => prepend(table.decor_mut(), comments),
            _ => {
                if let Some(mut key) = doc.as_table_mut().key_mut(name) {
                    prepend(key.leaf_decor_mut(), comments);
                }
            }
        },
        None => {
            let trailing = doc.trailing().as_str().unwrap_or("").to_string();
            doc.set_trailing(format!("{trailing}{comments}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_slurm_table_unchecked_for_the_executor_to_read() {
        let project = Path::new("/p");
        let file = project.join(FILE);
        let s = Settings::parse(project, &file, "[slurm]\npartition = \"gpu\"\ncpus = 0\n")
            .expect("a bad resource is not the settings' to refuse");
        let slurm = s.slurm.expect("the table");
        assert_eq!(slurm.get("partition").and_then(|v| v.as_str()), Some("gpu"));
        assert_eq!(slurm.get("cpus").and_then(|v| v.as_integer()), Some(0));
        let none = Settings::parse(project, &file, "device = \"cpu\"\n").expect("parses");
        assert_eq!(none.slurm, None);
    }

    #[test]
    fn reads_paths_relative_to_the_project_and_refuses_unknown_keys() {
        let project = Path::new("/p");
        let file = project.join(FILE);
        let s = Settings::parse(
            project,
            &file,
            "data_root = \"../data\"\nartifacts = \"/store\"\ndevice = \"cpu\"\n",
        )
        .expect("parses");
        assert_eq!(s.data_root, Some(PathBuf::from("/p/../data")));
        assert_eq!(s.artifacts, Some(PathBuf::from("/store")));
        assert_eq!(s.device.as_deref(), Some("cpu"));
        let r = Settings::parse(project, &file, "remote = \"s3://b/p\"\n").expect("parses");
        assert_eq!(r.remote.as_deref(), Some("s3://b/p"));

        let e = Settings::parse(project, &file, "data_rot = \"x\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/p/pipeline.toml: unknown key `data_rot`; did you mean `data_root`?; the keys are \
             `data_root`, `artifacts`, `device`, `remote`"
        );
        let e = Settings::parse(project, &file, "device = \"gpu\"\n").unwrap_err();
        assert!(
            e.to_string().contains("must be one of cpu, cuda, auto"),
            "{e}"
        );
        let e = Settings::parse(project, &file, "data_root = 3\n").unwrap_err();
        assert!(
            e.to_string().contains("`data_root` must be a string"),
            "{e}"
        );
    }

    #[test]
    fn the_file_wins_over_the_default_and_a_flag_over_the_file() {
        let project = Path::new("/p");
        let settings = Settings {
            data_root: Some(PathBuf::from("/p/shared")),
            ..Settings::default()
        };
        let none = data_root(None, project, &Settings::default());
        assert_eq!(
            (none.value, none.source),
            (PathBuf::from("/p/data"), Source::Default)
        );
        let file = data_root(None, project, &settings);
        assert_eq!(
            (file.value, file.source),
            (PathBuf::from("/p/shared"), Source::File)
        );
        let flag = data_root(Some(Path::new("/flag-only-path")), project, &settings);
        assert_eq!(flag.value, PathBuf::from("/flag-only-path"));
        assert_eq!(flag.source, Source::Flag);
    }

    #[test]
    fn the_remote_is_the_flag_then_the_file_and_empty_is_none() {
        let settings = Settings {
            remote: Some("s3://team/cache".into()),
            ..Settings::default()
        };
        let file = remote(None, &settings);
        assert_eq!(
            (file.value.as_deref(), file.source),
            (Some("s3://team/cache"), Source::File)
        );
        let flag = remote(Some("file:///flag-only-remote"), &settings);
        assert_eq!(
            (flag.value.as_deref(), flag.source),
            (Some("file:///flag-only-remote"), Source::Flag)
        );
        // An empty flag is no remote, even with one in the file.
        let empty = remote(Some(""), &settings);
        assert_eq!((empty.value, empty.source), (None, Source::Flag));
    }

    #[test]
    fn a_file_remote_must_be_absolute() {
        assert_eq!(check_remote("file:///srv/cache"), Ok(()));
        assert_eq!(check_remote("s3://b/p"), Ok(()));
        let e = check_remote("file://relative/path").unwrap_err();
        assert!(
            e.contains("\"file://relative/path\"") && e.contains("absolute"),
            "{e}"
        );
    }

    #[test]
    fn set_writes_a_top_level_key_above_a_table_and_keeps_comments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before =
            "# the cluster\ndevice = \"cpu\"\n\n[slurm]\n# the GPU nodes\npartition = \"gpu\"\n";
        fs::write(dir.path().join(FILE), before).expect("write");
        set(dir.path(), "data_root", Some("d")).expect("set");
        let text = fs::read_to_string(dir.path().join(FILE)).expect("read");
        let s = Settings::parse(dir.path(), &dir.path().join(FILE), &text).expect("parses");
        assert_eq!(s.data_root, Some(dir.path().join("d")), "{text}");
        let slurm = s.slurm.expect("the table");
        assert_eq!(slurm.len(), 1, "{text}");
        assert!(
            text.contains("# the cluster") && text.contains("# the GPU nodes"),
            "{text}"
        );
        // Removing a top-level key leaves the table as it is.
        set(dir.path(), "device", None).expect("unset");
        let text = fs::read_to_string(dir.path().join(FILE)).expect("read");
        assert!(!text.contains("device"), "{text}");
        assert!(text.contains("partition = \"gpu\""), "{text}");
        assert!(text.starts_with("# the cluster\n"), "{text}");
    }

    #[test]
    fn set_replaces_or_appends_one_line_and_keeps_comments() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join(FILE),
            "# where the images are\ndata_root = \"old\"\ndevice = \"cpu\"\n",
        )
        .expect("write");
        set(dir.path(), "data_root", Some("new dir")).expect("set");
        set(dir.path(), "artifacts", Some("store")).expect("set");
        set(dir.path(), "device", None).expect("unset");
        assert_eq!(
            fs::read_to_string(dir.path().join(FILE)).expect("read"),
            "# where the images are\ndata_root = \"new dir\"\nartifacts = \"store\"\n"
        );
        assert!(set(dir.path(), "device", Some("tpu")).is_err());
        assert!(set(dir.path(), "colour", Some("x")).is_err());
    }
}
