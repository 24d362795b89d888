//! PNG plots of a suite run, drawn with plotters. Text needs a TrueType
//! font, read at run time so nothing binary lives in the repository.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::BoxError;
use crate::readers::Mode;
use crate::report::Suite;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Registers a sans-serif font once per process.
fn font() -> Result<(), BoxError> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let from_env = std::env::var("QUIVER_BENCH_FONT").ok();
            let candidates = from_env
                .iter()
                .map(String::as_str)
                .chain(FONT_PATHS.iter().copied());
            for path in candidates {
                let Ok(bytes) = std::fs::read(path) else {
                    continue;
                };
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                return plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                    .map_err(|_| format!("{path} is not a usable TrueType font"));
            }
            Err("no TrueType font for the plots: install fonts-dejavu-core \
                 or set QUIVER_BENCH_FONT to a .ttf file"
                .to_string())
        })
        .clone()
        .map_err(Into::into)
}

/// One bar: its height and, optionally, a whisker drawn up to a higher
/// value (a tail percentile).
#[derive(Debug, Clone, Copy)]
pub struct Bar {
    pub value: f64,
    pub whisker: Option<f64>,
}

pub struct Series {
    pub label: String,
    pub bars: Vec<Option<Bar>>,
}

/// A grouped bar chart on a log scale: one group per case, one colour per
/// series, since the cases span orders of magnitude.
pub fn grouped_bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[Series],
) -> Result<(), BoxError> {
    font()?;
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.bars.iter().flatten())
        .flat_map(|b| std::iter::once(b.value).chain(b.whisker))
        .filter(|v| *v > 0.0 && v.is_finite())
        .collect();
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    if values.is_empty() || groups.is_empty() {
        return Err(format!("nothing to plot for {title}").into());
    }
    let floor = min / 2.0;
    let width = 260 + 170 * groups.len() as u32;
    let root = BitMapBackend::new(path, (width.max(900), 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(70)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..groups.len() as f64, (floor..max * 3.0).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .y_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
        .label_style(("sans-serif", 16))
        .draw()?;

    let slots = series.len() as f64 + 1.0;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let rects = s.bars.iter().enumerate().filter_map(|(g, bar)| {
            let bar = (*bar)?;
            let x0 = g as f64 + (i as f64 + 0.5) / slots;
            Some(Rectangle::new(
                [(x0, floor), (x0 + 1.0 / slots, bar.value.max(floor))],
                color.filled(),
            ))
        });
        chart
            .draw_series(rects)?
            .label(s.label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        let whiskers = s.bars.iter().enumerate().filter_map(|(g, bar)| {
            let bar = (*bar)?;
            let top = bar.whisker?;
            let x = g as f64 + (i as f64 + 1.0) / slots;
            Some(PathElement::new(
                vec![(x, bar.value.max(floor)), (x, top.max(floor))],
                BLACK.stroke_width(2),
            ))
        });
        chart.draw_series(whiskers)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    // Group names go under the middle of each group.
    let style = TextStyle::from(("sans-serif", 16).into_font()).pos(
        plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Top,
        ),
    );
    for (g, name) in groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, floor));
        root.draw(&Text::new(name.clone(), (x, y + 10), style.clone()))?;
    }
    root.present()?;
    Ok(())
}

/// Writes the suite's plots into `dir`; returns (file name, title) pairs.
pub fn suite(dir: &Path, suite: &Suite) -> Result<Vec<(String, String)>, BoxError> {
    let mut written = Vec::new();
    let latency = |workload: &str| -> Vec<Series> {
        let cases = suite.cases(workload);
        Mode::ALL
            .iter()
            .map(|&mode| Series {
                label: mode.label().into(),
                bars: cases
                    .iter()
                    .map(|c| {
                        suite.get(workload, c, mode).map(|m| Bar {
                            value: m.latency_ms.p50,
                            whisker: Some(m.latency_ms.p99),
                        })
                    })
                    .collect(),
            })
            .collect()
    };
    for (workload, file, title) in [
        (
            "trace",
            "trace-latency.png",
            "ISTZIIO traces: latency by mode (bar p50, whisker p99)",
        ),
        (
            "pushdown",
            "pushdown-latency.png",
            "Pushdown: latency by selectivity and mode (bar p50, whisker p99)",
        ),
    ] {
        if suite.cases(workload).is_empty() {
            continue;
        }
        grouped_bars(
            &dir.join(file),
            title,
            "latency (ms, log)",
            &suite.cases(workload),
            &latency(workload),
        )?;
        written.push((file.to_string(), title.to_string()));
    }
    let cases = suite.cases("pushdown");
    if !cases.is_empty() {
        let file = "pushdown-bytes.png";
        let title = "Pushdown: bytes to the client per request by selectivity";
        let series: Vec<Series> = [Mode::Direct, Mode::Datafusion, Mode::QuiverWarm]
            .iter()
            .map(|&mode| Series {
                label: mode.label().into(),
                bars: cases
                    .iter()
                    .map(|c| {
                        suite.get("pushdown", c, mode).map(|m| Bar {
                            value: m.bytes_to_client as f64
                                / m.requests.max(1) as f64
                                / (1u64 << 20) as f64,
                            whisker: None,
                        })
                    })
                    .collect(),
            })
            .collect();
        grouped_bars(
            &dir.join(file),
            title,
            "MiB per request (log)",
            &cases,
            &series,
        )?;
        written.push((file.to_string(), title.to_string()));
    }
    Ok(written)
}

/// A line chart with a log-scale x axis: one line per series of (x, y)
/// points, such as a miss-ratio curve per eviction policy.
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<(), BoxError> {
    font()?;
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .filter(|(x, y)| *x > 0.0 && x.is_finite() && y.is_finite())
        .collect();
    if points.is_empty() {
        return Err(format!("nothing to plot for {title}").into());
    }
    let x_min = points.iter().map(|p| p.0).fold(f64::MAX, f64::min);
    let x_max = points.iter().map(|p| p.0).fold(f64::MIN, f64::max);
    let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let root = BitMapBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(90)
        .build_cartesian_2d(
            (x_min / 1.5..x_max * 1.5).log_scale(),
            0f64..(y_max * 1.1).max(1e-6),
        )?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(6)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.2}"))
        .label_style(("sans-serif", 16))
        .draw()?;
    for (i, (label, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(3)))?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
