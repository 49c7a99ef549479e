//! The `images:` source: the JPEG and PNG files of a folder, in file-name order.
//!
//! A file that cannot be read or decoded is skipped with a warning and counted: a folder being
//! filled by another program may hold a half-written file. Only a folder with no decodable image
//! at all is an error. The folder is listed again at every loop, so files added meanwhile join.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use image::{ImageFormat, RgbImage};

use super::mjpeg::{decode_jpeg, MjpegError};
use super::{CaptureError, Source};

#[derive(Debug, thiserror::Error)]
enum FileError {
    #[error("cannot read: {0}")]
    Read(#[from] io::Error),
    #[error(transparent)]
    Jpeg(#[from] MjpegError),
    #[error("PNG does not decode: {0}")]
    Png(#[from] image::ImageError),
}

pub(crate) struct ImageFolder {
    dir: PathBuf,
    looped: bool,
    files: Vec<PathBuf>,
    next: usize,
    decoded_this_pass: usize,
    skipped: u64,
}

fn is_png(path: &Path) -> bool {
    extension(path).is_some_and(|e| e == "png")
}

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// The image files of `dir`, sorted by name.
fn list(dir: &Path) -> Result<Vec<PathBuf>, CaptureError> {
    let open_error = |source| CaptureError::Open {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(open_error)? {
        let path = entry.map_err(open_error)?.path();
        let wanted = extension(&path).is_some_and(|e| matches!(e.as_str(), "jpg" | "jpeg" | "png"));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(CaptureError::NoImages {
            dir: dir.to_path_buf(),
        });
    }
    files.sort();
    Ok(files)
}

fn decode(path: &Path) -> Result<RgbImage, FileError> {
    let data = fs::read(path)?;
    if is_png(path) {
        Ok(image::load_from_memory_with_format(&data, ImageFormat::Png)?.into_rgb8())
    } else {
        // Through the MJPEG path so camera dumps without Huffman tables decode too.
        Ok(decode_jpeg(&data)?)
    }
}

impl ImageFolder {
    pub(crate) fn open(dir: &Path, looped: bool) -> Result<Self, CaptureError> {
        Ok(ImageFolder {
            files: list(dir)?,
            dir: dir.to_path_buf(),
            looped,
            next: 0,
            decoded_this_pass: 0,
            skipped: 0,
        })
    }

    /// Files skipped so far because they did not read or decode.
    #[cfg(test)]
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }
}

impl Source for ImageFolder {
    fn next_frame(&mut self) -> Result<Option<RgbImage>, CaptureError> {
        loop {
            if self.next >= self.files.len() {
                if self.decoded_this_pass == 0 {
                    return Err(CaptureError::NoReadableImages {
                        dir: self.dir.clone(),
                        count: self.files.len(),
                    });
                }
                if !self.looped {
                    return Ok(None);
                }
                self.files = list(&self.dir)?;
                self.next = 0;
                self.decoded_this_pass = 0;
            }
            let path = &self.files[self.next];
            self.next += 1;
            match decode(path) {
                Ok(img) => {
                    self.decoded_this_pass += 1;
                    return Ok(Some(img));
                }
                Err(e) => {
                    self.skipped += 1;
                    log::warn!(
                        "images:{}: skipping {}: {e} ({} skipped so far)",
                        self.dir.display(),
                        path.display(),
                        self.skipped
                    );
                }
            }
        }
    }

    fn describe(&self) -> String {
        format!("images:{} ({} files)", self.dir.display(), self.files.len())
    }

    fn native_fps(&self) -> Option<f32> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn solid(w: u32, h: u32, v: u8) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb([v, v, v]))
    }

    fn frames(src: &mut ImageFolder) -> Vec<(u32, u32)> {
        let mut sizes = Vec::new();
        while let Some(img) = src.next_frame().unwrap() {
            sizes.push(img.dimensions());
        }
        sizes
    }

    #[test]
    fn reads_images_in_name_order_skipping_broken_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        solid(3, 1, 10).save(p.join("b.png")).unwrap();
        solid(1, 1, 20).save(p.join("a.JPG")).unwrap();
        solid(2, 1, 30).save(p.join("c.jpeg")).unwrap();
        fs::write(p.join("b2.jpg"), b"half-written").unwrap();
        fs::write(p.join("notes.txt"), b"not an image").unwrap();
        fs::create_dir(p.join("sub.png")).unwrap();

        let mut src = ImageFolder::open(p, false).unwrap();
        assert_eq!(frames(&mut src), vec![(1, 1), (3, 1), (2, 1)]);
        assert_eq!(src.skipped(), 1);
        assert_eq!(src.native_fps(), None);
        assert!(src.describe().contains("(4 files)"), "{}", src.describe());
    }

    #[test]
    fn loops_and_picks_up_new_files() {
        let dir = tempfile::tempdir().unwrap();
        solid(1, 1, 0).save(dir.path().join("1.png")).unwrap();
        let mut src = ImageFolder::open(dir.path(), true).unwrap();
        assert_eq!(src.next_frame().unwrap().unwrap().dimensions(), (1, 1));
        solid(2, 2, 0).save(dir.path().join("2.png")).unwrap();
        assert_eq!(src.next_frame().unwrap().unwrap().dimensions(), (1, 1));
        assert_eq!(src.next_frame().unwrap().unwrap().dimensions(), (2, 2));
    }

    #[test]
    fn folders_without_usable_images_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            ImageFolder::open(dir.path(), false),
            Err(CaptureError::NoImages { .. })
        ));
        fs::write(dir.path().join("x.png"), b"junk").unwrap();
        let mut src = ImageFolder::open(dir.path(), true).unwrap();
        assert!(matches!(
            src.next_frame(),
            Err(CaptureError::NoReadableImages { count: 1, .. })
        ));
        assert!(matches!(
            ImageFolder::open(&dir.path().join("missing"), false),
            Err(CaptureError::Open { .. })
        ));
    }
}
