//! Listing the files a Cohen-style collection or a class folder contributes, without decoding.

use std::path::{Component, Path, PathBuf};

use super::config::{CohenSource, FolderSource};
use super::confine::Confinement;
use super::stray_quote::check_quotes;
use super::LoadError;

/// A file selected by a source: its path on disk and as written in `index.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedFile {
    /// `data_root` joined with `rel`.
    pub abs: PathBuf,
    /// Relative to the data root, `/`-separated.
    pub rel: String,
    /// The file's group, when its source declares `group_by` (may be empty: a group of its
    /// own).
    pub group: Option<String>,
}

/// Joins `/`-separated relative parts, refusing absolute paths and `..` so that a value in a
/// config or CSV cannot reach outside the data root.
pub fn relative(parts: &[&str]) -> Result<String, LoadError> {
    let joined = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| p.trim_end_matches('/'))
        .collect::<Vec<_>>()
        .join("/");
    let ok = Path::new(&joined)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok && !joined.is_empty() {
        Ok(joined)
    } else {
        Err(LoadError::BadPath { path: joined })
    }
}

fn ends_with_any(name: &str, endings: &[String]) -> bool {
    let lower = name.to_lowercase();
    endings.iter().any(|e| {
        let e = e.to_lowercase();
        if e.starts_with('.') {
            lower.ends_with(&e)
        } else {
            lower.ends_with(&format!(".{e}"))
        }
    })
}

/// What a Cohen source selects: the metadata file, and the selected rows' image files with
/// the CSV line each came from. Files named by a selected row but absent are in `missing`.
pub struct CohenSelection {
    pub metadata: PathBuf,
    pub files: Vec<SelectedFile>,
    pub missing: Vec<(SelectedFile, u64)>,
}

/// Applies a Cohen source's filters to its `metadata.csv`, in row order. The folder, the CSV
/// and every selected image must pass `confine` (checked before each is opened).
pub(super) fn select_cohen(
    src: &CohenSource,
    data_root: &Path,
    confine: &Confinement,
) -> Result<CohenSelection, LoadError> {
    let dir_rel = relative(&[&src.path])?;
    let dir = data_root.join(&dir_rel);
    confine.check(&dir)?;
    if !dir.is_dir() {
        return Err(LoadError::MissingDir { path: dir });
    }
    let metadata = dir.join(relative(&[&src.metadata])?);
    confine.check(&metadata)?;
    let csv_err = |source| LoadError::Csv {
        path: metadata.clone(),
        source,
    };
    // Read whole, so that its quotes are checked on the raw bytes before any row is parsed.
    let bytes = std::fs::read(&metadata).map_err(|e| csv_err(e.into()))?;
    check_quotes(&bytes).map_err(|stray| LoadError::StrayQuote {
        path: metadata.clone(),
        line: stray.line,
        why: stray.why,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(bytes.as_slice());
    let headers = reader.headers().map_err(csv_err)?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| LoadError::MissingColumn {
                path: metadata.clone(),
                column: name.to_owned(),
            })
    };
    let file_col = column(&src.filename_column)?;
    let group_col = src.group_by.as_deref().map(column).transpose()?;
    let filters = src
        .filters
        .iter()
        .map(|(name, value)| Ok((column(name)?, value)))
        .collect::<Result<Vec<_>, LoadError>>()?;

    let mut files = Vec::new();
    let mut missing = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line());
        let cell = |i: usize| record.get(i).unwrap_or("");
        if !filters.iter().all(|(i, v)| v.accepts(cell(*i))) {
            continue;
        }
        let name = cell(file_col);
        if name.is_empty() || ends_with_any(name, &src.exclude_extensions) {
            continue;
        }
        let rel = relative(&[&dir_rel, &src.images_dir, name])?;
        let file = SelectedFile {
            abs: data_root.join(&rel),
            rel,
            group: group_col.map(|i| cell(i).trim().to_owned()),
        };
        confine.check(&file.abs)?;
        if file.abs.is_file() {
            files.push(file);
        } else {
            missing.push((file, line));
        }
    }
    Ok(CohenSelection {
        metadata,
        files,
        missing,
    })
}

/// The images of a class folder in sorted file-name order, cut to `limit`. The folder and
/// every selected file must pass `confine` (a file left out by `limit` is never opened, so
/// it is not checked either). With `group_pattern`, every selected file's name must match it.
pub(super) fn select_folder(
    src: &FolderSource,
    data_root: &Path,
    confine: &Confinement,
) -> Result<Vec<SelectedFile>, LoadError> {
    let pattern = src.pattern()?;
    let dir_rel = relative(&[&src.path])?;
    let dir = data_root.join(&dir_rel);
    confine.check(&dir)?;
    if !dir.is_dir() {
        return Err(LoadError::MissingDir { path: dir });
    }
    let io_err = |source| LoadError::ReadDir {
        path: dir.clone(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let is_file = entry.file_type().map_err(io_err)?.is_file()
            || entry.path().metadata().is_ok_and(|m| m.is_file());
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(LoadError::BadPath {
                path: entry.path().display().to_string(),
            });
        };
        if is_file && ends_with_any(name, &src.extensions) {
            names.push(name.to_owned());
        }
    }
    // Byte order of UTF-8 names = Python's sorted() on str for the ASCII names datasets use.
    names.sort_unstable();
    names.truncate(src.limit.unwrap_or(usize::MAX));
    names
        .into_iter()
        .map(|name| {
            let rel = relative(&[&dir_rel, &name])?;
            let abs = data_root.join(&rel);
            confine.check(&abs)?;
            let group = match &pattern {
                None => None,
                Some(re) => match re.captures(&name).and_then(|c| c.get(1)) {
                    Some(m) => Some(m.as_str().to_owned()),
                    None => {
                        return Err(LoadError::GroupPattern {
                            file: rel,
                            pattern: re.as_str().to_owned(),
                            folder: dir_rel.clone(),
                        })
                    }
                },
            };
            Ok(SelectedFile { abs, rel, group })
        })
        .collect()
}
