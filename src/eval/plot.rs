//! The rate–distortion plot: fidelity mAP against bits per pixel, log x.
//!
//! Drawn with plotters into an RGB buffer and written as PNG by `image`, so no
//! system graphics library is needed. Text goes through plotters' `ab_glyph`
//! renderer with a TrueType font found at run time: `$FCHM_PLOT_FONT`, else
//! DejaVu Sans (Debian `fonts-dejavu-core`) or Liberation Sans. Without any,
//! the plot is still drawn, without text, and the caller says so.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use image::RgbImage;
use plotters::prelude::*;

/// Plot size in pixels.
pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 640;

/// The family name the font is registered under. Not plotters' default
/// `sans-serif`: text drawn without an explicit style would fail loudly
/// rather than depend on what was registered, and the no-text path provably
/// needs no font.
const FAMILY: &str = "fchm-sans";

/// Font files tried in order when `$FCHM_PLOT_FONT` is not set.
const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// One curve.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    /// (bpp, mAP); points with bpp <= 0 cannot be shown on a log axis and are skipped.
    pub points: Vec<(f64, f64)>,
    pub colour: RGBColor,
}

/// Register a sans-serif font with plotters once per process; the path used, or why none.
pub fn font() -> Result<&'static Path, &'static str> {
    static FONT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<PathBuf> = match std::env::var_os("FCHM_PLOT_FONT") {
            Some(p) => vec![PathBuf::from(p)],
            None => FONT_CANDIDATES.iter().map(PathBuf::from).collect(),
        };
        for path in &candidates {
            let Ok(bytes) = std::fs::read(path) else { continue };
            // plotters keeps fonts for the life of the process: leak one copy, once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                return Ok(path.clone());
            }
        }
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        Err(format!(
            "no usable TrueType font (tried {}; install Debian `fonts-dejavu-core` or set FCHM_PLOT_FONT)",
            tried.join(", ")
        ))
    })
    .as_ref()
    .map(PathBuf::as_path)
    .map_err(String::as_str)
}

/// Tick labels with at most three significant digits and no trailing zeros.
fn tick(v: f64) -> String {
    if !(v.is_finite() && v > 0.0) {
        return format!("{v}");
    }
    let decimals = (2 - v.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// 1, 2 and 5 times each power of ten inside `(lo, hi)`.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let x = decade * m;
            if x > lo && x < hi {
                out.push(x);
            }
        }
        decade *= 10.0;
    }
    out
}

/// The quantity on the y axis and its range.
#[derive(Debug, Clone, Copy)]
pub struct YAxis {
    pub desc: &'static str,
    pub lo: f64,
    pub hi: f64,
}

impl YAxis {
    pub const MAP: YAxis = YAxis {
        desc: "fidelity mAP@0.5",
        lo: 0.0,
        hi: 1.05,
    };

    /// A range that fits every point of `series`, with a margin.
    pub fn fitting(desc: &'static str, series: &[Series]) -> YAxis {
        let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
        let (lo, hi) = ys
            .filter(|y| y.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
                (lo.min(y), hi.max(y))
            });
        if !lo.is_finite() {
            return YAxis {
                desc,
                lo: 0.0,
                hi: 1.0,
            };
        }
        let pad = ((hi - lo) * 0.05).max(1e-3);
        YAxis {
            desc,
            lo: lo - pad,
            hi: hi + pad,
        }
    }
}

/// Where the legend goes: the first of lower right, upper left, upper right and
/// lower left whose box hides the fewest samples of the curves (points and
/// their segments, in the plot's log-x coordinates). One fixed corner hid the
/// end of a curve as soon as the curves stopped rising to the right.
fn legend_corner(series: &[Series], x: (f64, f64), y: YAxis) -> SeriesLabelPosition {
    // The box's share of the plot: long labels, a row per series.
    let (w, h) = (0.4, 0.08 + 0.05 * series.len() as f64);
    let unit = |(px, py): (f64, f64)| {
        (
            (px.ln() - x.0.ln()) / (x.1.ln() - x.0.ln()),
            (py - y.lo) / (y.hi - y.lo),
        )
    };
    const STEPS: usize = 16;
    let samples: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| {
            let points = s.points.iter().map(|&p| unit(p));
            let segments = s.points.windows(2).flat_map(move |seg| {
                let (a, b) = (unit(seg[0]), unit(seg[1]));
                (1..STEPS).map(move |i| {
                    let t = i as f64 / STEPS as f64;
                    (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
                })
            });
            points.chain(segments)
        })
        .collect();
    let left = (0.0, w);
    let right = (1.0 - w, 1.0);
    let (top, bottom) = ((1.0 - h, 1.0), (0.0, h));
    [
        (SeriesLabelPosition::LowerRight, right, bottom),
        (SeriesLabelPosition::UpperLeft, left, top),
        (SeriesLabelPosition::UpperRight, right, top),
        (SeriesLabelPosition::LowerLeft, left, bottom),
    ]
    .into_iter()
    .min_by_key(|(_, (x0, x1), (y0, y1))| {
        let inside = |&&(u, v): &&(f64, f64)| u >= *x0 && u <= *x1 && v >= *y0 && v <= *y1;
        samples.iter().filter(inside).count()
    })
    .map_or(SeriesLabelPosition::LowerRight, |(corner, _, _)| corner)
}

/// Render the plot; `text` = false draws only axes, grid and curves.
pub fn render(title: &str, series: &[Series], y: YAxis, text: bool) -> Result<RgbImage> {
    let shown: Vec<Series> = series
        .iter()
        .map(|s| Series {
            points: s
                .points
                .iter()
                .copied()
                .filter(|&(x, y)| x.is_finite() && x > 0.0 && y.is_finite())
                .collect(),
            ..s.clone()
        })
        .collect();
    let xs = shown.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo / 1.3, hi * 1.3)
    } else {
        (1e-3, 1.0)
    };

    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let err = |e: &dyn std::fmt::Display| anyhow!("drawing the plot: {e}");
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(24);
        if text {
            builder
                .caption(title, (FAMILY, 24))
                .x_label_area_size(56)
                .y_label_area_size(72);
        } else {
            builder.x_label_area_size(8).y_label_area_size(8);
        }
        let mut chart = builder
            .build_cartesian_2d(
                (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
                y.lo..y.hi,
            )
            .map_err(|e| err(&e))?;
        if text {
            chart
                .configure_mesh()
                .x_desc("bits per pixel (512×512 detector input, log scale)")
                .y_desc(y.desc)
                .x_label_formatter(&|v| tick(*v))
                .y_label_formatter(&|v| format!("{v:.1}"))
                .label_style((FAMILY, 16))
                .axis_desc_style((FAMILY, 18))
                .draw()
                .map_err(|e| err(&e))?;
        } else {
            // plotters' mesh asks the font for metrics even without labels:
            // draw the grid and the frame by hand.
            let grey = RGBColor(220, 220, 220);
            let mut lines: Vec<Vec<(f64, f64)>> = (0..=10)
                .map(|i| {
                    let v = y.lo + (y.hi - y.lo) * i as f64 / 10.0;
                    vec![(lo, v), (hi, v)]
                })
                .collect();
            lines.extend(
                log_ticks(lo, hi)
                    .into_iter()
                    .map(|x| vec![(x, y.lo), (x, y.hi)]),
            );
            chart
                .draw_series(lines.into_iter().map(|l| PathElement::new(l, grey)))
                .map_err(|e| err(&e))?;
            let frame = vec![(lo, 0.0), (hi, 0.0), (hi, 1.05), (lo, 1.05), (lo, 0.0)];
            chart
                .draw_series(std::iter::once(PathElement::new(frame, BLACK)))
                .map_err(|e| err(&e))?;
        }

        for s in &shown {
            let colour = s.colour;
            let line = chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(|e| err(&e))?;
            if text {
                line.label(s.label.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
                });
            }
            chart
                .draw_series(PointSeries::of_element(
                    s.points.iter().copied(),
                    4,
                    colour,
                    &|c, size, style| Circle::new(c, size, style.filled()),
                ))
                .map_err(|e| err(&e))?;
        }
        if text {
            chart
                .configure_series_labels()
                .position(legend_corner(&shown, (lo, hi), y))
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font((FAMILY, 18))
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    RgbImage::from_raw(WIDTH, HEIGHT, buf).ok_or_else(|| anyhow!("plot buffer has the wrong size"))
}

/// Write the plot as PNG; returns whether text (title, axes, legend) was drawn,
/// and the reason when it was not.
pub fn write_png(
    path: &Path,
    title: &str,
    series: &[Series],
    y: YAxis,
) -> Result<Option<&'static str>> {
    let missing = font().err();
    let img = render(title, series, y, missing.is_none())?;
    if img.dimensions() != (WIDTH, HEIGHT) {
        bail!("plot has the wrong size");
    }
    img.save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Vec<Series> {
        vec![
            Series {
                label: "machine".into(),
                points: vec![(0.01, 0.4), (0.03, 0.8), (0.1, 0.95)],
                colour: BLUE,
            },
            Series {
                label: "JPEG".into(),
                points: vec![(0.2, 0.3), (0.5, 0.7), (0.0, 0.9), (1.5, 0.97)],
                colour: RED,
            },
        ]
    }

    fn non_white(img: &RgbImage) -> usize {
        img.pixels().filter(|p| p.0 != [255, 255, 255]).count()
    }

    #[test]
    fn log_ticks_cover_the_decades() {
        let t = log_ticks(0.15, 6.0);
        let want = [0.2, 0.5, 1.0, 2.0, 5.0];
        assert_eq!(t.len(), want.len(), "{t:?}");
        assert!(
            t.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{t:?}"
        );
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.02), "0.02");
        assert_eq!(tick(0.0200000001), "0.02");
        assert_eq!(tick(1.0), "1");
        assert_eq!(tick(0.125), "0.125");
        assert_eq!(tick(20.0), "20");
        assert_eq!(tick(300.0), "300");
    }

    fn curve(points: &[(f64, f64)]) -> Series {
        Series {
            label: "c".into(),
            points: points.to_vec(),
            colour: BLUE,
        }
    }

    #[test]
    fn the_legend_avoids_the_curves() {
        let y = YAxis {
            desc: "q",
            lo: 0.0,
            hi: 1.0,
        };
        let x = (0.1, 10.0);
        // Rising to the right (the machine plot): the lower right is free.
        let rising = [curve(&[(0.15, 0.1), (1.0, 0.6), (8.0, 0.95)])];
        assert!(matches!(
            legend_corner(&rising, x, y),
            SeriesLabelPosition::LowerRight
        ));
        // A flat low curve across the plot and one rising to the upper right
        // (the human plot): only the upper left is free.
        let human = [
            curve(&[(0.3, 0.05), (1.0, 0.1), (9.0, 0.12)]),
            curve(&[(0.3, 0.1), (9.0, 0.95)]),
        ];
        assert!(matches!(
            legend_corner(&human, x, y),
            SeriesLabelPosition::UpperLeft
        ));
        // Segments count, not only points: a line crossing the lower right
        // between two points outside it still rules that corner out.
        let crossing = [curve(&[(0.2, 0.02), (9.5, 0.15)])];
        assert!(!matches!(
            legend_corner(&crossing, x, y),
            SeriesLabelPosition::LowerRight
        ));
    }

    #[test]
    fn draws_without_text() {
        let img = render("t", &series(), YAxis::MAP, false).unwrap();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        // Some blue and some red pixels: both curves are there.
        assert!(img.pixels().any(|p| p.0 == [0, 0, 255]));
        assert!(img.pixels().any(|p| p.0 == [255, 0, 0]));
    }

    #[test]
    fn draws_with_text_when_a_font_exists() {
        match font() {
            Ok(_) => {
                let plain = render("t", &series(), YAxis::MAP, false).unwrap();
                let text = render("RD", &series(), YAxis::MAP, true).unwrap();
                assert!(non_white(&text) > non_white(&plain));
            }
            // Nothing to check without a font; the no-text path is covered above.
            Err(why) => eprintln!("skipping the text rendering check: {why}"),
        }
        // Empty input still renders (default axis range).
        assert!(render("empty", &[], YAxis::MAP, false).is_ok());
    }
}
