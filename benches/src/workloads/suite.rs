//! The suite: the trace and pushdown workloads against one rig (local, or
//! running nodes over real S3), every case in every mode, written as
//! `results.json`, `results.md` and PNG plots.

use std::path::Path;

use crate::common::Common;
use crate::error::BoxError;
use crate::measure;
use crate::plot;
use crate::report::{LinkSummary, Suite};
use crate::rig::Rig;
use crate::workloads::pushdown::{self, PushdownSettings};
use crate::workloads::trace::{self, TraceSettings};

/// The pushdown workload's flags.
#[derive(clap::Args, Clone, Default)]
pub struct SuiteArgs {
    /// TPC-H scale factor of the pushdown workload [default: 1, quick 0.05].
    #[arg(long)]
    scale: Option<f64>,
    /// Timed runs of each pushdown case and mode [default: 3, quick 1].
    #[arg(long)]
    runs: Option<usize>,
}

impl SuiteArgs {
    /// The pushdown workload's settings: the flags, or the defaults of a
    /// full or `quick` run.
    fn pushdown(&self, quick: bool) -> PushdownSettings {
        PushdownSettings {
            scale: self.scale.unwrap_or(if quick { 0.05 } else { 1.0 }),
            runs: self.runs.unwrap_or(if quick { 1 } else { 3 }),
        }
    }
}

/// The workloads of the suite a run takes.
pub enum Parts {
    /// Trace and pushdown.
    All(SuiteArgs),
    Trace,
    Pushdown(SuiteArgs),
}

pub async fn main(common: &Common, parts: Parts, command: String) -> Result<(), BoxError> {
    let (trace, pushdown) = match parts {
        Parts::All(args) => (true, Some(args.pushdown(common.quick))),
        Parts::Trace => (true, None),
        Parts::Pushdown(args) => (false, Some(args.pushdown(common.quick))),
    };
    let link = common.link();
    let rig = Rig::start(&common.rig_options()?).await?;
    let mut suite = Suite {
        command,
        quick: common.quick,
        link: link.map(|l| LinkSummary {
            latency_ms: l.latency.as_millis() as u64,
            bandwidth_mb_s: l.bandwidth / 1_000_000,
        }),
        target: match &common.s3 {
            Some(s3) => format!("{s3} served by {}", common.nodes.join(", ")),
            None => "s3s-fs and one quiver-server process on this machine".into(),
        },
        setup: Vec::new(),
        measurements: Vec::new(),
    };
    let result = run(&rig, &mut suite, common.quick, trace, pushdown).await;
    rig.stop().await?;
    result?;
    measure::fill_speedups(&mut suite.measurements);
    write(&common.out, &suite)
}

async fn run(
    rig: &Rig,
    suite: &mut Suite,
    quick: bool,
    trace: bool,
    pushdown: Option<PushdownSettings>,
) -> Result<(), BoxError> {
    if trace {
        let settings = if quick {
            TraceSettings::quick()
        } else {
            TraceSettings::full()
        };
        suite.setup.push(settings.describe());
        suite.measurements.extend(trace::run(rig, &settings).await?);
    }
    if let Some(settings) = pushdown {
        let (setup, measurements) = pushdown::run(rig, &settings).await?;
        suite.setup.push(setup);
        suite.measurements.extend(measurements);
    }
    Ok(())
}

/// Draws the plots, prints the Markdown and writes `results.json` and
/// `results.md` into `out`.
fn write(out: &Path, suite: &Suite) -> Result<(), BoxError> {
    let plots = plot::suite(out, suite)?;
    let md = suite.markdown(&plots);
    println!("{md}");
    std::fs::write(out.join("results.json"), serde_json::to_vec_pretty(suite)?)?;
    std::fs::write(out.join("results.md"), md)?;
    Ok(())
}
