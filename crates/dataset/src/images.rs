//! Image files (JPEG, PNG, WebP, BMP, GIF, TIFF) prepared as a model's input, exactly as the
//! training images were
//! ([`Preprocessing`]: decode, shorter side → size, centre crop; the `f32` conversion is
//! [`Preprocessing::extend_f32`]), in parallel with one preparer per worker, in file order.
//! Files and folders may be local or in object storage ([`crate::remote`]).

use std::path::{Path, PathBuf};

use shardfeed_image_prep::{DecodeOptions, Preparer, Preprocessing, RgbImage, SourceFormat};
use shardfeed_input_pipeline::{BoxError, Parallelism, Pipeline};

use crate::folder::Location;
use crate::label::{is_image_name, source_format};
use crate::remote::Stores;
use crate::{Error, MAX_FILE_BYTES, Result};

/// A source image's bytes (local, or an object), refused unread above [`MAX_FILE_BYTES`]
/// ([`crate::remote::read_bounded`]); the reason in place of the bytes.
pub(crate) fn read_source(stores: &Stores, path: &Path) -> Result<Vec<u8>, String> {
    crate::remote::read_bounded_with(stores, path, MAX_FILE_BYTES)?
        .ok_or_else(|| "cannot read: it is gone".to_owned())
}

/// The image files of `inputs`: folders' `*.jpg`, `*.jpeg`, `*.png`, `*.webp`, `*.bmp`,
/// `*.gif`, `*.tif(f)` (sorted by name), files as given (an object URL with an image's name
/// is a file; any other, a folder).
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
            None => !is_image_name(input.path()),
        };
        if is_folder {
            let mut found: Vec<PathBuf> = crate::folder::files_in(input)?
                .into_iter()
                .filter(|p| is_image_name(p))
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
                let format = source_format(&path).unwrap_or(SourceFormat::Jpeg);
                let image = read_source(&stores, &path).and_then(|bytes| {
                    preparer
                        .resize_and_crop_as(&bytes, format)
                        .map_err(|e| e.to_string())
                });
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

    /// A PNG beside a JPEG in a folder to classify: both listed, and the PNG prepared as the
    /// shard step prepares it (the same decode, resize and crop).
    #[test]
    fn a_png_is_listed_and_prepared_like_a_shard_source() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..48 * 30 * 3).map(|i| (i % 251) as u8).collect();
        let mut png = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut png, 48, 30);
            encoder.set_color(png::ColorType::Rgb);
            let mut writer = encoder.write_header().unwrap();
            writer.write_image_data(&pixels).unwrap();
        }
        std::fs::write(dir.path().join("b.png"), &png).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"no").unwrap();
        let files = list_images(&[Location::local(dir.path())]).unwrap();
        assert_eq!(files, [dir.path().join("b.png")]);
        let mut batches =
            prepared_images(files, Preprocessing::for_size(16), 4, Parallelism::Fixed(1)).iter();
        let batch = batches.next().unwrap().unwrap();
        let (_, image) = &batch.items[0];
        let want = Preparer::new(16, 95, DecodeOptions::default())
            .unwrap()
            .resize_and_crop_as(&png, SourceFormat::Other)
            .unwrap();
        assert_eq!(image.as_ref().unwrap(), &want);
        assert_eq!((want.width, want.height), (16, 16));
    }

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
