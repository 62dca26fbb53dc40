//! JPEG files prepared as a model's input, exactly as the training images were
//! ([`Preprocessing`]: decode, shorter side → size, centre crop; the `f32` conversion is
//! [`Preprocessing::extend_f32`]), in parallel with one preparer per worker, in file order.
//! Files and folders may be local or in object storage ([`crate::remote`]).

use std::path::{Path, PathBuf};

use shardfeed_image_prep::{DecodeOptions, Preparer, Preprocessing, RgbImage};
use shardfeed_input_pipeline::{BoxError, Parallelism, Pipeline};

use crate::folder::Location;
use crate::label::is_jpeg_name;
use crate::remote::Stores;
use crate::{Error, MAX_FILE_BYTES, Result};

/// A source image's bytes (local, or an object), refused unread above [`MAX_FILE_BYTES`]
/// ([`crate::remote::read_bounded`]); the reason in place of the bytes.
pub(crate) fn read_source(stores: &Stores, path: &Path) -> Result<Vec<u8>, String> {
    crate::remote::read_bounded_with(stores, path, MAX_FILE_BYTES)?
        .ok_or_else(|| "cannot read: it is gone".to_owned())
}

/// The JPEG files of `inputs`: folders' `*.jpg`/`*.jpeg` (sorted by name), files as given
/// (an object URL with a JPEG name is a file; any other, a folder).
pub fn list_images(inputs: &[Location]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let is_folder = match input.as_local() {
            Some(path) if path.is_dir() => true,
            Some(path) if path.exists() => false,
            Some(path) => {
                return Err(Error::Io {
                    action: "read",
                    path: path.to_owned(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                });
            }
            None => !is_jpeg_name(input.path()),
        };
        if is_folder {
            let mut found: Vec<PathBuf> = crate::folder::files_in(input)?
                .into_iter()
                .filter(|p| is_jpeg_name(p))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(input.path().to_owned());
        }
    }
    if files.is_empty() {
        let names: Vec<String> = inputs.iter().map(ToString::to_string).collect();
        return Err(Error::NoJpegs(PathBuf::from(names.join(", "))));
    }
    Ok(files)
}

/// One file and its prepared image, or why it is unusable.
pub type PreparedImage = (PathBuf, std::result::Result<RgbImage, String>);

/// The files as the model's input, in their order, batched by `batch` (the last batch may be
/// short); an unusable file is an `Err` with its reason in its place, not a failed batch.
pub fn prepared_images(
    files: Vec<PathBuf>,
    preprocessing: Preprocessing,
    batch: usize,
    jobs: Parallelism,
) -> Pipeline<PreparedImage> {
    let size = preprocessing.size;
    // One store per folder for the whole pass (object storage), shared by the workers.
    let stores = Stores::default();
    Pipeline::from_items(files)
        .map_init(
            move || Preparer::new(size, 95, DecodeOptions::default()),
            move |preparer: &mut Preparer, path: PathBuf| {
                let image = read_source(&stores, &path)
                    .and_then(|jpeg| preparer.resize_and_crop(&jpeg).map_err(|e| e.to_string()));
                Ok::<_, BoxError>((path, image))
            },
        )
        .parallelism(jobs)
        .deterministic(true)
        .batch(batch.max(1), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_refused_by_kind_without_blocking_and_big_files_unread() {
        let dir = tempfile::tempdir().unwrap();
        let zero = dir.path().join("cat.zero.jpg");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert_eq!(
            read_source(&Stores::default(), &zero).unwrap_err(),
            "not a regular file (a character device)"
        );
        let fifo = dir.path().join("cat.fifo.jpg");
        let name = std::ffi::CString::new(fifo.clone().into_os_string().into_encoded_bytes());
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.unwrap().as_ptr(), 0o600) }, 0);
        assert_eq!(
            read_source(&Stores::default(), &fifo).unwrap_err(),
            "not a regular file (a FIFO)"
        );
        let big = dir.path().join("cat.big.jpg");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        assert_eq!(
            read_source(&Stores::default(), &big).unwrap_err(),
            format!(
                "file of {} bytes exceeds the limit of {MAX_FILE_BYTES}",
                MAX_FILE_BYTES + 1
            )
        );
        let fine = dir.path().join("cat.1.jpg");
        std::fs::write(&fine, b"\xff\xd8\xff").unwrap();
        assert_eq!(
            read_source(&Stores::default(), &fine).unwrap(),
            b"\xff\xd8\xff"
        );
        assert!(
            read_source(&Stores::default(), &dir.path().join("missing.jpg"))
                .unwrap_err()
                .starts_with("cannot read:")
        );
    }
}
