//! The figures of the plot and evaluate stages, each written as a PNG and an SVG of the same
//! layout:
//!
//! | function | files | size (px) | stage |
//! |---|---|---|---|
//! | [`plot_history`] | `accuracy.png/.svg`, `loss.png/.svg` | [`HISTORY_SIZE`] | plot |
//! | [`plot_confusion_of`] | `confusion.png/.svg` | [`CONFUSION_SIZE`] | evaluate |
//! | [`plot_roc_of`] | `roc.png/.svg` | [`ROC_SIZE`] | evaluate |
//! | [`plot_class_confusion`] | `confusion.png/.svg` (3+ classes) | [`CLASS_CONFUSION_SIZE`] | evaluate |
//! | [`plot_class_roc`] | `roc.png/.svg` (3+ classes) | [`CLASS_ROC_SIZE`] | evaluate |
//! | [`plot_predictions`] | `predictions.png/.svg` | [`prediction_grid_size`] | plot |
//!
//! Text uses a font compiled into the binary (see `font.rs`), so figures look the same on a
//! machine without any fonts installed; PNG text is rasterised by `raster_text.rs`, which
//! fixes plotters' glyph spacing. The SVGs name the family `sans-serif` and leave the glyphs
//! to the viewer. `cargo test -p stages gallery -- --ignored` renders every figure from
//! realistic synthetic data into `target/figure-gallery` for a person to look at.

mod classes;
mod colors;
mod confusion;
mod curves;
mod evaluated_set;
mod font;
mod grid;
mod raster_text;
mod roc;

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

pub use classes::{plot_class_confusion, plot_class_roc, CLASS_CONFUSION_SIZE, CLASS_ROC_SIZE};
pub use confusion::{plot_confusion, plot_confusion_of, CONFUSION_SIZE};
pub use curves::{plot_history, HISTORY_SIZE};
pub use evaluated_set::EvaluatedSet;
pub use grid::{
    plot_predictions, prediction_grid_size, select_for_grid, PredictionSample, MAX_GRID_IMAGES,
};
pub use roc::{plot_roc, plot_roc_of, ROC_SIZE};

/// Why a figure could not be drawn; every variant names the file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FigureError {
    /// The output directory could not be created.
    #[error("cannot create figure directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// plotters failed while drawing or writing the file.
    #[error("cannot draw {path}: {message}")]
    Draw { path: PathBuf, message: String },
    /// The data cannot be drawn (nothing to plot, a malformed image).
    #[error("cannot draw {path}: {reason}")]
    Input { path: PathBuf, reason: String },
    /// The embedded font was rejected by the renderer.
    #[error("the embedded DejaVu Sans font could not be registered with plotters")]
    Font,
}

/// The result of drawing on some plotters backend.
type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A figure that can be drawn on any backend, so PNG and SVG share one layout.
trait Figure {
    /// Width and height in pixels (SVG user units).
    fn size(&self) -> (u32, u32);
    /// Draws everything onto `root`, which covers the whole figure.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Encodes RGB `pixels` as a PNG at `path` with the best compression and adaptive row
/// filters: the same pixels as plotters' own encoder writes, in about half the bytes (the
/// quickstart's predictions grid 653 kB -> about 310 kB), which every report embeds again.
fn write_png(path: &Path, pixels: &[u8], (width, height): (u32, u32)) -> Result<(), String> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut out = std::io::BufWriter::new(file);
    PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive)
        .write_image(pixels, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    std::io::Write::flush(&mut out).map_err(|e| e.to_string())
}

/// Writes `figure` to `out_dir/stem.png` and `out_dir/stem.svg` and returns both paths.
fn render(figure: &impl Figure, out_dir: &Path, stem: &str) -> Result<Vec<PathBuf>, FigureError> {
    font::ensure_registered()?;
    std::fs::create_dir_all(out_dir).map_err(|source| FigureError::CreateDir {
        path: out_dir.to_owned(),
        source,
    })?;
    let png = out_dir.join(format!("{stem}.png"));
    let svg = out_dir.join(format!("{stem}.svg"));
    let failed = |path: &Path, e: &dyn std::fmt::Display| FigureError::Draw {
        path: path.to_owned(),
        message: e.to_string(),
    };
    {
        let (width, height) = figure.size();
        let mut pixels = vec![0u8; width as usize * height as usize * 3];
        {
            // PNG text goes through GlyphBackend (see raster_text.rs), not plotters' renderer.
            let backend =
                raster_text::GlyphBackend(BitMapBackend::with_buffer(&mut pixels, figure.size()));
            let root = backend.into_drawing_area();
            figure
                .draw(&root)
                .and_then(|()| root.present())
                .map_err(|e| failed(&png, &e))?;
        }
        write_png(&png, &pixels, (width, height)).map_err(|e| failed(&png, &e))?;
    }
    {
        let root = SVGBackend::new(&svg, figure.size()).into_drawing_area();
        figure
            .draw(&root)
            .and_then(|()| root.present())
            .map_err(|e| failed(&svg, &e))?;
    }
    Ok(vec![png, svg])
}

/// A text style in the embedded font.
fn text(size: f64) -> TextStyle<'static> {
    // plotters binds the font when the style is made, so register first. A failure shows
    // up as FigureError::Font from `render`, which registers before drawing anything.
    let _ = font::ensure_registered();
    (font::FAMILY, size).into_font().color(&colors::INK)
}

/// A bold text style in the embedded font, for titles.
fn bold(size: f64) -> TextStyle<'static> {
    let _ = font::ensure_registered();
    // Not `.style(Bold)` on a regular FontDesc: plotters keeps the regular glyphs there.
    FontDesc::new(font::FAMILY.into(), size, FontStyle::Bold).color(&colors::INK)
}

/// Formats a fraction as a percentage with one decimal ("58.2 %").
fn percent(fraction: f64) -> String {
    format!("{:.1} %", 100.0 * fraction)
}

#[cfg(test)]
mod gallery;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ConfusionMatrix;

    #[test]
    fn errors_name_the_file_that_failed() {
        let dir = tempfile::tempdir().unwrap();
        let matrix = ConfusionMatrix::from_rows([[1, 0], [0, 1]]);
        // The output "directory" is a file.
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let error = plot_confusion(&matrix, &file).unwrap_err();
        assert!(matches!(error, FigureError::CreateDir { .. }), "{error:?}");
        assert!(error.to_string().contains("not-a-dir"), "{error}");
        // The PNG's path is taken by a directory.
        std::fs::create_dir(dir.path().join("confusion.png")).unwrap();
        let error = plot_confusion(&matrix, dir.path()).unwrap_err();
        assert!(matches!(error, FigureError::Draw { .. }), "{error:?}");
        assert!(error.to_string().contains("confusion.png"), "{error}");
    }

    #[test]
    fn percent_has_one_decimal() {
        assert_eq!(percent(32.0 / 55.0), "58.2 %");
        assert_eq!(percent(1.0 / 55.0), "1.8 %");
        assert_eq!(percent(0.0), "0.0 %");
    }
}
#[cfg(test)]
pub(crate) mod test_support;
