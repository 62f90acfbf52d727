//! Finding a stray double quote in a metadata CSV, from the file's raw bytes.
//!
//! A quote opening a field that was never meant to be quoted makes every CSV reader (ours,
//! Python's, pandas') read on, across line breaks, to the next quote in the file: the rows in
//! between become part of one field and silently disappear, and a quote at the end of the file
//! that never closes ends the last row without a word. So before the CSV is parsed, its bytes
//! must follow RFC 4180 for quotes: a quoted field closes (`""` inside it is an escaped quote),
//! and its closing quote is followed by a comma or the end of the line.
//!
//! A quoted field may not span lines either. RFC 4180 allows that, but the metadata files this
//! loader reads have one row per line: the Cohen collection's free-text columns
//! (`clinical_notes`, `other_notes`) hold no line break in either real `metadata.csv` (the
//! seed commit's 175 rows, the external set's 79), and a multi-line field cannot be told apart
//! from a stray quote that swallowed a few short rows.

/// The first quote in a file that cannot be read cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StrayQuote {
    /// The line the quoted field opens on (1-based, as in an editor).
    pub line: u64,
    /// What is wrong with it, for the error line.
    pub why: String,
}

/// Checks every quoted field of the CSV `bytes`; the first bad one is the error.
pub(super) fn check_quotes(bytes: &[u8]) -> Result<(), StrayQuote> {
    let mut line = 1;
    let mut at_field_start = true;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' if at_field_start => {
                i = check_quoted_field(bytes, i, line)?;
                at_field_start = false;
            }
            b',' => {
                at_field_start = true;
                i += 1;
            }
            b'\n' | b'\r' => {
                i += line_break_len(bytes, i);
                line += 1;
                at_field_start = true;
            }
            _ => {
                at_field_start = false;
                i += 1;
            }
        }
    }
    Ok(())
}

/// Checks the quoted field whose opening quote is at `open` on `line`; returns the index just
/// after its closing quote.
fn check_quoted_field(bytes: &[u8], open: usize, line: u64) -> Result<usize, StrayQuote> {
    let stray = |why: String| StrayQuote { line, why };
    let mut i = open + 1;
    let mut breaks = 0;
    loop {
        match bytes.get(i) {
            None => {
                // The rows after the opening one, up to the end of the file.
                let swallowed = breaks - u64::from(ends_with_line_break(bytes));
                let why = if swallowed == 0 {
                    "a quoted field opened here is never closed (the file ends inside it)".into()
                } else {
                    format!(
                        "a quoted field opened here is never closed (it would swallow {})",
                        rows(swallowed)
                    )
                };
                return Err(stray(why));
            }
            Some(b'"') if bytes.get(i + 1) == Some(&b'"') => i += 2,
            Some(b'"') => break,
            Some(b'\n' | b'\r') => {
                i += line_break_len(bytes, i);
                breaks += 1;
            }
            Some(_) => i += 1,
        }
    }
    if breaks > 0 {
        return Err(stray(format!(
            "a quoted field opened here closes only on line {} (it would swallow {} into one field; a row must be one line)",
            line + breaks,
            rows(breaks)
        )));
    }
    let after = i + 1;
    match bytes.get(after) {
        None | Some(b',' | b'\n' | b'\r') => Ok(after),
        Some(_) => {
            let rest = &bytes[after..];
            let end = rest
                .iter()
                .position(|b| matches!(b, b',' | b'\n' | b'\r'))
                .unwrap_or(rest.len());
            Err(stray(format!(
                "a quoted field is followed by {:?} after its closing quote, where a comma or the end of the line must be (quote the whole field, doubling any quote inside it)",
                String::from_utf8_lossy(&rest[..end])
            )))
        }
    }
}

/// The length of the line break at `i`: 2 for `\r\n`, else 1 (`\n`, or a lone `\r`, which the
/// csv reader also ends a record on).
fn line_break_len(bytes: &[u8], i: usize) -> usize {
    if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
        2
    } else {
        1
    }
}

fn ends_with_line_break(bytes: &[u8]) -> bool {
    matches!(bytes.last(), Some(b'\n' | b'\r'))
}

fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> Option<StrayQuote> {
        check_quotes(text.as_bytes()).err()
    }

    #[test]
    fn plain_rows_quoted_commas_and_doubled_quotes_pass() {
        assert_eq!(problem("a,b,c,d\n1,2,3,4\n5,6,7,\"x, y\"\n"), None);
        assert_eq!(
            problem("a,b\r\n\"say \"\"hi\"\"\",2\r\n\"\",\"\"\r\n"),
            None
        );
        assert_eq!(problem("a,b\n1,\"last, no newline\""), None);
        assert_eq!(problem(""), None);
        // A quote inside an unquoted field is text to every CSV reader: not this rule's business.
        assert_eq!(problem("a,b\n1,10\" film\n"), None);
    }

    #[test]
    fn an_unclosed_quote_mid_file_names_its_line_and_the_rows_it_would_swallow() {
        let text = "a,b,c,d\n1,2,3,4\n5,6,7,\"open\n9,10,11,12\n13,14,15,16\n";
        let p = problem(text).unwrap();
        assert_eq!(p.line, 3);
        assert_eq!(
            p.why,
            "a quoted field opened here is never closed (it would swallow 2 rows)"
        );
        // The same without the final newline swallows the same rows.
        assert_eq!(problem(text.trim_end()).unwrap(), p);
    }

    #[test]
    fn an_unclosed_quote_on_the_last_row_without_a_newline_is_found() {
        let p = problem("a,b\n1,2\n3,\"open").unwrap();
        assert_eq!(p.line, 3);
        assert!(
            p.why.contains("never closed (the file ends inside it)"),
            "{p:?}"
        );
    }

    #[test]
    fn a_quote_closing_on_a_later_line_is_refused() {
        let p = problem("a,b,c,d\r\n1,2,\"open,x\r\n5,6\",7,8\r\n9,10,11,12\r\n").unwrap();
        assert_eq!(p.line, 2);
        assert!(
            p.why.contains("closes only on line 3") && p.why.contains("swallow 1 row "),
            "{p:?}"
        );
    }

    #[test]
    fn text_after_a_closing_quote_is_refused() {
        let p = problem("a,filename,c\n1,x.png,\n2,\"covid-3\".png,\n").unwrap();
        assert_eq!(p.line, 3);
        assert!(p.why.contains("followed by \".png\""), "{p:?}");
        let p = problem("a,b\n\"x\" ,2").unwrap();
        assert!(p.why.contains("followed by \" \""), "{p:?}");
    }

    #[test]
    fn crlf_counts_as_one_line_break() {
        let p = problem("a\r\nb\r\n\"c\r\n").unwrap();
        assert_eq!(p.line, 3);
        assert!(p.why.contains("(the file ends inside it)"), "{p:?}");
    }
}
