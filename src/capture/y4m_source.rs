//! The `y4m:` source: a YUV4MPEG2 file (optionally looped) or stdin, through [`Y4mReader`].

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use image::RgbImage;

use super::convert::Range;
use super::y4m::{Y4mError, Y4mReader};
use super::{CaptureError, Source, SourceSpec, Y4mInput};

/// The `y4m:` source: a file (optionally looped) or stdin.
pub(crate) struct Y4mSource {
    reader: Y4mReader<Box<dyn Read + Send>>,
    file: Option<PathBuf>,
    looped: bool,
    origin: String,
}

impl Y4mSource {
    pub(crate) fn open(input: &Y4mInput, looped: bool) -> Result<Self, CaptureError> {
        let origin = SourceSpec::Y4m(input.clone()).to_string();
        let file = match input {
            Y4mInput::Stdin => None,
            Y4mInput::File(path) => Some(path.clone()),
        };
        if looped && file.is_none() {
            log::warn!("{origin}: stdin cannot be rewound; it will not loop");
        }
        let reader = Self::reader(file.as_ref(), &origin)?;
        Ok(Y4mSource {
            reader,
            file,
            looped,
            origin,
        })
    }

    fn reader(
        file: Option<&PathBuf>,
        origin: &str,
    ) -> Result<Y4mReader<Box<dyn Read + Send>>, CaptureError> {
        let input: Box<dyn Read + Send> = match file {
            None => Box::new(io::stdin()),
            Some(path) => Box::new(File::open(path).map_err(|source| CaptureError::Open {
                path: path.clone(),
                source,
            })?),
        };
        Y4mReader::new(input).map_err(|source| CaptureError::Y4m {
            origin: origin.to_string(),
            source,
        })
    }

    fn error(&self, source: Y4mError) -> CaptureError {
        CaptureError::Y4m {
            origin: self.origin.clone(),
            source,
        }
    }
}

impl Source for Y4mSource {
    fn next_frame(&mut self) -> Result<Option<RgbImage>, CaptureError> {
        let end = match self.reader.next_rgb() {
            Ok(Some(img)) => return Ok(Some(img)),
            Ok(None) => None,
            Err(e @ Y4mError::TruncatedFrame { .. }) if self.looped && self.file.is_some() => {
                Some(e)
            }
            Err(e) => return Err(self.error(e)),
        };
        let Some(path) = self.file.as_ref().filter(|_| self.looped) else {
            return Ok(None);
        };
        if let Some(e) = end {
            // A recording cut short mid-frame: restart rather than stop the loop for good.
            log::warn!("{}: {e}; restarting", self.origin);
        }
        self.reader = Self::reader(Some(path), &self.origin)?;
        // A file without frames would otherwise restart forever.
        self.reader.next_rgb().map_err(|e| self.error(e))
    }

    fn describe(&self) -> String {
        let h = self.reader.header();
        let range = match h.range {
            Range::Limited => "limited",
            Range::Full => "full",
        };
        let rate = match h.frame_rate {
            Some((n, d)) => format!("{n}/{d} fps"),
            None => "unknown fps".to_string(),
        };
        format!(
            "{} {}x{} C{} {range} range {rate}",
            self.origin,
            h.width,
            h.height,
            h.colorspace.name()
        )
    }

    fn native_fps(&self) -> Option<f32> {
        self.reader.header().fps()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 2x2 mono frames (Y 16 and 235) and `tail` stray bytes of a cut-off third frame.
    fn file_with_cut_tail(tail: usize) -> tempfile::NamedTempFile {
        let mut data = b"YUV4MPEG2 W2 H2 F30000:1001 Cmono\n".to_vec();
        for y in [16u8, 235] {
            data.extend(b"FRAME\n");
            data.extend([y; 4]);
        }
        if tail > 0 {
            data.extend(b"FRAME\n");
            data.extend(vec![128; tail]);
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), data).unwrap();
        file
    }

    fn first_value(src: &mut Y4mSource) -> u8 {
        src.next_frame().unwrap().unwrap().get_pixel(0, 0).0[0]
    }

    #[test]
    fn a_cut_last_frame_ends_with_an_error_unless_looping() {
        let file = file_with_cut_tail(3);
        let input = Y4mInput::File(file.path().to_path_buf());

        let mut once = Y4mSource::open(&input, false).unwrap();
        assert_eq!([first_value(&mut once), first_value(&mut once)], [0, 255]);
        let err = once.next_frame().unwrap_err().to_string();
        assert!(err.contains("after 3 of 4 bytes"), "{err}");

        let mut looped = Y4mSource::open(&input, true).unwrap();
        let values: Vec<u8> = (0..5).map(|_| first_value(&mut looped)).collect();
        assert_eq!(values, [0, 255, 0, 255, 0]);
    }

    #[test]
    fn describes_the_stream_and_reports_its_rate() {
        let file = file_with_cut_tail(0);
        let src = Y4mSource::open(&Y4mInput::File(file.path().to_path_buf()), false).unwrap();
        let text = src.describe();
        assert!(
            text.contains("2x2 Cmono limited range 30000/1001 fps"),
            "{text}"
        );
        assert!((src.native_fps().unwrap() - 29.97).abs() < 0.01);
    }
}
