//! Streaming YUV4MPEG2 reader (the `y4m:` source around it is in `y4m_source.rs`).
//!
//! Y4M is what `ffmpeg … -f yuv4mpegpipe -` writes, so any video file or network camera ffmpeg
//! can open becomes a source through a pipe. The stream is a text header line, then per frame a
//! `FRAME` line and the raw planes. Everything read from the stream is validated before it is
//! used: sizes are bounded before anything is allocated, and every malformed header field gets
//! an error naming the field and its value.

use std::io::{self, BufRead, BufReader, Read};

use image::RgbImage;

use super::convert::{planar_to_rgb, ConvertError, PlanarLayout, Range, Subsampling};

const MAGIC: &str = "YUV4MPEG2";
const FRAME: &str = "FRAME";
/// Largest width or height accepted.
pub const MAX_DIMENSION: u32 = 16384;
/// Largest pixel count accepted (8K UHD); bounds the frame buffer to ~130 MB in the worst layout.
pub const MAX_PIXELS: u64 = 7680 * 4320;
/// Stream header lines are short; the bound keeps a stream without newlines from eating memory.
const MAX_HEADER_LEN: u64 = 4096;
const MAX_FRAME_HEADER_LEN: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Y4mError {
    #[error("empty input: no YUV4MPEG2 header")]
    EmptyInput,
    #[error("not a YUV4MPEG2 stream: header starts with {found:?}")]
    BadMagic { found: String },
    #[error("Y4M header line longer than {limit} bytes")]
    HeaderTooLong { limit: u64 },
    #[error("Y4M header ends without a newline")]
    HeaderUnterminated,
    #[error("Y4M header field W: {value:?} is not a width in 1..={MAX_DIMENSION}")]
    Width { value: String },
    #[error("Y4M header field H: {value:?} is not a height in 1..={MAX_DIMENSION}")]
    Height { value: String },
    #[error("Y4M header field F: {value:?} is not a frame rate NUM:DEN (both > 0, or 0:0)")]
    FrameRate { value: String },
    #[error("Y4M header field I: {value:?} is not an interlacing mode (p, t, b, m or ?)")]
    Interlace { value: String },
    #[error("Y4M header field A: {value:?} is not a pixel aspect ratio NUM:DEN")]
    Aspect { value: String },
    #[error(
        "Y4M header field C: colourspace {value:?} is not supported (8-bit 420jpeg, 420mpeg2, \
         420paldv, 420, 422, 411, 444, 444alpha, mono)"
    )]
    Colorspace { value: String },
    #[error("Y4M header field XCOLORRANGE: {value:?} is neither FULL nor LIMITED")]
    ColorRange { value: String },
    #[error("Y4M header field {field} appears twice")]
    DuplicateField { field: char },
    #[error("Y4M header lacks the {field} field")]
    MissingField { field: char },
    #[error("Y4M frame size {width}x{height} exceeds the {MAX_PIXELS}-pixel limit")]
    TooLarge { width: u32, height: u32 },
    #[error("Y4M frame {frame}: expected a FRAME line, found {found:?}")]
    BadFrameMarker { frame: u64, found: String },
    #[error("Y4M frame {frame}: FRAME line longer than {limit} bytes")]
    FrameHeaderTooLong { frame: u64, limit: u64 },
    #[error("Y4M frame {frame}: stream ends inside the FRAME line")]
    TruncatedFrameHeader { frame: u64 },
    #[error("Y4M frame {frame}: stream ends after {got} of {expected} bytes")]
    TruncatedFrame {
        frame: u64,
        got: usize,
        expected: usize,
    },
    #[error("Y4M frame {frame}: {source}")]
    Convert { frame: u64, source: ConvertError },
    #[error("reading Y4M: {0}")]
    Io(#[from] io::Error),
}

/// Y4M `C` values: sample layout plus chroma siting, which is kept only for display (the
/// converter replicates chroma without regard to siting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colorspace {
    C420Jpeg,
    C420Mpeg2,
    C420Paldv,
    C420,
    C422,
    C411,
    C444,
    /// 4:4:4 plus an alpha plane, which is skipped.
    C444Alpha,
    Mono,
}

impl Colorspace {
    const ALL: [Colorspace; 9] = [
        Colorspace::C420Jpeg,
        Colorspace::C420Mpeg2,
        Colorspace::C420Paldv,
        Colorspace::C420,
        Colorspace::C422,
        Colorspace::C411,
        Colorspace::C444,
        Colorspace::C444Alpha,
        Colorspace::Mono,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Colorspace::C420Jpeg => "420jpeg",
            Colorspace::C420Mpeg2 => "420mpeg2",
            Colorspace::C420Paldv => "420paldv",
            Colorspace::C420 => "420",
            Colorspace::C422 => "422",
            Colorspace::C411 => "411",
            Colorspace::C444 => "444",
            Colorspace::C444Alpha => "444alpha",
            Colorspace::Mono => "mono",
        }
    }

    fn subsampling(self) -> Subsampling {
        match self {
            Colorspace::C420Jpeg | Colorspace::C420Mpeg2 | Colorspace::C420Paldv => {
                Subsampling::S420
            }
            Colorspace::C420 => Subsampling::S420,
            Colorspace::C422 => Subsampling::S422,
            Colorspace::C411 => Subsampling::S411,
            Colorspace::C444 | Colorspace::C444Alpha => Subsampling::S444,
            Colorspace::Mono => Subsampling::Mono,
        }
    }
}

/// `I` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interlace {
    Progressive,
    TopFieldFirst,
    BottomFieldFirst,
    /// Set per frame in the FRAME lines.
    Mixed,
    Unknown,
}

/// The stream header.
#[derive(Debug, Clone, PartialEq)]
pub struct Y4mHeader {
    pub width: u32,
    pub height: u32,
    /// Frames per second as NUM:DEN; `None` when absent or given as 0:0 (unknown).
    pub frame_rate: Option<(u32, u32)>,
    pub interlace: Option<Interlace>,
    /// Pixel aspect ratio; `None` when absent or 0:0.
    pub aspect: Option<(u32, u32)>,
    /// 420jpeg when the header has no `C` field, as the format specifies.
    pub colorspace: Colorspace,
    /// From `XCOLORRANGE=FULL|LIMITED`; limited when absent.
    pub range: Range,
    /// Other `X` fields, without the leading `X`, in stream order.
    pub extensions: Vec<String>,
}

impl Y4mHeader {
    fn layout(&self) -> PlanarLayout {
        PlanarLayout {
            width: self.width,
            height: self.height,
            subsampling: self.colorspace.subsampling(),
        }
    }

    /// Bytes of one frame, all planes. Cannot overflow: dimensions are bounded at parse time.
    pub fn frame_len(&self) -> usize {
        let planes = self.layout().frame_len().unwrap_or(usize::MAX);
        match self.colorspace {
            Colorspace::C444Alpha => planes + self.width as usize * self.height as usize,
            _ => planes,
        }
    }

    pub fn fps(&self) -> Option<f32> {
        self.frame_rate.map(|(n, d)| n as f32 / d as f32)
    }

    fn parse(line: &str) -> Result<Y4mHeader, Y4mError> {
        let mut tokens = line.split(' ').filter(|t| !t.is_empty());
        match tokens.next() {
            Some(MAGIC) => {}
            other => {
                return Err(Y4mError::BadMagic {
                    found: other.unwrap_or("").chars().take(16).collect(),
                })
            }
        }
        let mut fields = Fields::default();
        for token in tokens {
            let mut chars = token.chars();
            let Some(tag) = chars.next() else { continue };
            fields.set(tag, chars.as_str())?;
        }
        fields.finish()
    }
}

/// Header fields as they are parsed, before the required ones are checked.
#[derive(Default)]
struct Fields {
    width: Option<u32>,
    height: Option<u32>,
    frame_rate: Option<Option<(u32, u32)>>,
    interlace: Option<Interlace>,
    aspect: Option<Option<(u32, u32)>>,
    colorspace: Option<Colorspace>,
    range: Option<Range>,
    extensions: Vec<String>,
}

fn once<T>(slot: &mut Option<T>, field: char, value: T) -> Result<(), Y4mError> {
    if slot.is_some() {
        return Err(Y4mError::DuplicateField { field });
    }
    *slot = Some(value);
    Ok(())
}

fn ratio(value: &str) -> Option<(u32, u32)> {
    let (n, d) = value.split_once(':')?;
    Some((n.parse().ok()?, d.parse().ok()?))
}

fn dimension(value: &str) -> Option<u32> {
    value
        .parse()
        .ok()
        .filter(|v| (1..=MAX_DIMENSION).contains(v))
}

impl Fields {
    fn set(&mut self, tag: char, value: &str) -> Result<(), Y4mError> {
        let owned = || value.to_string();
        match tag {
            'W' => {
                let w = dimension(value).ok_or_else(|| Y4mError::Width { value: owned() })?;
                once(&mut self.width, tag, w)
            }
            'H' => {
                let h = dimension(value).ok_or_else(|| Y4mError::Height { value: owned() })?;
                once(&mut self.height, tag, h)
            }
            'F' => {
                let rate = match ratio(value) {
                    Some((0, 0)) => None,
                    Some((n, d)) if n > 0 && d > 0 => Some((n, d)),
                    _ => return Err(Y4mError::FrameRate { value: owned() }),
                };
                once(&mut self.frame_rate, tag, rate)
            }
            'A' => {
                let aspect = match ratio(value) {
                    Some((0, 0)) => None,
                    Some((n, d)) if n > 0 && d > 0 => Some((n, d)),
                    _ => return Err(Y4mError::Aspect { value: owned() }),
                };
                once(&mut self.aspect, tag, aspect)
            }
            'I' => {
                let mode = match value {
                    "p" => Interlace::Progressive,
                    "t" => Interlace::TopFieldFirst,
                    "b" => Interlace::BottomFieldFirst,
                    "m" => Interlace::Mixed,
                    "?" => Interlace::Unknown,
                    _ => return Err(Y4mError::Interlace { value: owned() }),
                };
                once(&mut self.interlace, tag, mode)
            }
            'C' => {
                let cs = Colorspace::ALL
                    .into_iter()
                    .find(|c| c.name() == value)
                    .ok_or_else(|| Y4mError::Colorspace { value: owned() })?;
                once(&mut self.colorspace, tag, cs)
            }
            'X' => match value.strip_prefix("COLORRANGE=") {
                Some("FULL") => once(&mut self.range, tag, Range::Full),
                Some("LIMITED") => once(&mut self.range, tag, Range::Limited),
                Some(other) => Err(Y4mError::ColorRange {
                    value: other.to_string(),
                }),
                None => {
                    self.extensions.push(owned());
                    Ok(())
                }
            },
            // The format reserves other letters; a newer writer's field should not stop us.
            _ => {
                log::warn!("Y4M header: ignoring unknown field {tag}{value}");
                Ok(())
            }
        }
    }

    fn finish(self) -> Result<Y4mHeader, Y4mError> {
        let width = self.width.ok_or(Y4mError::MissingField { field: 'W' })?;
        let height = self.height.ok_or(Y4mError::MissingField { field: 'H' })?;
        if u64::from(width) * u64::from(height) > MAX_PIXELS {
            return Err(Y4mError::TooLarge { width, height });
        }
        Ok(Y4mHeader {
            width,
            height,
            frame_rate: self.frame_rate.flatten(),
            interlace: self.interlace,
            aspect: self.aspect.flatten(),
            colorspace: self.colorspace.unwrap_or(Colorspace::C420Jpeg),
            range: self.range.unwrap_or_default(),
            extensions: self.extensions,
        })
    }
}

/// Outcome of reading one newline-terminated line with a length bound.
enum Line {
    Eof,
    Complete(Vec<u8>),
    TooLong,
    Unterminated,
}

fn read_line(reader: &mut impl BufRead, limit: u64) -> io::Result<Line> {
    let mut line = Vec::new();
    let n = reader.take(limit + 1).read_until(b'\n', &mut line)?;
    Ok(match line.last() {
        None if n == 0 => Line::Eof,
        Some(b'\n') => {
            line.pop();
            Line::Complete(line)
        }
        _ if n as u64 > limit => Line::TooLong,
        _ => Line::Unterminated,
    })
}

/// Reads a Y4M stream frame by frame.
pub struct Y4mReader<R> {
    input: BufReader<R>,
    header: Y4mHeader,
    frame_len: usize,
    frames_read: u64,
    frame: Vec<u8>,
}

impl<R: Read> Y4mReader<R> {
    /// Reads and validates the stream header.
    pub fn new(input: R) -> Result<Self, Y4mError> {
        let mut input = BufReader::new(input);
        let line = match read_line(&mut input, MAX_HEADER_LEN)? {
            Line::Eof => return Err(Y4mError::EmptyInput),
            Line::TooLong => {
                return Err(Y4mError::HeaderTooLong {
                    limit: MAX_HEADER_LEN,
                })
            }
            Line::Unterminated => return Err(Y4mError::HeaderUnterminated),
            Line::Complete(line) => line,
        };
        let header = Y4mHeader::parse(&String::from_utf8_lossy(&line))?;
        Ok(Y4mReader {
            frame_len: header.frame_len(),
            input,
            header,
            frames_read: 0,
            frame: Vec::new(),
        })
    }

    pub fn header(&self) -> &Y4mHeader {
        &self.header
    }

    /// The raw planes of the next frame; `None` at a clean end of stream (right before a FRAME
    /// line).
    pub fn read_frame(&mut self) -> Result<Option<&[u8]>, Y4mError> {
        let frame = self.frames_read;
        match read_line(&mut self.input, MAX_FRAME_HEADER_LEN)? {
            Line::Eof => return Ok(None),
            Line::TooLong => {
                return Err(Y4mError::FrameHeaderTooLong {
                    frame,
                    limit: MAX_FRAME_HEADER_LEN,
                })
            }
            Line::Unterminated => return Err(Y4mError::TruncatedFrameHeader { frame }),
            Line::Complete(line) => {
                // FRAME lines may carry per-frame parameters; none change the frame size.
                let ok = line
                    .strip_prefix(FRAME.as_bytes())
                    .is_some_and(|rest| rest.is_empty() || rest[0] == b' ');
                if !ok {
                    return Err(Y4mError::BadFrameMarker {
                        frame,
                        found: String::from_utf8_lossy(&line).chars().take(32).collect(),
                    });
                }
            }
        }
        // Grows with the data actually received, so a lying header costs no more memory
        // than the bytes that arrive.
        self.frame.clear();
        let got = (&mut self.input)
            .take(self.frame_len as u64)
            .read_to_end(&mut self.frame)?;
        if got < self.frame_len {
            return Err(Y4mError::TruncatedFrame {
                frame,
                got,
                expected: self.frame_len,
            });
        }
        self.frames_read += 1;
        Ok(Some(&self.frame))
    }

    /// The next frame converted to RGB.
    pub fn next_rgb(&mut self) -> Result<Option<RgbImage>, Y4mError> {
        let (layout, range) = (self.header.layout(), self.header.range);
        let frame = self.frames_read;
        match self.read_frame()? {
            None => Ok(None),
            Some(data) => planar_to_rgb(data, layout, range)
                .map(Some)
                .map_err(|source| Y4mError::Convert { frame, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Test-only writer: the header line for `h`.
    fn header_line(h: &Y4mHeader) -> String {
        let mut s = format!("{MAGIC} W{} H{}", h.width, h.height);
        if let Some((n, d)) = h.frame_rate {
            s += &format!(" F{n}:{d}");
        }
        if let Some(i) = h.interlace {
            s += match i {
                Interlace::Progressive => " Ip",
                Interlace::TopFieldFirst => " It",
                Interlace::BottomFieldFirst => " Ib",
                Interlace::Mixed => " Im",
                Interlace::Unknown => " I?",
            };
        }
        if let Some((n, d)) = h.aspect {
            s += &format!(" A{n}:{d}");
        }
        s += &format!(" C{}", h.colorspace.name());
        if h.range == Range::Full {
            s += " XCOLORRANGE=FULL";
        }
        for x in &h.extensions {
            s += &format!(" X{x}");
        }
        s + "\n"
    }

    fn write_y4m(h: &Y4mHeader, frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = header_line(h).into_bytes();
        for f in frames {
            out.extend_from_slice(b"FRAME\n");
            out.extend_from_slice(f);
        }
        out
    }

    fn header(w: u32, h: u32, colorspace: Colorspace) -> Y4mHeader {
        Y4mHeader {
            width: w,
            height: h,
            frame_rate: Some((25, 1)),
            interlace: Some(Interlace::Progressive),
            aspect: Some((1, 1)),
            colorspace,
            range: Range::Limited,
            extensions: vec![],
        }
    }

    fn parse(line: &str) -> Result<Y4mHeader, Y4mError> {
        Y4mReader::new(format!("{line}\n").as_bytes()).map(|r| r.header().clone())
    }

    #[test]
    fn parses_a_full_header_as_ffmpeg_writes_it() {
        let h =
            parse("YUV4MPEG2 W384 H288 F10:3 Ip A1:1 C420mpeg2 XYSCSS=420MPEG2 XCOLORRANGE=FULL")
                .unwrap();
        assert_eq!((h.width, h.height), (384, 288));
        assert_eq!(h.frame_rate, Some((10, 3)));
        assert_eq!(h.interlace, Some(Interlace::Progressive));
        assert_eq!(h.aspect, Some((1, 1)));
        assert_eq!(h.colorspace, Colorspace::C420Mpeg2);
        assert_eq!(h.range, Range::Full);
        assert_eq!(h.extensions, vec!["YSCSS=420MPEG2".to_string()]);
        assert_eq!(h.frame_len(), 384 * 288 * 3 / 2);
        assert!((h.fps().unwrap() - 3.333).abs() < 0.001);
    }

    #[test]
    fn defaults_when_optional_fields_are_absent() {
        let h = parse("YUV4MPEG2 W3 H3 F0:0 A0:0 Zfuture").unwrap();
        assert_eq!(h.colorspace, Colorspace::C420Jpeg);
        assert_eq!(h.range, Range::Limited);
        assert_eq!((h.frame_rate, h.aspect, h.interlace), (None, None, None));
        assert_eq!(h.frame_len(), 9 + 2 * 4);
        let frame_lens: Vec<usize> = [
            ("422", 4 * 3 + 2 * 2 * 3),
            ("411", 4 * 3 + 2 * 3),
            ("444", 4 * 3 * 3),
            ("444alpha", 4 * 3 * 4),
            ("mono", 4 * 3),
        ]
        .iter()
        .map(|(c, want)| {
            let h = parse(&format!("YUV4MPEG2 W4 H3 C{c}")).unwrap();
            assert_eq!(h.frame_len(), *want, "C{c}");
            h.frame_len()
        })
        .collect();
        assert_eq!(frame_lens.len(), 5);
    }

    #[test]
    fn every_malformed_field_names_itself_and_its_value() {
        let cases: [(&str, &str); 16] = [
            ("", "empty input"),
            ("YUV4MPEG W2 H2", "\"YUV4MPEG\""),
            ("YUV4MPEG2 W0 H2", "field W: \"0\""),
            ("YUV4MPEG2 Wx H2", "field W: \"x\""),
            ("YUV4MPEG2 W2 H99999", "field H: \"99999\""),
            ("YUV4MPEG2 W2 H", "field H: \"\""),
            ("YUV4MPEG2 W2 H2 F30", "field F: \"30\""),
            ("YUV4MPEG2 W2 H2 F30:0", "field F: \"30:0\""),
            ("YUV4MPEG2 W2 H2 Ix", "field I: \"x\""),
            ("YUV4MPEG2 W2 H2 A1-1", "field A: \"1-1\""),
            ("YUV4MPEG2 W2 H2 C420p10", "colourspace \"420p10\""),
            ("YUV4MPEG2 W2 H2 XCOLORRANGE=TV", "XCOLORRANGE: \"TV\""),
            ("YUV4MPEG2 W2 W2 H2", "field W appears twice"),
            ("YUV4MPEG2 H2", "lacks the W field"),
            ("YUV4MPEG2 W2", "lacks the H field"),
            ("YUV4MPEG2 W16384 H16384", "16384x16384 exceeds"),
        ];
        for (line, want) in cases {
            let input = if line.is_empty() {
                String::new()
            } else {
                format!("{line}\n")
            };
            let err = Y4mReader::new(input.as_bytes()).err().expect(line);
            assert!(err.to_string().contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn header_without_newline_or_endless_is_refused() {
        let err = Y4mReader::new(&b"YUV4MPEG2 W2 H2"[..]).err().unwrap();
        assert!(matches!(err, Y4mError::HeaderUnterminated), "{err}");
        let long = format!("YUV4MPEG2 W2 H2 X{}\n", "a".repeat(5000));
        let err = Y4mReader::new(long.as_bytes()).err().unwrap();
        assert!(matches!(err, Y4mError::HeaderTooLong { .. }), "{err}");
    }

    #[test]
    fn clean_end_versus_truncated_frame() {
        let h = header(2, 2, Colorspace::C420);
        let data = write_y4m(&h, &[vec![1; 6], vec![2; 6]]);
        let mut r = Y4mReader::new(&data[..]).unwrap();
        assert_eq!(r.read_frame().unwrap(), Some(&[1u8; 6][..]));
        assert_eq!(r.read_frame().unwrap(), Some(&[2u8; 6][..]));
        assert_eq!(r.read_frame().unwrap(), None);

        let mut r = Y4mReader::new(&data[..data.len() - 2]).unwrap();
        r.read_frame().unwrap();
        match r.read_frame() {
            Err(Y4mError::TruncatedFrame {
                frame: 1,
                got: 4,
                expected: 6,
            }) => {}
            other => panic!("{other:?}"),
        }

        let cut_in_marker = &data[..data.len() - 6 - 3];
        let mut r = Y4mReader::new(cut_in_marker).unwrap();
        r.read_frame().unwrap();
        assert!(matches!(
            r.read_frame(),
            Err(Y4mError::TruncatedFrameHeader { frame: 1 })
        ));
    }

    #[test]
    fn frame_lines_with_parameters_and_bad_markers() {
        let mut data = header_line(&header(2, 2, Colorspace::Mono)).into_bytes();
        data.extend(b"FRAME Ip XFOO=1\n\x10\x20\x30\x40");
        data.extend(b"FRAMES\n\x10\x20\x30\x40");
        let mut r = Y4mReader::new(&data[..]).unwrap();
        let img = r.next_rgb().unwrap().unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]); // Y=16: limited-range black
        let err = r.read_frame().unwrap_err();
        assert!(err.to_string().contains("\"FRAMES\""), "{err}");
    }

    #[test]
    fn converts_frames_with_the_header_range() {
        let mut h = header(2, 2, Colorspace::C444);
        let frame = [vec![235u8; 4], vec![128; 8]].concat();
        let data = write_y4m(&h, std::slice::from_ref(&frame));
        let img = Y4mReader::new(&data[..])
            .unwrap()
            .next_rgb()
            .unwrap()
            .unwrap();
        assert_eq!(img.get_pixel(1, 1).0, [255, 255, 255]);
        h.range = Range::Full;
        let data = write_y4m(&h, &[frame]);
        let img = Y4mReader::new(&data[..])
            .unwrap()
            .next_rgb()
            .unwrap()
            .unwrap();
        assert_eq!(img.get_pixel(1, 1).0, [235, 235, 235]);
    }

    fn any_colorspace() -> impl Strategy<Value = Colorspace> {
        proptest::sample::select(Colorspace::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            for prefix in [&b""[..], &b"YUV4MPEG2 W3 H2 "[..], &b"YUV4MPEG2 W3 H2\nFRAME"[..]] {
                let input = [prefix, &data[..]].concat();
                if let Ok(mut r) = Y4mReader::new(&input[..]) {
                    for _ in 0..4 {
                        if !matches!(r.next_rgb(), Ok(Some(_))) {
                            break;
                        }
                    }
                }
            }
        }

        #[test]
        fn written_streams_read_back_identically(
            w in 1u32..9,
            h in 1u32..9,
            colorspace in any_colorspace(),
            full in any::<bool>(),
            seed in any::<u64>(),
            count in 0usize..4,
        ) {
            let mut hdr = header(w, h, colorspace);
            hdr.range = if full { Range::Full } else { Range::Limited };
            hdr.extensions = vec!["TAG=1".into()];
            let mut rng = fastrand::Rng::with_seed(seed);
            let frames: Vec<Vec<u8>> = (0..count)
                .map(|_| (0..hdr.frame_len()).map(|_| rng.u8(..)).collect())
                .collect();
            let data = write_y4m(&hdr, &frames);
            let mut r = Y4mReader::new(&data[..]).unwrap();
            prop_assert_eq!(r.header(), &hdr);
            for f in &frames {
                prop_assert_eq!(r.read_frame().unwrap(), Some(&f[..]));
            }
            prop_assert_eq!(r.read_frame().unwrap(), None);
        }
    }
}
