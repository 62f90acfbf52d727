//! Turning one encoded image (JPEG or PNG) into the fixed-size 3-channel array the stages use.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ColorType, DynamicImage, ImageDecoder, ImageReader};
use ndarray::Array3;

use super::resize::resize_u8;

/// One decoded, oriented and resized image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// `size x size x 3` RGB bytes, row-major.
    pub pixels: Vec<u8>,
    /// Width of the source after EXIF orientation, before resizing.
    pub width: u32,
    /// Height of the source after EXIF orientation, before resizing.
    pub height: u32,
    /// Whether a non-identity EXIF orientation was applied.
    pub reoriented: bool,
}

/// Why an image could not be turned into an array.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot read image file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot decode image {path}: {source}")]
    Decode {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("image {path} has zero width or height")]
    Empty { path: PathBuf },
    #[error("cannot make a {size}x{size}x3 array for {path}")]
    Size { path: PathBuf, size: u32 },
}

/// Decodes `bytes` (format sniffed from the content, not the file name), applies the EXIF
/// orientation, converts to 8-bit and resizes to `size x size` RGB.
///
/// Grayscale sources are resized as one channel and then replicated to three, which gives the
/// same bytes as converting first and costs a third of the work. Alpha is dropped before
/// resizing (Pillow's `convert("RGB")` also drops it without compositing); 16-bit samples are
/// scaled to 8 bits by the `image` crate (`round(v / 257)`). Palette PNGs are expanded.
/// `path` only names the source in errors.
pub fn decode_resize(bytes: &[u8], size: u32, path: &Path) -> Result<Decoded, DecodeError> {
    let err = |source| DecodeError::Decode {
        path: path.to_path_buf(),
        source,
    };
    let mut decoder = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::Read {
            path: path.to_path_buf(),
            source: e,
        })?
        .into_decoder()
        .map_err(err)?;
    let orientation = decoder.orientation().map_err(err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(err)?;
    let reoriented = orientation != image::metadata::Orientation::NoTransforms;
    img.apply_orientation(orientation);
    let (width, height) = (img.width(), img.height());
    if width == 0 || height == 0 {
        return Err(DecodeError::Empty {
            path: path.to_path_buf(),
        });
    }
    let (w, h, s) = (width as usize, height as usize, size as usize);
    let pixels = match img.color() {
        ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16 => {
            let gray = img.into_luma8();
            let small = resize_u8(gray.as_raw(), w, h, 1, s, s);
            small.into_iter().flat_map(|v| [v, v, v]).collect()
        }
        _ => resize_u8(img.into_rgb8().as_raw(), w, h, 3, s, s),
    };
    Ok(Decoded {
        pixels,
        width,
        height,
        reoriented,
    })
}

/// Loads one image file exactly as the load stage does, as a `size x size x 3` array.
///
/// This is what `predict` uses on a single image, so its input matches training data.
pub fn load_image(path: &Path, size: u32) -> Result<Array3<u8>, DecodeError> {
    let bytes = std::fs::read(path).map_err(|source| DecodeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let decoded = decode_resize(&bytes, size, path)?;
    let s = size as usize;
    Array3::from_shape_vec((s, s, 3), decoded.pixels).map_err(|_| DecodeError::Size {
        path: path.to_path_buf(),
        size,
    })
}
