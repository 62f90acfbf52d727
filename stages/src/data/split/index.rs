//! Reading what a grouped split needs from the load stage's `index.csv`: one column of group
//! values and the class name of every label.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why `index.csv` could not give the split its groups.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: csv::Error },
    #[error("{path} has no column {column:?} (the split's group_by); its columns are {columns}: name one of them, or give the load stage's sources group_by = {column:?}")]
    MissingColumn {
        path: PathBuf,
        column: String,
        columns: String,
    },
    #[error("{path} has {found} rows but labels.npy has {expected}: connect the index and the labels of the same load stage")]
    Rows {
        path: PathBuf,
        found: usize,
        expected: usize,
    },
    #[error("{path} line {line}: label {value:?} is not a class index")]
    Label {
        path: PathBuf,
        line: u64,
        value: String,
    },
}

/// What the split reads from `index.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexColumns {
    /// The group column's value of every row, in row order (empty: a group of its own).
    pub groups: Vec<String>,
    /// `label -> class name`, from the `label` and `class` columns.
    pub classes: BTreeMap<u8, String>,
}

/// Reads column `group_by` and the class names from `index.csv` at `path`, which must have
/// `rows` rows (one per label).
pub fn read_index(path: &Path, group_by: &str, rows: usize) -> Result<IndexColumns, IndexError> {
    let err = |source| IndexError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = csv::Reader::from_path(path).map_err(err)?;
    let headers = reader.headers().map_err(err)?.clone();
    let find = |name: &str| headers.iter().position(|h| h == name);
    let Some(group_col) = find(group_by) else {
        return Err(IndexError::MissingColumn {
            path: path.to_path_buf(),
            column: group_by.to_owned(),
            columns: headers.iter().collect::<Vec<_>>().join(", "),
        });
    };
    let names = find("label").zip(find("class"));
    let mut groups = Vec::with_capacity(rows);
    let mut classes = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(err)?;
        groups.push(record.get(group_col).unwrap_or("").to_owned());
        if let Some((label_col, class_col)) = names {
            let value = record.get(label_col).unwrap_or("");
            let label: u8 = value.parse().map_err(|_| IndexError::Label {
                path: path.to_path_buf(),
                line: record.position().map_or(0, |p| p.line()),
                value: value.to_owned(),
            })?;
            classes
                .entry(label)
                .or_insert_with(|| record.get(class_col).unwrap_or("").to_owned());
        }
    }
    if groups.len() != rows {
        return Err(IndexError::Rows {
            path: path.to_path_buf(),
            found: groups.len(),
            expected: rows,
        });
    }
    Ok(IndexColumns { groups, classes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_column_and_class_names_and_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.csv");
        std::fs::write(
            &path,
            "row,path,label,class,blake3,width,height,patientid\n\
             0,a.png,0,NORMAL,x,1,1,0117\n\
             1,b.png,2,COVID-19,x,1,1,\n\
             2,c.png,2,COVID-19,x,1,1,42\n",
        )
        .unwrap();
        let got = read_index(&path, "patientid", 3).unwrap();
        assert_eq!(got.groups, ["0117", "", "42"]);
        assert_eq!(
            got.classes,
            BTreeMap::from([(0, "NORMAL".to_owned()), (2, "COVID-19".to_owned())])
        );
        let err = read_index(&path, "patient", 3).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{} has no column \"patient\" (the split's group_by); its columns are row, path, \
                 label, class, blake3, width, height, patientid: name one of them, or give the \
                 load stage's sources group_by = \"patient\"",
                path.display()
            )
        );
        let err = read_index(&path, "patientid", 4).unwrap_err().to_string();
        assert!(err.contains("has 3 rows but labels.npy has 4"), "{err}");
    }
}
