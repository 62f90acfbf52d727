//! Why an image could not be read or decoded, and the limits those messages name: one
//! error for reading a file (`image_file`) and for decoding it (`decode`).

use std::path::PathBuf;

use super::memory_budget::Bytes;

/// The most pixels an image may claim: 178,956,970, where Pillow refuses with
/// `DecompressionBombError` (twice its `Image.MAX_IMAGE_PIXELS` of 89,478,485, above which
/// it only warns). The largest real X-ray here is about 3900 x 4000 = 16 million pixels.
pub const MAX_IMAGE_PIXELS: u64 = 2 * 89_478_485;

/// The most bytes one image may take once decoded, before conversion and resizing: 1 GB.
/// Pillow's pixel limit alone lets a 16-bit RGBA image take 1.4 GB; this keeps every image
/// the decoder accepts (8-bit RGB at the pixel limit is 537 MB) within a bound that a few
/// decoding threads can hold at once.
pub const MAX_DECODED_BYTES: u64 = 1000 * 1000 * 1000;

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
    #[error("cannot read image {path}: it is {kind}, not a regular file")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("image file {path} is {bytes}, over the limit of {limit}: refused without reading it")]
    FileTooLarge {
        path: PathBuf,
        bytes: Bytes,
        limit: Bytes,
    },
    #[error("image {path} claims {width} x {height} pixels, over the limit of {MAX_IMAGE_PIXELS} pixels: refused before decoding, as a possible decompression bomb")]
    TooManyPixels {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    #[error("image {path} claims {width} x {height} pixels that would take {bytes} decoded, over the limit of {limit}: refused before decoding, as a possible decompression bomb", limit = Bytes(MAX_DECODED_BYTES))]
    TooManyBytes {
        path: PathBuf,
        width: u32,
        height: u32,
        bytes: Bytes,
    },
    #[error("image {path} is truncated: {detail} (allow_truncated_images = true in the load stage accepts such files)")]
    Truncated { path: PathBuf, detail: String },
    #[error("image {path} has zero width or height")]
    Empty { path: PathBuf },
    #[error("cannot make a {size}x{size}x3 array for {path}")]
    Size { path: PathBuf, size: u32 },
}
