//! Reading an image file's bytes, refusing what no image file is: a device (`/dev/zero`
//! reads forever), a FIFO (opening one waits for a writer), a folder, or a file too large to
//! be a chest X-ray.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::Path;

use super::image_error::DecodeError;
use super::memory_budget::Bytes;

/// The largest image file read: 256 MB. The real X-rays are at most a few MB; a PNG of
/// [`super::image_error::MAX_IMAGE_PIXELS`] 8-bit RGB pixels that compressed to more than half its
/// raw size would be noise, not a radiograph.
pub const MAX_FILE_BYTES: u64 = 256 * 1000 * 1000;

/// The whole content of the image file `path`, read only when it is a regular file of at most
/// [`MAX_FILE_BYTES`] (checked before opening, and again on the opened file, so that swapping
/// the file for something else in between changes nothing). Symbolic links are followed:
/// the caller decides which paths may be read.
pub fn read_image_file(path: &Path) -> Result<Vec<u8>, DecodeError> {
    let io_err = |source| DecodeError::Read {
        path: path.to_path_buf(),
        source,
    };
    check_metadata(path, &std::fs::metadata(path).map_err(io_err)?)?;
    let file = open_without_blocking(path).map_err(io_err)?;
    let metadata = file.metadata().map_err(io_err)?;
    check_metadata(path, &metadata)?;
    let mut bytes = Vec::new();
    // The length is known: one exact allocation, refused (not aborted) if memory is short.
    bytes
        .try_reserve_exact(metadata.len() as usize)
        .map_err(|e| io_err(std::io::Error::new(std::io::ErrorKind::OutOfMemory, e)))?;
    // Bounded even if the file grows while it is read.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DecodeError::FileTooLarge {
            path: path.to_path_buf(),
            bytes: Bytes(bytes.len() as u64),
            limit: Bytes(MAX_FILE_BYTES),
        });
    }
    Ok(bytes)
}

fn check_metadata(path: &Path, metadata: &Metadata) -> Result<(), DecodeError> {
    if !metadata.is_file() {
        return Err(DecodeError::NotAFile {
            path: path.to_path_buf(),
            kind: kind_of(metadata),
        });
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(DecodeError::FileTooLarge {
            path: path.to_path_buf(),
            bytes: Bytes(metadata.len()),
            limit: Bytes(MAX_FILE_BYTES),
        });
    }
    Ok(())
}

/// Opens for reading without waiting: were the path swapped for a FIFO after the metadata
/// check, a plain open would block until some process opened it for writing.
fn open_without_blocking(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// What a path that is not a regular file is, for the message.
fn kind_of(metadata: &Metadata) -> &'static str {
    let ty = metadata.file_type();
    if ty.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ty.is_char_device() {
            return "a character device";
        }
        if ty.is_block_device() {
            return "a block device";
        }
        if ty.is_fifo() {
            return "a FIFO";
        }
        if ty.is_socket() {
            return "a socket";
        }
    }
    "a special file"
}
