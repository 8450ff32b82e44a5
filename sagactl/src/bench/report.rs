//! The bench's output: the targets, a table for the terminal (and `report.txt`), and an SVG
//! plot of latency against throughput for both designs.

use std::fmt::Write;

use serde::Serialize;

use super::{Design, Report, Stored};
use crate::bench::ceiling::Ceiling;

/// One target of the issue, met or not, with the number.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub name: String,
    pub goal: String,
    pub measured: String,
    /// `None` when this run did not measure it (a smoke run has no 1M store).
    pub met: Option<bool>,
}

pub fn targets(ceiling: &Ceiling, saga: &Design, stored: &[Stored], smoke: bool) -> Vec<Target> {
    let peak = saga.peak.completed_per_sec;
    let ratio = peak * super::MESSAGES_PER_SAGA / ceiling.messages_per_sec.max(1.0);
    let half = saga.open_loop.get(1).map(|r| r.latency_ms.p99).unwrap_or(f64::NAN);
    let empty = stored.iter().find(|s| s.stored_sagas == 0);
    let million = stored.iter().find(|s| s.stored_sagas == 1_000_000);
    let mut t = vec![
        Target {
            name: "throughput".into(),
            goal: ">= 1000 completed sagas/s".into(),
            measured: format!("{peak:.0} sagas/s"),
            met: Some(peak >= 1000.0),
        },
        Target {
            name: "share of the broker ceiling".into(),
            goal: ">= 0.40".into(),
            measured: format!(
                "{ratio:.2} ({peak:.0} x {} / {:.0})",
                super::MESSAGES_PER_SAGA,
                ceiling.messages_per_sec
            ),
            met: Some(ratio >= 0.4),
        },
        Target {
            name: "p99 at half of peak".into(),
            goal: "<= 50 ms".into(),
            measured: format!("{half} ms"),
            met: Some(half <= 50.0),
        },
        Target {
            name: "recovery with 1M sagas stored".into(),
            goal: "< 2 s".into(),
            measured: million
                .map(|m| format!("{:.2} s", m.recovery_secs))
                .unwrap_or_else(|| "not measured".into()),
            met: million.map(|m| m.recovery_secs < 2.0),
        },
        Target {
            name: "throughput with 1M stored vs empty".into(),
            goal: ">= 80 % of empty".into(),
            measured: match (million, empty) {
                (Some(m), Some(e)) => format!(
                    "{:.0} % ({:.0} vs {:.0} sagas/s)",
                    100.0 * m.completed_per_sec / e.completed_per_sec.max(1.0),
                    m.completed_per_sec,
                    e.completed_per_sec
                ),
                _ => "not measured".into(),
            },
            met: match (million, empty) {
                (Some(m), Some(e)) => Some(m.completed_per_sec >= 0.8 * e.completed_per_sec),
                _ => None,
            },
        },
    ];
    if smoke {
        for target in &mut t {
            target.measured.push_str(" (smoke run: not a measurement)");
        }
    }
    t
}

pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(
        s,
        "sagaflow bench{}",
        if r.smoke { " (SMOKE: tiny runs, numbers mean nothing)" } else { "" }
    );
    let _ = writeln!(
        s,
        "machine: {} cores, {} GiB, {}; Linux {}; {}; {} build; {}",
        m.cores, m.memory_gib, m.cpu, m.kernel, m.broker, m.build, m.date
    );
    let _ = writeln!(s, "command: {}\n", r.command);

    let c = &r.ceiling;
    let _ = writeln!(
        s,
        "BROKER CEILING ({} persistent messages of {} B, {} quorum queues, confirms + acks)",
        c.messages, c.message_bytes, c.queues
    );
    let _ = writeln!(
        s,
        "  publish {:.0}/s   consume {:.0}/s   carried (publish then consume) {:.0} messages/s\n",
        c.publish_per_sec, c.consume_per_sec, c.messages_per_sec
    );

    let _ = writeln!(s, "LATENCY AND THROUGHPUT (end to end: POST to terminal event; chain: POST to answer)");
    let _ = writeln!(
        s,
        "  {:<11} {:<22} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}  not completed",
        "design", "load", "offered", "done/s", "p50 ms", "p90 ms", "p99 ms", "p99.9", "max ms",
    );
    for (name, d) in [("saga", &r.saga), ("REST chain", &r.rest_chain)] {
        for l in std::iter::once(&d.peak).chain(&d.open_loop) {
            let e = &l.endings;
            let _ = writeln!(
                s,
                "  {:<11} {:<22} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}  {}",
                name,
                l.label,
                l.offered,
                l.completed_per_sec,
                l.latency_ms.p50,
                l.latency_ms.p90,
                l.latency_ms.p99,
                l.latency_ms.p999,
                l.latency_ms.max,
                if e.refused + e.failed + e.lost == 0 {
                    "-".to_owned()
                } else {
                    format!("{} refused, {} failed, {} lost", e.refused, e.failed, e.lost)
                }
            );
        }
    }

    let _ = writeln!(s, "\nCPU (% of one core) AND MAX RSS (MiB) PER PROCESS");
    for (name, d) in [("saga", &r.saga), ("REST chain", &r.rest_chain)] {
        for l in std::iter::once(&d.peak).chain(&d.open_loop) {
            let procs: Vec<String> = l
                .processes
                .iter()
                .map(|(p, u)| format!("{p} {:.0}% {:.0}M", u.cpu_percent, u.max_rss_mib))
                .collect();
            let _ = writeln!(s, "  {:<11} {:<22} {}", name, l.label, procs.join(" | "));
        }
    }

    let _ = writeln!(
        s,
        "\nPAYMENT DOWN UNDER LOAD (SIGKILL, restarted after the pause; same offered rate for both)"
    );
    let _ = writeln!(
        s,
        "  {:<11} {:>7} {:>8} {:>8} {:>10} {:>8} {:>8} {:>12} {:>12}",
        "design", "rate/s", "placed", "done", "failed", "lost", "delayed", "max lat ms", "recovery s"
    );
    for (name, d) in [("saga", &r.saga), ("REST chain", &r.rest_chain)] {
        let o = &d.payment_outage;
        let _ = writeln!(
            s,
            "  {:<11} {:>7} {:>8} {:>8} {:>10} {:>8} {:>8} {:>12} {:>12}",
            name,
            o.rate,
            o.placed,
            o.endings.completed,
            o.endings.failed + o.endings.refused,
            o.endings.lost,
            o.delayed,
            o.max_latency_ms,
            o.recovery_secs
        );
    }
    let _ = writeln!(s, "  (Payment was down {:.1} s in the saga run and {:.1} s in the chain run; delayed = completed after more than 1 s)", r.saga.payment_outage.payment_down_secs, r.rest_chain.payment_outage.payment_down_secs);

    let _ = writeln!(s, "\nCOST AS WORK GROWS (finished sagas already in the store)");
    let _ = writeln!(
        s,
        "  {:>10} {:>9} {:>12} {:>9} {:>14} {:>14} {:>12} {:>10}",
        "stored", "fill s", "recovery s", "done/s", "orch. RSS MiB", "svc RSS MiB", "store MB", "B/saga"
    );
    for st in &r.stored {
        let _ = writeln!(
            s,
            "  {:>10} {:>9} {:>12} {:>9} {:>14} {:>14} {:>12.1} {:>10}",
            st.stored_sagas,
            st.fill_secs,
            st.recovery_secs,
            st.completed_per_sec,
            st.orchestrator_rss_mib,
            st.services_rss_mib,
            st.store_bytes as f64 / 1e6,
            st.bytes_per_saga
        );
    }
    let rt = &r.retention;
    let _ = writeln!(
        s,
        "\nRETENTION ({} s window, {} s of load, {} sagas completed): store max {:.1} MB in the first half, {:.1} MB in the second: {}",
        rt.retain_secs,
        rt.run_secs,
        rt.completed,
        rt.max_bytes_first_half as f64 / 1e6,
        rt.max_bytes_second_half as f64 / 1e6,
        if rt.run_secs < 6 * rt.retain_secs {
            "too short a run to judge"
        } else if rt.bounded {
            "bounded"
        } else {
            "STILL GROWING"
        }
    );
    if rt.without_retention_bytes > 0 {
        let _ = writeln!(
            s,
            "  (without retention those sagas would take about {:.1} MB)",
            rt.without_retention_bytes as f64 / 1e6
        );
    }

    let _ = writeln!(s, "\nTARGETS");
    for t in &r.targets {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "not measured",
        };
        let _ = writeln!(s, "  {:<13} {:<36} goal {:<18} measured {}", verdict, t.name, t.goal, t.measured);
    }
    s
}

/// Latency (p50 and p99, log scale) against completed sagas per second, one line per design
/// and percentile, through the open-loop points and the peak.
pub fn svg(r: &Report) -> String {
    let (w, h, left, right, top, bottom) = (760.0, 460.0, 70.0, 20.0, 40.0, 50.0);
    // (design, colour, percentile, points)
    type Series<'a> = (&'a str, &'a str, &'a str, Vec<(f64, f64)>);
    let series: Vec<Series> = [("saga", "#1f77b4", &r.saga), ("REST chain", "#d62728", &r.rest_chain)]
        .into_iter()
        .flat_map(|(name, color, d)| {
            let points = |pick: fn(&super::LoadResult) -> f64| -> Vec<(f64, f64)> {
                let mut p: Vec<(f64, f64)> = d
                    .open_loop
                    .iter()
                    .chain(std::iter::once(&d.peak))
                    .map(|l| (l.completed_per_sec, pick(l).max(0.1)))
                    .collect();
                p.sort_by(|a, b| a.0.total_cmp(&b.0));
                p
            };
            [
                (name, color, "p50", points(|l| l.latency_ms.p50)),
                (name, color, "p99", points(|l| l.latency_ms.p99)),
            ]
        })
        .collect();
    let max_x = series.iter().flat_map(|s| s.3.iter().map(|p| p.0)).fold(1.0, f64::max) * 1.1;
    let (min_ms, max_ms) = series
        .iter()
        .flat_map(|s| s.3.iter().map(|p| p.1))
        .fold((f64::MAX, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = (min_ms.min(1.0).log10().floor(), max_ms.log10().ceil().max(1.0));
    let x = |v: f64| left + (w - left - right) * v / max_x;
    let y = |ms: f64| top + (h - top - bottom) * (1.0 - (ms.log10() - lo) / (hi - lo));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">Latency against throughput: sagaflow saga vs REST chain ({} cores)</text>"#,
        w / 2.0,
        r.machine.cores
    );
    let mut decade = lo;
    while decade <= hi {
        let ms = 10f64.powf(decade);
        let (x2, gy, tx, ty) = (w - right, y(ms), left - 6.0, y(ms) + 4.0);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{x2}" y1="{gy}" y2="{gy}" stroke="#ddd"/><text x="{tx}" y="{ty}" text-anchor="end">{ms} ms</text>"##
        );
        decade += 1.0;
    }
    for i in 0..=5 {
        let v = max_x * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{0}" x2="{0}" y1="{top}" y2="{1}" stroke="#eee"/><text x="{0}" y="{2}" text-anchor="middle">{3:.0}</text>"##,
            x(v),
            h - bottom,
            h - bottom + 18.0,
            v
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">completed orders per second</text>"#,
        (left + w - right) / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {0})" text-anchor="middle">end-to-end latency (log)</text>"#,
        (top + h - bottom) / 2.0
    );
    for (i, (name, color, pct, points)) in series.iter().enumerate() {
        let path: Vec<String> =
            points.iter().map(|(vx, vy)| format!("{:.1},{:.1}", x(*vx), y(*vy))).collect();
        let dash = if *pct == "p99" { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
            path.join(" ")
        );
        for (vx, vy) in points {
            let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, x(*vx), y(*vy));
        }
        let ly = top + 16.0 * i as f64 + 8.0;
        let _ = writeln!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{name} {pct}</text>"#,
            w - 190.0,
            w - 160.0,
            w - 154.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}
