//! Turning one encoded image (JPEG or PNG) into the fixed-size 3-channel array the stages use,
//! refusing decompression bombs (by the size their header claims, before decoding) and files
//! cut short.

use std::io::Cursor;
use std::path::Path;

use image::{ColorType, DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use ndarray::Array3;

pub use super::image_error::{DecodeError, MAX_DECODED_BYTES, MAX_IMAGE_PIXELS};
use super::image_file::read_image_file;
use super::memory_budget::Bytes;
use super::resize::resize_u8;
use super::truncation::jpeg_truncation;

/// How strictly images are read. The default is strict: a file cut short is an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Decode JPEGs cut short anyway, the missing part filled with gray by the decoder (as
    /// Pillow's `ImageFile.LOAD_TRUNCATED_IMAGES = True`). PNGs cut short remain errors: the
    /// PNG decoder cannot return part of an image.
    pub allow_truncated: bool,
}

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

/// Decodes `bytes` (format sniffed from the content, not the file name), applies the EXIF
/// orientation, converts to 8-bit and resizes to `size x size` RGB.
///
/// Grayscale sources are resized as one channel and then replicated to three, which gives the
/// same bytes as converting first and costs a third of the work. Alpha is dropped before
/// resizing (Pillow's `convert("RGB")` also drops it without compositing); 16-bit samples are
/// scaled to 8 bits by the `image` crate (`round(v / 257)`). Palette PNGs are expanded.
/// `path` only names the source in errors.
///
/// Before anything is decoded, the size the header claims is checked against
/// [`MAX_IMAGE_PIXELS`] and [`MAX_DECODED_BYTES`], and a JPEG must be complete (see
/// [`super::truncation`]) unless `options` allow truncated files.
pub fn decode_resize(
    bytes: &[u8],
    size: u32,
    path: &Path,
    options: DecodeOptions,
) -> Result<Decoded, DecodeError> {
    let err = |source| DecodeError::Decode {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
    // A backstop for the decoders' own buffers; the checks below give the clear message.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(2 * MAX_DECODED_BYTES);
    reader.limits(limits);
    // First, so that a file cut inside its header is reported as cut, not as a header the
    // decoder could not parse.
    if reader.format() == Some(ImageFormat::Jpeg) && !options.allow_truncated {
        if let Some(detail) = jpeg_truncation(bytes) {
            return Err(DecodeError::Truncated {
                path: path.to_path_buf(),
                detail,
            });
        }
    }
    // Constructing a decoder reads the header only.
    let mut decoder = reader.into_decoder().map_err(err)?;
    check_claimed_size(path, decoder.dimensions(), decoder.total_bytes())?;
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

/// Refuses an image whose header claims more than [`MAX_IMAGE_PIXELS`] pixels or more than
/// [`MAX_DECODED_BYTES`] of decoded samples.
fn check_claimed_size(
    path: &Path,
    (width, height): (u32, u32),
    bytes: u64,
) -> Result<(), DecodeError> {
    if u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS {
        return Err(DecodeError::TooManyPixels {
            path: path.to_path_buf(),
            width,
            height,
        });
    }
    if bytes > MAX_DECODED_BYTES {
        return Err(DecodeError::TooManyBytes {
            path: path.to_path_buf(),
            width,
            height,
            bytes: Bytes(bytes),
        });
    }
    Ok(())
}

/// Loads one image file exactly as the load stage does, as a `size x size x 3` array, with
/// the default (strict) [`DecodeOptions`].
///
/// This is what `predict` uses on a single image, so its input matches training data.
pub fn load_image(path: &Path, size: u32) -> Result<Array3<u8>, DecodeError> {
    load_image_with(path, size, DecodeOptions::default())
}

/// [`load_image`] with the given options.
pub fn load_image_with(
    path: &Path,
    size: u32,
    options: DecodeOptions,
) -> Result<Array3<u8>, DecodeError> {
    let bytes = read_image_file(path)?;
    let decoded = decode_resize(&bytes, size, path, options)?;
    let s = size as usize;
    Array3::from_shape_vec((s, s, 3), decoded.pixels).map_err(|_| DecodeError::Size {
        path: path.to_path_buf(),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_size_limits_hold_at_their_boundaries() {
        let p = Path::new("x");
        // 13377^2 = 178,944,129 pixels: under Pillow's limit; one more column is over it.
        assert!(check_claimed_size(p, (13_377, 13_377), 0).is_ok());
        assert!(matches!(
            check_claimed_size(p, (13_378, 13_377), 0),
            Err(DecodeError::TooManyPixels {
                width: 13_378,
                height: 13_377,
                ..
            })
        ));
        // The largest dimensions a header can state do not overflow the product.
        assert!(check_claimed_size(p, (u32::MAX, u32::MAX), u64::MAX).is_err());
        assert!(check_claimed_size(p, (10_000, 10_000), MAX_DECODED_BYTES).is_ok());
        let err = check_claimed_size(p, (10_000, 10_000), MAX_DECODED_BYTES + 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image x claims 10000 x 10000 pixels that would take 1.0 GB decoded, over the limit of 1.0 GB: refused before decoding, as a possible decompression bomb"
        );
    }
}
