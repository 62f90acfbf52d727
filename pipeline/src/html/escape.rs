//! Text made safe for HTML: [`Esc`] for element content and quoted attribute values, [`Href`]
//! for a file name as a relative link. Every page writes user text (run names, parameters,
//! errors) only through these.

use std::fmt::{self, Write as _};

/// Text escaped for HTML element content and quoted attribute values.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// A file name as a relative URL: every byte but the unreserved ones percent-encoded, so that
/// `#`, `?`, `:` or spaces in a name still lead to the file (and nothing needs HTML escaping).
pub struct Href<'a>(pub &'a str);

impl fmt::Display for Href<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A leading `./` keeps a name like `c:x` from reading as a URL scheme.
        f.write_str("./")?;
        for &b in self.0.as_bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                f.write_char(char::from(b))?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            Esc(r#"a<b>&"c"'d'"#).to_string(),
            "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;"
        );
        assert_eq!(Esc("plain é text").to_string(), "plain é text");
    }

    #[test]
    fn hrefs_are_relative_and_percent_encoded() {
        assert_eq!(Href("roc.png").to_string(), "./roc.png");
        assert_eq!(
            Href("a b#1?.csv").to_string(),
            "./a%20b%231%3F.csv",
            "space, fragment and query characters must not cut the name"
        );
        assert_eq!(Href("c:x\"<").to_string(), "./c%3Ax%22%3C");
    }
}
