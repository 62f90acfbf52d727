//! Whether a `pipeline.toml` may send data elsewhere or run things, as git's `safe.directory`
//! decides whether a repository's config is obeyed (git 2.35.2, CVE-2022-24765).
//!
//! `pipeline` finds `pipeline.toml` in the nearest folder above the current one, so a file
//! someone else put in a shared folder above yours (`/tmp`, a scratch disk) would otherwise
//! be obeyed: its `remote` would receive every result. The rules:
//!
//! - A file is **yours** when its owner is the user running `pipeline` (the effective uid).
//!   Running as root, a file owned by the user in `SUDO_UID` is yours as well, as git does
//!   under sudo; a file owned by root is not yours unless you are root.
//! - A file anyone may write to (mode `o+w`) is not yours whoever owns it: its content is
//!   anyone's. A group-writable file is yours: shared project folders and user-private groups
//!   (umask 002) make them, and the group is someone the owner chose.
//! - Only the file is checked, not the folders above it: it is opened once, and its owner and
//!   mode are read from the open file, so a file swapped in after the check is not read, and a
//!   file of yours in a folder others can write to can only be replaced by one of theirs,
//!   which is refused.
//! - From a file that is not yours, the settings that send data elsewhere or run things
//!   ([`RISKY_KEYS`]: `remote`, `data_root`, `artifacts`, `[slurm]`) are refused: the command
//!   stops with one line naming the file, the keys and the command that trusts the folder
//!   (`pipeline config --trust DIR`). The whole command stops rather than ignoring them, as
//!   git does: results quietly going to another store would be a surprise too. The other
//!   settings (`device`) are read as from any file.
//! - A folder is trusted when it is listed in the user's own trust list,
//!   `$XDG_CONFIG_HOME/pipeline/trusted.toml` (else `~/.config/pipeline/trusted.toml`),
//!   which only `pipeline config --trust DIR` (or the user) writes; like git's
//!   `safe.directory`, never a project's own file.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The settings a file that is not yours may not set: where results go (`remote`,
/// `artifacts`), what is read as data (`data_root`) and what is submitted to a cluster
/// (`[slurm]`).
pub const RISKY_KEYS: [&str; 4] = ["remote", "data_root", "artifacts", "slurm"];

/// The trust list's key: the trusted folders, as absolute paths.
const DIRECTORIES: &str = "directories";

/// Why the file whose metadata (read from the open file) is `meta` is not yours; `None`
/// when it is.
pub fn not_yours(meta: &fs::Metadata) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let owner = meta.uid();
        let sudo = std::env::var("SUDO_UID")
            .ok()
            .and_then(|uid| uid.parse::<u32>().ok());
        let owned = owner == me || (me == 0 && sudo == Some(owner));
        if !owned {
            return Some(format!("it is owned by uid {owner}, not by you (uid {me})"));
        }
        if meta.mode() & 0o002 != 0 {
            return Some(format!(
                "anyone may write to it (mode {:o})",
                meta.mode() & 0o7777
            ));
        }
        None
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// The user's trust list: `$XDG_CONFIG_HOME/pipeline/trusted.toml`, else
/// `$HOME/.config/pipeline/trusted.toml`; `None` without either variable.
pub fn list_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| Path::new(d).is_absolute())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(config.join("pipeline").join("trusted.toml"))
}

/// Whether `dir` is in the trust list (compared as canonical paths).
pub fn is_trusted(dir: &Path) -> Result<bool, String> {
    let Some(list) = list_file() else {
        return Ok(false);
    };
    let dirs = read_list(&list)?;
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Ok(dirs.iter().any(|d| Path::new(d) == dir))
}

/// The folders listed in the trust list `list` (none when it does not exist).
fn read_list(list: &Path) -> Result<Vec<String>, String> {
    let text = match fs::read_to_string(list) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: cannot read it: {e}", list.display())),
    };
    let doc: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("{}: invalid TOML: {}", list.display(), e.message().trim()))?;
    match doc.get(DIRECTORIES) {
        None => Ok(Vec::new()),
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(String::from).ok_or_else(|| {
                    format!(
                        "{}: `{DIRECTORIES}` must list folders as strings, not {}",
                        list.display(),
                        v.type_str()
                    )
                })
            })
            .collect(),
        Some(other) => Err(format!(
            "{}: `{DIRECTORIES}` must be a list of folders, not {}",
            list.display(),
            other.type_str()
        )),
    }
}

/// Adds `dir` (a folder, made canonical) to the trust list; returns the folder as listed and
/// the list's file. Listing a folder twice keeps one entry.
pub fn add(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let usage = |m: String| anyhow::Error::new(crate::usage::UsageError(m));
    let canonical =
        fs::canonicalize(dir).map_err(|e| usage(format!("--trust {}: {e}", dir.display())))?;
    if !canonical.is_dir() {
        return Err(usage(format!(
            "--trust {}: not a folder (give the folder that holds pipeline.toml)",
            dir.display()
        )));
    }
    let list = list_file().ok_or_else(|| {
        usage("--trust: neither XDG_CONFIG_HOME nor HOME is set, so there is no trust list".into())
    })?;
    let text = canonical
        .to_str()
        .ok_or_else(|| usage(format!("--trust {}: not UTF-8", canonical.display())))?
        .to_string();
    let mut dirs = read_list(&list).map_err(usage)?;
    if !dirs.contains(&text) {
        dirs.push(text);
    }
    let mut doc = toml::Table::new();
    doc.insert(
        DIRECTORIES.into(),
        toml::Value::Array(dirs.into_iter().map(toml::Value::String).collect()),
    );
    let body = format!(
        "# Folders whose pipeline.toml pipeline obeys although it is not yours (its remote,\n\
         # data_root, artifacts and [slurm]). Written by `pipeline config --trust DIR`.\n{}",
        toml::to_string(&doc).context("cannot write the trust list")?
    );
    let parent = list.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(".trusted.toml.{}.tmp", std::process::id()));
    fs::write(&tmp, body).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &list).with_context(|| format!("cannot write {}", list.display()))?;
    Ok((canonical, list))
}

/// `path` as a shell word: as it is when it needs no quoting, else in single quotes.
pub fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c));
    if plain {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_quoted_for_the_shell_only_when_it_must_be() {
        assert_eq!(shell_word(Path::new("/tmp/shared")), "/tmp/shared");
        assert_eq!(shell_word(Path::new("/tmp/my dir")), "'/tmp/my dir'");
        assert_eq!(shell_word(Path::new("/tmp/it's")), "'/tmp/it'\\''s'");
    }

    #[cfg(unix)]
    #[test]
    fn your_own_file_is_yours_unless_anyone_may_write_to_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pipeline.toml");
        fs::write(&file, "").expect("write");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o664)).expect("chmod");
        let meta = fs::metadata(&file).expect("metadata");
        assert_eq!(not_yours(&meta), None, "group-writable is still yours");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).expect("chmod");
        let meta = fs::metadata(&file).expect("metadata");
        assert_eq!(
            not_yours(&meta).as_deref(),
            Some("anyone may write to it (mode 666)")
        );
    }
}
