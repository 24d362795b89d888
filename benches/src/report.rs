//! What a run leaves behind. Every workload prints its Markdown summary
//! and writes it beside a JSON document of its numbers ([`write`]); the
//! suite's results are one JSON document with every measurement, and a
//! Markdown summary that puts each mode beside DataFusion over S3, the
//! strongest baseline of the same case ([`Suite`]).

use std::path::Path;

use quiver_testkit::link::LinkConfig;
use serde::{Deserialize, Serialize};

use crate::error::BoxError;
use crate::measure::Measurement;
use crate::readers::Mode;

/// Prints a workload's Markdown and writes `NAME.json` and `NAME.md` into
/// `out`.
pub fn write<T: Serialize>(out: &Path, name: &str, report: &T, md: String) -> Result<(), BoxError> {
    println!("{md}");
    std::fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_vec_pretty(report)?,
    )?;
    std::fs::write(out.join(format!("{name}.md")), md)?;
    Ok(())
}

/// The link a report's numbers were measured over, in words: the emulated
/// link, real S3 at `s3`, or neither.
pub fn describe_link(link: Option<LinkConfig>, s3: Option<&str>) -> String {
    match (link, s3) {
        (Some(l), _) => format!(
            "emulated S3 link: {} ms first byte, {} MB/s per connection",
            l.latency.as_millis(),
            l.bandwidth / 1_000_000
        ),
        (None, Some(s3)) => format!("S3 at {s3}"),
        (None, None) => "loopback S3 without emulation".into(),
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LinkSummary {
    pub latency_ms: u64,
    pub bandwidth_mb_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Suite {
    /// The command that reproduces this run.
    pub command: String,
    pub quick: bool,
    /// The emulated S3 link; `None` for raw loopback or real S3.
    pub link: Option<LinkSummary>,
    /// Where the data and nodes were: "local" or the S3 URL and node URLs.
    pub target: String,
    /// One line per workload describing its data and requests.
    pub setup: Vec<String>,
    pub measurements: Vec<Measurement>,
}

const MIB: f64 = (1u64 << 20) as f64;

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

impl Suite {
    pub fn workloads(&self) -> Vec<String> {
        let mut w: Vec<String> = Vec::new();
        for m in &self.measurements {
            if !w.contains(&m.workload) {
                w.push(m.workload.clone());
            }
        }
        w
    }

    /// Case names of `workload`, in the order they ran.
    pub fn cases(&self, workload: &str) -> Vec<String> {
        let mut c: Vec<String> = Vec::new();
        for m in self.measurements.iter().filter(|m| m.workload == workload) {
            if !c.contains(&m.case) {
                c.push(m.case.clone());
            }
        }
        c
    }

    pub fn get(&self, workload: &str, case: &str, mode: Mode) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|m| m.workload == workload && m.case == case && m.mode == mode)
    }

    pub fn markdown(&self, plots: &[(String, String)]) -> String {
        let link = match self.link {
            Some(l) => format!(
                "emulated S3 link: {} ms first-byte latency, {} MB/s per connection",
                l.latency_ms, l.bandwidth_mb_s
            ),
            None => "no link emulation".into(),
        };
        let mut md = format!(
            "## Quiver benchmark suite{}\n\nTarget: {}; {link}.\n\n",
            if self.quick { " (quick)" } else { "" },
            self.target
        );
        for s in &self.setup {
            md.push_str(&format!("- {s}\n"));
        }
        md.push_str(
            "\nLatency is end to end, from request to record batches in client memory. \
             `x DataFusion` is DataFusion over S3's median latency over the mode's (higher is faster); \
             min–max is the spread of the requests. Modes run one request at a time, their order rotating \
             from one request to the next. MiB columns are totals over the case's requests. \
             Bytes to client are the S3 responses for the baselines and the Flight stream for Quiver.\n",
        );
        for workload in self.workloads() {
            md.push_str(&format!(
                "\n### {workload}\n\n\
                 | case | mode | median ms | p95 ms | min–max ms | mean ms | x DataFusion | req/s | MB/s | hit ratio | origin MiB | S3 requests | to client MiB | node peak RSS MiB |\n\
                 | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
            ));
            for case in self.cases(&workload) {
                for mode in Mode::ALL {
                    let Some(m) = self.get(&workload, &case, mode) else {
                        continue;
                    };
                    md.push_str(&format!(
                        "| {case} | {} | {:.1} | {:.1} | {:.1}–{:.1} | {:.1} | {} | {:.1} | {:.1} | {} | {:.1} | {} | {:.2} | {} |\n",
                        mode.label(),
                        m.latency_ms.p50,
                        m.latency_ms.p95,
                        m.latency_ms.min,
                        m.latency_ms.max,
                        m.latency_ms.mean,
                        opt(m.speedup_vs_datafusion, |x| format!("{x:.2}x")),
                        m.requests_per_s,
                        m.throughput_mb_s,
                        opt(m.hit_ratio, |r| format!("{:.1}%", r * 100.0)),
                        m.origin_bytes as f64 / MIB,
                        m.s3_requests,
                        m.bytes_to_client as f64 / MIB,
                        opt(m.peak_rss_bytes.map(|b| b as f64), |b| format!("{:.0}", b / MIB)),
                    ));
                }
            }
        }
        if !plots.is_empty() {
            md.push_str("\n### Plots\n\n");
            for (file, title) in plots {
                md.push_str(&format!("![{title}]({file})\n\n"));
            }
        }
        md.push_str(&format!("Reproduce: `{}`\n", self.command));
        md
    }
}
