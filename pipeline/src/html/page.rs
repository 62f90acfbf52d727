//! The frame of every page: the document head (charset, viewport, title, the inline style
//! sheet) up to the opening `<main>`, and the end of the document after it. Pages are
//! self-contained: no external style, script or font is ever linked.

use std::fmt::{self, Write};

use super::escape::Esc;
use super::style::CSS;

/// Writes the document up to and including `<main>`: `title` (escaped here) in the head, and
/// the style sheet [`CSS`] followed by the page's own rules `extra_css` (empty for none).
pub fn open(out: &mut String, title: &str, extra_css: &str) -> fmt::Result {
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}{extra_css}</style>\n</head>\n<body>\n<main>\n",
        Esc(title)
    )
}

/// Writes the end of the document after `</main>`'s content: the page's inline `script`, if
/// it has one, goes after `</main>` so that the page reads complete without it.
pub fn close(out: &mut String, script: Option<&str>) -> fmt::Result {
    out.push_str("</main>\n");
    if let Some(script) = script {
        writeln!(out, "<script>{script}</script>")?;
    }
    out.push_str("</body>\n</html>\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_framed_with_its_escaped_title_style_and_script() {
        let mut out = String::new();
        open(&mut out, "a <b> · run 1", "\np { x: 1; }\n").unwrap();
        out.push_str("<p>body</p>\n");
        close(&mut out, Some("let x = 1;")).unwrap();
        assert!(out.starts_with(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        ));
        assert!(out.contains("<title>a &lt;b&gt; · run 1</title>\n<style>"));
        assert!(out.contains(&format!(
            "<style>{CSS}\np {{ x: 1; }}\n</style>\n</head>\n<body>\n<main>\n<p>body</p>\n"
        )));
        assert!(out.ends_with("</main>\n<script>let x = 1;</script>\n</body>\n</html>\n"));
        let mut plain = String::new();
        close(&mut plain, None).unwrap();
        assert_eq!(plain, "</main>\n</body>\n</html>\n");
    }
}
