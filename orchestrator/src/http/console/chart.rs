//! The overview's two charts as inline SVG: sagas ended per second (completed and compensated,
//! stacked) and their latency (p50 and p99), one bar or point per 10-second bucket. Drawn on
//! the server, so the page needs no chart library.

use maud::{html, Markup, PreEscaped};
use sagaflow_api::Bucket;

const WIDTH: f64 = 600.0;
const BUCKET_SECONDS: f64 = 10.0;

pub fn throughput(buckets: &[Bucket]) -> Markup {
    let height = 120.0;
    let rate = |n: u64| n as f64 / BUCKET_SECONDS;
    let top = buckets.iter().map(|b| rate(b.completed + b.compensated)).fold(0.0, f64::max).max(1.0);
    let slot = WIDTH / buckets.len().max(1) as f64;
    let mut bars = String::new();
    for (i, b) in buckets.iter().enumerate() {
        let x = i as f64 * slot;
        let done = rate(b.completed) / top * height;
        let undone = rate(b.compensated) / top * height;
        if b.completed + b.compensated == 0 {
            continue;
        }
        bars += &format!(
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{done:.1}" fill="#1f8a4c"><title>{:.1}/s completed</title></rect>"##,
            height - done,
            (slot - 1.0).max(1.0),
            rate(b.completed)
        );
        bars += &format!(
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{undone:.1}" fill="#b26a00"><title>{:.1}/s compensated</title></rect>"##,
            height - done - undone,
            (slot - 1.0).max(1.0),
            rate(b.compensated)
        );
    }
    let now = buckets.last().map(|b| rate(b.completed + b.compensated)).unwrap_or(0.0);
    html! {
        div.chart {
            svg viewBox=(format!("0 0 {WIDTH} {}", height + 14.0)) role="img" aria-label="sagas ended per second" {
                (PreEscaped(bars))
                line x1="0" y1=(height) x2=(WIDTH) y2=(height) stroke="#e2e5eb" {}
                text x="0" y=(height + 12.0) font-size="10" fill="#6b7385" { "10 min ago" }
                text x=(WIDTH) y=(height + 12.0) font-size="10" fill="#6b7385" text-anchor="end" { "now" }
                text x="2" y="10" font-size="10" fill="#6b7385" { (format!("{top:.0}/s")) }
            }
            div.legend { span.c { "completed" } " " span.x { "compensated" } " · last 10 s: " (format!("{now:.1}")) "/s" }
        }
    }
}

pub fn latency(buckets: &[Bucket]) -> Markup {
    let height = 90.0;
    let top = buckets.iter().filter_map(|b| b.p99_ms).max().unwrap_or(1).max(1) as f64;
    let slot = WIDTH / buckets.len().max(1) as f64;
    // Where each bucket's value sits: (x, y, milliseconds), for the buckets that have one.
    let points = |pick: fn(&Bucket) -> Option<u64>| {
        buckets.iter().enumerate().filter_map(move |(i, b)| {
            let ms = pick(b)?;
            Some((i as f64 * slot + slot / 2.0, height - ms as f64 / top * height, ms))
        })
    };
    let line = |pick| points(pick).map(|(x, y, _)| format!("{x:.1},{y:.1}")).collect::<Vec<_>>().join(" ");
    // Dots as well as lines: a single busy bucket is a point, which a line would not show.
    let dots = |pick, colour: &str| {
        points(pick)
            .map(|(x, y, ms)| {
                format!(r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{colour}"><title>{ms} ms</title></circle>"#)
            })
            .collect::<String>()
    };
    let last = buckets.iter().rev().find(|b| b.p50_ms.is_some());
    html! {
        div.chart {
            svg viewBox=(format!("0 0 {WIDTH} {}", height + 14.0)) role="img" aria-label="saga latency" {
                polyline points=(line(|b| b.p99_ms)) fill="none" stroke="#c0392b" stroke-width="1.5" {}
                polyline points=(line(|b| b.p50_ms)) fill="none" stroke="#3056d3" stroke-width="1.5" {}
                (PreEscaped(dots(|b| b.p99_ms, "#c0392b")))
                (PreEscaped(dots(|b| b.p50_ms, "#3056d3")))
                line x1="0" y1=(height) x2=(WIDTH) y2=(height) stroke="#e2e5eb" {}
                text x="2" y="10" font-size="10" fill="#6b7385" { (format!("{top:.0} ms")) }
                text x="0" y=(height + 12.0) font-size="10" fill="#6b7385" { "10 min ago" }
                text x=(WIDTH) y=(height + 12.0) font-size="10" fill="#6b7385" text-anchor="end" { "now" }
            }
            div.legend {
                span.p50 { "p50" } " " span.p99 { "p99" } " placed → ended"
                @if let Some(b) = last {
                    " · latest: p50 " (b.p50_ms.unwrap_or(0)) " ms, p99 " (b.p99_ms.unwrap_or(0)) " ms"
                }
            }
        }
    }
}
