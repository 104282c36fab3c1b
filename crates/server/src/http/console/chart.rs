//! Charts: SVG drawn here, escaped by the template like everything else.

use askama::Template;

use super::Usd;

pub struct Bar {
    class: &'static str,
    x: String,
    y: String,
    w: String,
    h: String,
    title: String,
}

#[derive(Template)]
#[template(path = "admin/chart.svg", escape = "html")]
pub struct Chart {
    label: String,
    width: i64,
    height: i64,
    left: i64,
    top: i64,
    bottom: i64,
    max_label: String,
    bars: Vec<Bar>,
    ticks: Vec<(String, String)>,
}

/// A bar chart of one or two series over days.
pub fn chart(label: &str, days: &[String], series: &[(&'static str, &str, Vec<i64>)], money: bool) -> String {
    let (width, height, left, top, bottom) = (900i64, 240i64, 64i64, 12i64, 214i64);
    let max = series.iter().flat_map(|(_, _, v)| v.iter().copied()).max().unwrap_or(0).max(1);
    let slot = (width - left) as f64 / days.len().max(1) as f64;
    let bar_w = (slot * 0.8) / series.len().max(1) as f64;
    let plot_h = (bottom - top) as f64;
    let fmt = |v: i64| if money { v.usd() } else { v.to_string() };
    let mut bars = Vec::new();
    for (i, day) in days.iter().enumerate() {
        for (j, (class, name, values)) in series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0).max(0);
            let h = plot_h * v as f64 / max as f64;
            bars.push(Bar {
                class,
                x: format!("{:.1}", left as f64 + slot * i as f64 + slot * 0.1 + bar_w * j as f64),
                y: format!("{:.1}", bottom as f64 - h),
                w: format!("{:.1}", bar_w.max(1.0)),
                h: format!("{:.1}", h),
                title: format!("{day}: {} {name}", fmt(v)),
            });
        }
    }
    let ticks = days
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 == 0 || *i == days.len() - 1)
        .map(|(i, d)| (format!("{:.1}", left as f64 + slot * (i as f64 + 0.5)), d.get(5..).unwrap_or(d).to_string()))
        .collect();
    let c = Chart { label: label.to_string(), width, height, left, top, bottom, max_label: fmt(max), bars, ticks };
    c.render().unwrap_or_default()
}
