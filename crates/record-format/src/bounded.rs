//! Files read whole, bounded: the one read of a file that an attacker may have made huge, a
//! FIFO, a device or a link to either (an index, a manifest, a source image).

use std::io::{Error, ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// File `path` whole, refused unread above `limit` bytes. It is opened once without blocking
/// (a FIFO cannot hang the caller), checked on that handle (a FIFO, device or socket, directly
/// or through a symlink, is refused by its kind) and read through a bound (a file that grows
/// past the limit while read is refused too). Errors: the open's own (`NotFound` for a missing
/// file), or `InvalidData` saying why the file was refused; no byte of it is quoted.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let too_big = |size: u64| {
        Error::new(
            ErrorKind::InvalidData,
            format!("file of {size} bytes exceeds the limit of {limit}"),
        )
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    let kind = metadata.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "of another kind"
        };
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("not a regular file ({what})"),
        ));
    }
    if metadata.len() > limit {
        return Err(too_big(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_and_large_files_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_bounded(&file, 10).unwrap(), b"0123456789");
        let error = read_bounded(&file, 9).unwrap_err();
        assert_eq!(error.to_string(), "file of 10 bytes exceeds the limit of 9");
        assert!(!error.to_string().contains("0123"));
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let error = read_bounded(&zero, 1 << 20).unwrap_err().to_string();
        assert_eq!(error, "not a regular file (a character device)");
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let error = read_bounded(&fifo, 1 << 20).unwrap_err().to_string();
        assert_eq!(error, "not a regular file (a FIFO)");
        let missing = read_bounded(&dir.path().join("missing"), 1).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
    }
}
