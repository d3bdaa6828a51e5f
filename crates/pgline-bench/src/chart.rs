//! The picture of a run: a hand-written SVG with, for every scenario, the
//! throughput and the p99 latency against concurrency, one line per pool.
//!
//! Concurrency is on a log₂ axis; throughput on a linear axis from 0, p99 on
//! a log₁₀ axis. A contender measured at one concurrency only (pgbench with
//! its 20 clients) is a single marked point.

use std::fmt::Write as _;

use crate::report::Record;

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 250.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 45.0;
const GAP: f64 = 30.0;
const HEADER: f64 = 50.0;
const LEGEND_W: f64 = 130.0;

/// Colour and dash pattern of each contender (stable across runs).
fn style(pool: &str) -> (&'static str, &'static str) {
    match pool {
        "pgline" => ("#d62728", ""),
        "pgline-sync" => ("#ff7f0e", ""),
        "deadpool" => ("#1f77b4", ""),
        "bb8" => ("#2ca02c", ""),
        "r2d2" => ("#9467bd", ""),
        "raw" => ("#7f7f7f", "6 3"),
        "pgbench" => ("#000000", "2 3"),
        _ => ("#8c564b", "4 2"),
    }
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Human-readable tick labels: 1.2k, 35k, 1.5M; µs as 850 µs, 12 ms, 1.2 s.
fn fmt_ops(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_us(v: f64) -> String {
    if v >= 1e6 {
        format!("{} s", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{} ms", trim(v / 1e3))
    } else {
        format!("{} µs", trim(v))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// One panel's data: per pool, points (concurrency, value).
struct Series<'a> {
    pool: &'a str,
    points: Vec<(f64, f64)>,
}

enum Scale {
    /// Linear from 0 to the rounded-up maximum.
    Linear,
    /// Log₁₀ between powers of ten around the data.
    Log,
}

struct Panel<'a> {
    title: String,
    series: Vec<Series<'a>>,
    scale: Scale,
    fmt: fn(f64) -> String,
}

/// The SVG for `records`; scenarios in the order they first appear.
pub fn svg(records: &[Record], title: &str) -> String {
    let mut scenarios: Vec<&str> = Vec::new();
    for r in records {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    let mut pools: Vec<&str> = Vec::new();
    for r in records {
        if !pools.contains(&r.pool.as_str()) {
            pools.push(&r.pool);
        }
    }
    let width = LEFT + 2.0 * PANEL_W + GAP + RIGHT + LEGEND_W;
    let row_h = PANEL_H + TOP + BOTTOM;
    let height = HEADER + row_h * scenarios.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="28" font-size="16" font-weight="bold">{}</text>"#,
        esc(title)
    );
    // Legend.
    let lx = LEFT + 2.0 * PANEL_W + GAP + RIGHT - 10.0;
    for (i, pool) in pools.iter().enumerate() {
        let y = HEADER + TOP + 18.0 * i as f64;
        let (color, dash) = style(pool);
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2.5" stroke-dasharray="{dash}"/><circle cx="{}" cy="{y}" r="3" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            lx + 28.0,
            lx + 14.0,
            lx + 34.0,
            y + 4.0,
            esc(pool)
        );
    }
    for (row, scenario) in scenarios.iter().enumerate() {
        let rows: Vec<&Record> = records.iter().filter(|r| r.scenario == *scenario).collect();
        let series = |value: fn(&Record) -> Option<f64>| -> Vec<Series<'_>> {
            pools
                .iter()
                .filter_map(|pool| {
                    let mut points: Vec<(f64, f64)> = rows
                        .iter()
                        .filter(|r| r.pool == *pool)
                        .filter_map(|r| value(r).map(|v| (f64::from(r.concurrency), v)))
                        .filter(|&(_, v)| v.is_finite() && v > 0.0)
                        .collect();
                    points.sort_by(|a, b| a.0.total_cmp(&b.0));
                    (!points.is_empty()).then_some(Series { pool, points })
                })
                .collect()
        };
        let y0 = HEADER + row_h * row as f64;
        let panels = [
            Panel {
                title: format!("{scenario}: throughput (ops/s)"),
                series: series(|r| Some(r.ops_per_sec)),
                scale: Scale::Linear,
                fmt: fmt_ops,
            },
            Panel {
                title: format!("{scenario}: p99 latency"),
                series: series(|r| r.p99_us),
                scale: Scale::Log,
                fmt: fmt_us,
            },
        ];
        for (col, panel) in panels.iter().enumerate() {
            let x0 = LEFT + (PANEL_W + GAP) * col as f64;
            draw_panel(&mut out, panel, x0, y0 + TOP);
        }
    }
    out.push_str("</svg>\n");
    out
}

fn draw_panel(out: &mut String, panel: &Panel<'_>, x0: f64, y0: f64) {
    let (w, h) = (PANEL_W - LEFT + 20.0, PANEL_H);
    let _ = writeln!(
        out,
        r##"<text x="{x0}" y="{}" font-weight="bold">{}</text><rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>"##,
        y0 - 8.0,
        esc(&panel.title)
    );
    let all: Vec<(f64, f64)> = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if all.is_empty() {
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" fill="#999">no data</text>"##,
            x0 + 10.0,
            y0 + 20.0
        );
        return;
    }
    // x: log2 of concurrency, padded by half an octave.
    let (mut cmin, mut cmax) = all.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &(c, _)| {
        (lo.min(c), hi.max(c))
    });
    cmin = cmin.max(1.0).log2() - 0.5;
    cmax = cmax.max(1.0).log2() + 0.5;
    let xpos = |c: f64| x0 + (c.max(1.0).log2() - cmin) / (cmax - cmin) * w;
    let vmax = all.iter().fold(f64::MIN, |m, &(_, v)| m.max(v));
    let vmin = all.iter().fold(f64::MAX, |m, &(_, v)| m.min(v));
    let (lo, hi, ticks): (f64, f64, Vec<f64>) = match panel.scale {
        Scale::Linear => {
            let step = nice_step(vmax / 4.0);
            let top = (vmax / step).ceil() * step;
            let ticks = (0..=((top / step).round() as usize))
                .map(|i| i as f64 * step)
                .collect();
            (0.0, top.max(step), ticks)
        }
        Scale::Log => {
            let lo = vmin.log10().floor();
            let hi = vmax.log10().ceil().max(lo + 1.0);
            let ticks = ((lo as i32)..=(hi as i32)).map(|e| 10f64.powi(e)).collect();
            (lo, hi, ticks)
        }
    };
    let ypos = |v: f64| match panel.scale {
        Scale::Linear => y0 + h - (v - lo) / (hi - lo) * h,
        Scale::Log => y0 + h - (v.max(1e-9).log10() - lo) / (hi - lo) * h,
    };
    for t in &ticks {
        let y = ypos(*t);
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            x0 + w,
            x0 - 6.0,
            y + 4.0,
            esc(&(panel.fmt)(*t))
        );
    }
    let mut concurrencies: Vec<f64> = all.iter().map(|&(c, _)| c).collect();
    concurrencies.sort_by(f64::total_cmp);
    concurrencies.dedup();
    for c in concurrencies {
        let x = xpos(c);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{:.1}" stroke="#f3f3f3"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#555">{c}</text>"##,
            y0 + h,
            y0 + h + 16.0
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">concurrency (tasks, threads or pgbench clients; log scale)</text>"##,
        x0 + w / 2.0,
        y0 + h + 34.0
    );
    for s in &panel.series {
        let (color, dash) = style(s.pool);
        if s.points.len() > 1 {
            let path: Vec<String> = s
                .points
                .iter()
                .map(|&(c, v)| format!("{:.1},{:.1}", xpos(c), ypos(v)))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2.5" stroke-dasharray="{dash}"/>"#,
                path.join(" ")
            );
        }
        for &(c, v) in &s.points {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"><title>{} c={c}: {}</title></circle>"#,
                xpos(c),
                ypos(v),
                esc(s.pool),
                esc(&(panel.fmt)(v))
            );
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(scenario: &str, pool: &str, c: u32, ops: f64, p99: f64) -> Record {
        Record {
            scenario: scenario.into(),
            pool: pool.into(),
            pool_size: 20,
            concurrency: c,
            ops_per_sec: ops,
            p50_us: Some(p99 / 2.0),
            p99_us: Some(p99),
            ..Record::default()
        }
    }

    #[test]
    fn draws_a_line_per_pool_and_a_point_for_pgbench() {
        let records = [
            rec("checkout_select1", "pgline", 8, 20_000.0, 900.0),
            rec("checkout_select1", "pgline", 64, 25_000.0, 9_000.0),
            rec("checkout_select1", "deadpool", 8, 19_000.0, 1_000.0),
            rec("checkout_select1", "deadpool", 64, 24_000.0, 12_000.0),
            rec("checkout_select1", "pgbench", 20, 22_000.0, 2_000.0),
            rec("waiters_10k", "pgline", 10_000, 900_000.0, 30_000.0),
        ];
        let svg = svg(&records, "run <test>");
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        // Two polylines (throughput, p99) for each of pgline and deadpool in
        // the first scenario; single points elsewhere.
        assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
        assert!(svg.contains("pgbench c=20"), "{svg}");
        assert!(svg.contains("run &lt;test&gt;"));
        assert!(svg.contains("waiters_10k: p99 latency"));
    }

    #[test]
    fn ticks_are_readable() {
        assert_eq!(nice_step(3_700.0), 5_000.0);
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(fmt_ops(25_000.0), "25k");
        assert_eq!(fmt_us(12_000.0), "12 ms");
        assert_eq!(fmt_us(850.0), "850 µs");
    }
}
