//! The split stage: a seeded, portable train/test partition of row indices.
//!
//! Like scikit-learn's `train_test_split(shuffle=True)`, the test side gets
//! `ceil(n * test_fraction)` rows and both sides keep the order of one random permutation.
//! The permutation comes from our own Fisher-Yates over a ChaCha8 stream with our own unbiased
//! bounded sampling, so it depends only on the seed and `n`: not on threads, platforms, or a
//! crate's shuffle internals. (It is not numpy's permutation: the indices differ from the seed
//! notebook's, the proportions do not.)
//!
//! With `group_by`, rows that share a group (a patient) stay on one side ([`grouped`]), each
//! class's test share kept near `test_fraction`; the groups come from a column of the load
//! stage's `index.csv` ([`index`]), and [`shares`] says how near each class came.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::Array1;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

mod grouped;
pub mod index;
pub mod shares;

pub use grouped::{split_grouped, GroupCounts};
pub use index::{read_index, IndexColumns};
pub use shares::{class_shares, ClassShare, SHARE_TOLERANCE};

/// Parameters of the split stage.
///
/// ```toml
/// test_fraction = 0.2   # default 0.2
/// seed = 40             # default 40
/// stratify = false      # default false
/// group_by = "patientid" # optional: a column of load's index.csv (connect `index`)
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Keep each class's proportion on both sides.
    #[serde(default)]
    pub stratify: bool,
    /// Keep the rows that share this `index.csv` column's value on one side, each class's
    /// test share near `test_fraction` ([`split_grouped`]); `stratify` is then implied.
    #[serde(default)]
    pub group_by: Option<String>,
}

fn default_test_fraction() -> f64 {
    0.2
}
fn default_seed() -> u64 {
    40
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            test_fraction: default_test_fraction(),
            seed: default_seed(),
            stratify: false,
            group_by: None,
        }
    }
}

/// Why a split could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("test_fraction must be strictly between 0 and 1, got {0}")]
    Fraction(f64),
    #[error("test_fraction {fraction} of {n} rows leaves {train} for training and {test} for test; both need at least one")]
    TooFew {
        n: usize,
        fraction: f64,
        train: usize,
        test: usize,
    },
    #[error("cannot read labels {path}: {source}")]
    ReadLabels {
        path: PathBuf,
        source: ndarray_npy::ReadNpyError,
    },
    #[error("labels {path} have shape {shape:?}, expected N or N x 1")]
    LabelShape { path: PathBuf, shape: Vec<usize> },
    #[error("cannot write {path}: {source}")]
    WriteNpy {
        path: PathBuf,
        source: ndarray_npy::WriteNpyError,
    },
    #[error("cannot write {path}: {source}")]
    WriteCsv { path: PathBuf, source: csv::Error },
    #[error("split refers to row {row} but only {labels} labels were given")]
    Mismatch { row: usize, labels: usize },
    #[error("{groups} groups given for {labels} labels")]
    GroupCount { groups: usize, labels: usize },
    #[error("the split grouped by {group_by} leaves class {class:?} with no {side} image: its {rows} images have {groups} {group_by} value(s) and a group is never divided; give the class more groups or change test_fraction")]
    EmptySide {
        class: String,
        side: &'static str,
        rows: u64,
        groups: usize,
        group_by: String,
    },
    #[error(transparent)]
    Index(#[from] index::IndexError),
}

/// A partition of row indices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Split {
    /// Training rows, in permutation order.
    pub train: Vec<usize>,
    /// Test rows, in permutation order.
    pub test: Vec<usize>,
    /// Rows per label on each side, for the run record.
    pub counts: SplitCounts,
    /// Groups on each side, when the split is grouped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<GroupCounts>,
}

/// Rows per label (`label -> count`) on each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitCounts {
    pub train: BTreeMap<u8, usize>,
    pub test: BTreeMap<u8, usize>,
}

/// Uniform in `0..=max` without modulo bias (rejection on the top of the u64 range).
fn below_or_eq(rng: &mut ChaCha8Rng, max: u64) -> u64 {
    let span = max.wrapping_add(1);
    if span == 0 {
        return rng.next_u64();
    }
    let zone = u64::MAX - (u64::MAX % span + 1) % span;
    loop {
        let v = rng.next_u64();
        if v <= zone {
            return v % span;
        }
    }
}

pub(crate) fn shuffle(items: &mut [usize], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = below_or_eq(rng, i as u64) as usize;
        items.swap(i, j);
    }
}

impl SplitConfig {
    /// Checks the parameters, naming the one at fault: the experiment's check calls this,
    /// and [`split`] applies the same rule.
    pub fn validate(&self) -> Result<(), crate::validate::ConfigError> {
        let f = self.test_fraction;
        if !(f > 0.0 && f < 1.0) {
            return Err(crate::validate::ConfigError::new(
                "test_fraction",
                format!("must be strictly between 0 and 1, not {f}"),
            ));
        }
        if self
            .group_by
            .as_deref()
            .is_some_and(|g| g.trim().is_empty())
        {
            return Err(crate::validate::ConfigError::new(
                "group_by",
                "must name a column of the load stage's index.csv, not an empty string",
            ));
        }
        Ok(())
    }
}

/// Splits rows `0..labels.len()` into train and test, ignoring `group_by` (see
/// [`split_grouped`]).
pub fn split(labels: &[u8], cfg: &SplitConfig) -> Result<Split, SplitError> {
    let f = cfg.test_fraction;
    if cfg.validate().is_err() {
        return Err(SplitError::Fraction(f));
    }
    let n = labels.len();
    let n_test = (n as f64 * f).ceil() as usize;
    let n_train = n.saturating_sub(n_test);
    if n_test == 0 || n_train == 0 {
        return Err(SplitError::TooFew {
            n,
            fraction: f,
            train: n_train,
            test: n_test,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let (train, test) = if cfg.stratify {
        stratified(labels, n_test, &mut rng)
    } else {
        let mut perm: Vec<usize> = (0..n).collect();
        shuffle(&mut perm, &mut rng);
        let train = perm.split_off(n_test);
        (train, perm)
    };
    let count = |rows: &[usize]| {
        let mut m = BTreeMap::new();
        for &r in rows {
            *m.entry(labels[r]).or_insert(0) += 1;
        }
        m
    };
    let counts = SplitCounts {
        train: count(&train),
        test: count(&test),
    };
    Ok(Split {
        train,
        test,
        counts,
        groups: None,
    })
}

/// Each class gives `n_c * n_test / n` test rows, rounded by largest remainder (ties to the
/// lower label) so the total is exactly `n_test`; both sides are then shuffled.
fn stratified(labels: &[u8], n_test: usize, rng: &mut ChaCha8Rng) -> (Vec<usize>, Vec<usize>) {
    let n = labels.len();
    let mut by_class: BTreeMap<u8, Vec<usize>> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i);
    }
    let mut quota: Vec<(u8, usize, usize)> = by_class
        .iter()
        .map(|(&l, rows)| (l, rows.len() * n_test / n, (rows.len() * n_test) % n))
        .collect();
    let given: usize = quota.iter().map(|q| q.1).sum();
    let mut order: Vec<usize> = (0..quota.len()).collect();
    order.sort_by(|&a, &b| quota[b].2.cmp(&quota[a].2).then(a.cmp(&b)));
    for &i in order.iter().take(n_test - given) {
        quota[i].1 += 1;
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (label, k, _) in quota {
        let mut rows = by_class.remove(&label).unwrap_or_default();
        shuffle(&mut rows, rng);
        train.extend_from_slice(&rows[k..]);
        test.extend_from_slice(&rows[..k]);
    }
    shuffle(&mut test, rng);
    shuffle(&mut train, rng);
    (train, test)
}

/// Reads `labels.npy` (uint8, N or N x 1) as written by the load stage.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, SplitError> {
    let a: ndarray::ArrayD<u8> =
        ndarray_npy::read_npy(path).map_err(|source| SplitError::ReadLabels {
            path: path.to_path_buf(),
            source,
        })?;
    match a.shape() {
        [_] | [_, 1] => Ok(a.iter().copied().collect()),
        shape => Err(SplitError::LabelShape {
            path: path.to_path_buf(),
            shape: shape.to_vec(),
        }),
    }
}

/// Writes `train_index.npy` and `test_index.npy` (u64, 1-D, permutation order) and
/// `split.csv` (`row,side,label`, one line per row in row order) into `out_dir`. With
/// `groups` (a grouped split), `split.csv` gains a last column `group`: each row's group, empty
/// for a row that is a group of its own.
pub fn write_split(
    split: &Split,
    labels: &[u8],
    groups: Option<&[String]>,
    out_dir: &Path,
) -> Result<(), SplitError> {
    if let Some(groups) = groups.filter(|g| g.len() != labels.len()) {
        return Err(SplitError::GroupCount {
            groups: groups.len(),
            labels: labels.len(),
        });
    }
    for (name, rows) in [
        ("train_index.npy", &split.train),
        ("test_index.npy", &split.test),
    ] {
        let path = out_dir.join(name);
        let a: Array1<u64> = rows.iter().map(|&r| r as u64).collect();
        ndarray_npy::write_npy(&path, &a)
            .map_err(|source| SplitError::WriteNpy { path, source })?;
    }
    let path = out_dir.join("split.csv");
    let err = |source| SplitError::WriteCsv {
        path: path.clone(),
        source,
    };
    let mut side = vec![""; labels.len()];
    for (rows, name) in [(&split.train, "train"), (&split.test, "test")] {
        for &row in rows {
            *side.get_mut(row).ok_or(SplitError::Mismatch {
                row,
                labels: labels.len(),
            })? = name;
        }
    }
    let mut w = csv::Writer::from_path(&path).map_err(err)?;
    let mut header = vec!["row", "side", "label"];
    if groups.is_some() {
        header.push("group");
    }
    w.write_record(&header).map_err(err)?;
    for (row, (s, l)) in side.iter().zip(labels).enumerate() {
        let mut record = vec![row.to_string(), (*s).to_owned(), l.to_string()];
        if let Some(groups) = groups {
            record.push(groups[row].clone());
        }
        w.write_record(&record).map_err(err)?;
    }
    w.flush().map_err(|e| err(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n_pos: usize, n_neg: usize) -> Vec<u8> {
        let mut v = vec![1u8; n_pos];
        v.extend(std::iter::repeat_n(0u8, n_neg));
        v
    }

    #[test]
    fn seed_sizes_match_scikit_learn() {
        let l = labels(175, 100);
        let s = split(&l, &SplitConfig::default()).unwrap();
        // ceil(275 * 0.2) = 55, the seed's 55 test images.
        assert_eq!(s.test.len(), 55);
        assert_eq!(s.train.len(), 220);
        let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..275).collect::<Vec<_>>());
        assert_eq!(s.counts.train.values().sum::<usize>(), 220);
        assert_eq!(s.counts.test[&0] + s.counts.test[&1], 55);
        // ceil, not round: 10 * 0.25 = 2.5 -> 3.
        let s = split(
            &labels(5, 5),
            &SplitConfig {
                test_fraction: 0.25,
                ..Default::default()
            },
        );
        assert_eq!(s.unwrap().test.len(), 3);
    }

    #[test]
    fn same_seed_same_split_independent_of_threads() {
        let l = labels(175, 100);
        let cfg = SplitConfig::default();
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| split(&l, &cfg).unwrap())
        };
        let a = run(1);
        assert_eq!(a, run(2));
        assert_eq!(a, split(&l, &cfg).unwrap());
        let other = split(
            &l,
            &SplitConfig {
                seed: 41,
                ..cfg.clone()
            },
        )
        .unwrap();
        assert_ne!(a.test, other.test);
        // Pinned so that an accidental change of the algorithm is caught.
        assert_eq!(&a.test[..5], &PINNED_FIRST_TEST);
    }

    const PINNED_FIRST_TEST: [usize; 5] = [130, 2, 25, 121, 114];

    #[test]
    fn stratified_keeps_proportions() {
        let l = labels(175, 100);
        let cfg = SplitConfig {
            stratify: true,
            ..Default::default()
        };
        let s = split(&l, &cfg).unwrap();
        assert_eq!(s.test.len(), 55);
        // 175 * 55 / 275 = 35 exactly, 100 * 55 / 275 = 20 exactly.
        assert_eq!(s.counts.test[&1], 35);
        assert_eq!(s.counts.test[&0], 20);
        assert_eq!(s.counts.train[&1], 140);
        assert_eq!(s.counts.train[&0], 80);
        assert_eq!(s, split(&l, &cfg).unwrap());
    }

    #[test]
    fn config_from_toml() {
        let cfg: SplitConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, SplitConfig::default());
        assert_eq!(
            (cfg.test_fraction, cfg.seed, cfg.stratify),
            (0.2, 40, false)
        );
        let cfg: SplitConfig = toml::from_str("test_fraction = 0.3\nstratify = true").unwrap();
        assert_eq!((cfg.test_fraction, cfg.stratify), (0.3, true));
        let err = toml::from_str::<SplitConfig>("test_size = 0.2").unwrap_err();
        assert!(err.to_string().contains("test_size"), "{err}");
    }

    #[test]
    fn bad_fractions_are_errors() {
        let l = labels(3, 3);
        for f in [0.0, 1.0, -0.1, f64::NAN] {
            let cfg = SplitConfig {
                test_fraction: f,
                ..Default::default()
            };
            assert!(
                matches!(split(&l, &cfg), Err(SplitError::Fraction(_))),
                "{f}"
            );
        }
        let cfg = SplitConfig {
            test_fraction: 0.99,
            ..Default::default()
        };
        assert!(matches!(split(&l, &cfg), Err(SplitError::TooFew { .. })));
    }

    #[test]
    fn write_split_files() {
        let dir = tempfile::tempdir().unwrap();
        let l = labels(6, 4);
        let s = split(&l, &SplitConfig::default()).unwrap();
        write_split(&s, &l, None, dir.path()).unwrap();
        let test: Array1<u64> = ndarray_npy::read_npy(dir.path().join("test_index.npy")).unwrap();
        assert_eq!(
            test.to_vec(),
            s.test.iter().map(|&r| r as u64).collect::<Vec<_>>()
        );
        let csv = std::fs::read_to_string(dir.path().join("split.csv")).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "row,side,label");
        assert_eq!(lines.len(), 11);
        let side = if s.test.contains(&0) { "test" } else { "train" };
        assert_eq!(lines[1], format!("0,{side},1"));
        assert_eq!(lines[10].rsplit(',').next(), Some("0"));
        let err = write_split(&s, &l[..5], None, dir.path()).unwrap_err();
        assert!(
            matches!(err, SplitError::Mismatch { labels: 5, .. }),
            "{err}"
        );
    }
}
