//! The embedded font every figure's text is drawn with.
//!
//! plotters is built without its `ttf` feature, which would look fonts up through
//! fontconfig/freetype and find none on a bare machine (CI, a container). Instead DejaVu
//! Sans, shipped inside the `dejavu` crate (font license: Bitstream Vera with DejaVu's
//! public-domain changes), is registered with plotters' `ab_glyph` renderer under the
//! family name every figure uses.

use std::sync::OnceLock;

use plotters::style::{register_font, FontStyle};

use super::FigureError;

/// The family name figures ask for; the only one registered.
pub(crate) const FAMILY: &str = "sans-serif";

/// Registers the embedded font once per process; later calls return the first outcome.
pub(crate) fn ensure_registered() -> Result<(), FigureError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        register_font(FAMILY, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && register_font(FAMILY, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(FigureError::Font)
    }
}
