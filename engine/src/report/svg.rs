//! Small, dependency-free SVG charts for the run report: a horizontal bar chart, overlaid
//! histograms and line charts. Each returns a complete standalone SVG document.

use std::fmt::Write as _;

const WIDTH: f64 = 720.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn header(svg: &mut String, height: f64, title: &str) {
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
}

/// One bar per label, longest value full width; values printed at the bar ends.
pub fn bar_chart(title: &str, bars: &[(String, f64)]) -> String {
    let row = 18.0;
    let (left, top) = (220.0, 36.0);
    let height = top + row * bars.len().max(1) as f64 + 16.0;
    let mut svg = String::new();
    header(&mut svg, height, title);
    let max = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let scale = if max > 0.0 { (WIDTH - left - 70.0) / max } else { 0.0 };
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = top + row * i as f64;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{left}" y="{}" width="{:.1}" height="{}" fill="{}"/><text x="{:.1}" y="{}">{}</text>"#,
            left - 6.0,
            y + 12.0,
            escape(label),
            y + 2.0,
            value * scale,
            row - 4.0,
            COLORS[0],
            left + value * scale + 4.0,
            y + 12.0,
            format_number(*value)
        );
    }
    if bars.is_empty() {
        let _ = writeln!(svg, r#"<text x="{left}" y="{}">(nothing to show)</text>"#, top + 12.0);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Overlaid histograms of several series over a shared range, `bins` bins.
pub fn histogram(title: &str, series: &[(&str, &[f64])], bins: usize) -> String {
    let values = series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo - 0.5, lo + 0.5)
    } else {
        (0.0, 1.0)
    };
    let bins = bins.max(1);
    let counts: Vec<Vec<usize>> = series
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0usize; bins];
            for &x in v.iter().filter(|x| x.is_finite()) {
                let b = (((x - lo) / (hi - lo)) * bins as f64) as usize;
                c[b.min(bins - 1)] += 1;
            }
            c
        })
        .collect();
    let max = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let (left, right, top, bottom, height) = (50.0, 20.0, 50.0, 40.0, 300.0);
    let plot_w = WIDTH - left - right;
    let plot_h = height - top - bottom;
    let mut svg = String::new();
    header(&mut svg, height, title);
    axes(&mut svg, left, top, plot_w, plot_h, (lo, hi), (0.0, max));
    let bar_w = plot_w / bins as f64;
    for (s, c) in counts.iter().enumerate() {
        for (b, &n) in c.iter().enumerate() {
            let h = n as f64 / max * plot_h;
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.45"/>"#,
                left + bar_w * b as f64,
                top + plot_h - h,
                bar_w,
                h,
                COLORS[s % COLORS.len()]
            );
        }
    }
    legend(&mut svg, series.iter().map(|(name, v)| format!("{name} (n = {})", v.len())));
    svg.push_str("</svg>\n");
    svg
}

/// Line charts of (x, y) series on shared axes.
pub fn line_chart(title: &str, x_label: &str, series: &[(&str, &[(f64, f64)])]) -> String {
    let points = series.iter().flat_map(|(_, p)| p.iter().copied()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut xr, mut yr) = ((f64::INFINITY, f64::NEG_INFINITY), (f64::INFINITY, f64::NEG_INFINITY));
    for (x, y) in points {
        xr = (xr.0.min(x), xr.1.max(x));
        yr = (yr.0.min(y), yr.1.max(y));
    }
    let fix = |(lo, hi): (f64, f64)| {
        if !lo.is_finite() {
            (0.0, 1.0)
        } else if hi > lo {
            (lo, hi)
        } else {
            (lo - 0.5, hi + 0.5)
        }
    };
    let (xr, yr) = (fix(xr), fix(yr));
    let (left, right, top, bottom, height) = (50.0, 20.0, 50.0, 40.0, 300.0);
    let plot_w = WIDTH - left - right;
    let plot_h = height - top - bottom;
    let mut svg = String::new();
    header(&mut svg, height, title);
    axes(&mut svg, left, top, plot_w, plot_h, xr, yr);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        height - 6.0,
        escape(x_label)
    );
    for (s, (_, pts)) in series.iter().enumerate() {
        let path: Vec<String> = pts
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    left + (x - xr.0) / (xr.1 - xr.0) * plot_w,
                    top + plot_h - (y - yr.0) / (yr.1 - yr.0) * plot_h
                )
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
            path.join(" "),
            COLORS[s % COLORS.len()]
        );
    }
    legend(&mut svg, series.iter().map(|(name, _)| name.to_string()));
    svg.push_str("</svg>\n");
    svg
}

fn axes(svg: &mut String, left: f64, top: f64, w: f64, h: f64, x: (f64, f64), y: (f64, f64)) {
    let _ = writeln!(svg, r##"<path d="M{left},{top} V{} H{}" fill="none" stroke="#333"/>"##, top + h, left + w);
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left + f * w,
            top + h + 14.0,
            format_number(x.0 + f * (x.1 - x.0)),
            left - 4.0,
            top + h - f * h + 4.0,
            format_number(y.0 + f * (y.1 - y.0))
        );
    }
}

fn legend(svg: &mut String, names: impl Iterator<Item = String>) {
    for (i, name) in names.enumerate() {
        let x = 60.0 + 200.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="30" width="10" height="10" fill="{}"/><text x="{}" y="39">{}</text>"#,
            COLORS[i % COLORS.len()],
            x + 14.0,
            escape(&name)
        );
    }
}

fn format_number(v: f64) -> String {
    if (v == v.trunc() && v.abs() < 1e6) || v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_chart_scales_to_the_longest_bar_and_escapes_labels() {
        let svg = bar_chart("usage", &[("a<b".into(), 10.0), ("c".into(), 5.0)]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a&lt;b"));
        // Full width is WIDTH - 220 - 70 = 430; half of it for the second bar.
        assert!(svg.contains(r#"width="430.0""#) && svg.contains(r#"width="215.0""#), "{svg}");
    }

    #[test]
    fn histogram_counts_every_finite_value_once() {
        let a = [0.0, 0.1, 0.9, 1.0, f64::NAN];
        let svg = histogram("scores", &[("chosen", &a)], 2);
        // Bins [0, 0.5) and [0.5, 1]: two values each, so both bars are full height (210).
        assert_eq!(svg.matches(r#"height="210.0""#).count(), 2, "{svg}");
        assert!(svg.contains("chosen (n = 5)"));
    }

    #[test]
    fn line_chart_maps_the_range_onto_the_plot() {
        let svg = line_chart("loss", "step", &[("train", &[(0.0, 1.0), (10.0, 0.0)])]);
        assert!(svg.contains(r#"points="50.0,50.0 700.0,260.0""#), "{svg}");
    }
}
