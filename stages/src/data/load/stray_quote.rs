//! Finding a stray double quote in a metadata CSV.
//!
//! A quote opening a field that was never meant to be quoted makes every CSV reader (ours,
//! Python's, pandas') read on, across line breaks, to the next quote in the file: the rows in
//! between become part of one field and silently disappear. A quoted field may legitimately
//! hold line breaks, though (a clinical note over several lines), so the rule is about what
//! the field swallowed: a record whose fields span several lines is refused when it has another
//! number of fields than the header, or when one of the lines inside a field holds as many
//! commas as a whole row.

use csv::StringRecord;

/// Why a record looks like the work of a stray quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StrayQuote {
    /// The line the record starts on (1-based, as in an editor).
    pub line: u64,
    /// The line it ends on.
    pub last_line: u64,
    /// What gives it away.
    pub why: String,
}

/// Checks one record starting on `line`, read from a CSV whose header has `header_len` fields.
pub(super) fn check_record(
    record: &StringRecord,
    line: u64,
    header_len: usize,
) -> Result<(), StrayQuote> {
    let breaks: u64 = record.iter().map(line_breaks).sum();
    if breaks == 0 {
        return Ok(());
    }
    let stray = |why: String| StrayQuote {
        line,
        last_line: line + breaks,
        why,
    };
    if record.len() != header_len {
        return Err(stray(format!(
            "has {} fields where the header has {header_len}",
            record.len()
        )));
    }
    let row_commas = header_len.saturating_sub(1).max(1);
    let mut breaks_before = 0;
    for field in record {
        let normalized = field.replace("\r\n", "\n");
        for (i, piece) in normalized.split(['\n', '\r']).enumerate().skip(1) {
            let commas = piece.matches(',').count();
            if commas >= row_commas {
                return Err(stray(format!(
                    "its line {} holds {commas} commas, a whole row swallowed into one field",
                    line + breaks_before + i as u64
                )));
            }
        }
        breaks_before += line_breaks(field);
    }
    Ok(())
}

/// Line breaks in `text`, counting `\r\n` once.
fn line_breaks(text: &str) -> u64 {
    let lf = text.matches('\n').count();
    let lone_cr = text.matches('\r').count() - text.matches("\r\n").count();
    (lf + lone_cr) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<(StringRecord, u64)> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(text.as_bytes());
        reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                let line = r.position().unwrap().line();
                (r, line)
            })
            .collect()
    }

    fn first_problem(text: &str) -> Option<StrayQuote> {
        records(text)
            .iter()
            .find_map(|(r, line)| check_record(r, *line, 4).err())
    }

    #[test]
    fn single_line_records_and_legitimate_multiline_notes_pass() {
        assert_eq!(first_problem("a,b,c,d\n1,2,3,4\n5,6,7,\"x, y\"\n"), None);
        assert_eq!(
            first_problem("a,b,c,d\n1,2,3,\"two\nlines, one comma\"\n5,6,7,8\n"),
            None
        );
        assert_eq!(
            first_problem("a,b,c,d\r\n1,2,3,\"crlf\r\ninside\"\r\n5,6,7,8\r\n"),
            None
        );
        // Ragged rows without line breaks are the reader's `flexible` business, not this.
        assert_eq!(first_problem("a,b,c,d\n1,2\n"), None);
    }

    #[test]
    fn a_quote_swallowing_rows_to_the_end_is_found_on_its_line() {
        let text = "a,b,c,d\n1,2,3,4\n5,6,7,\"open\n9,10,11,12\n13,14,15,16\n";
        let p = first_problem(text).unwrap();
        assert_eq!((p.line, p.last_line), (3, 6));
        assert!(
            p.why.contains("line 4") && p.why.contains("3 commas"),
            "{p:?}"
        );
    }

    #[test]
    fn a_quote_closing_on_a_later_row_changes_the_field_count() {
        let text = "a,b,c,d\n1,2,\"open,x\n5,6\",7,8\n9,10,11,12\n";
        let p = first_problem(text).unwrap();
        assert_eq!((p.line, p.last_line), (2, 3));
        assert!(
            p.why.contains("5 fields") && p.why.contains("header has 4"),
            "{p:?}"
        );
        // The rows after it are read normally again.
        let recs = records(text);
        assert_eq!(recs.last().unwrap().1, 4);
    }

    #[test]
    fn line_breaks_count_crlf_once() {
        assert_eq!(line_breaks("a\r\nb\nc\rd"), 3);
        assert_eq!(line_breaks("plain"), 0);
    }
}
