//! Pushdown: TPC-H `lineitem` read with filters of 0.1%, 1%, 10% and 100%
//! selectivity, projecting 2 columns and all 16. This is where Quiver sends
//! the client only the matching rows, while the baselines must download the
//! projected columns whole to filter them.
//!
//! The filter is on `l_partkey`, which tpchgen draws uniformly from
//! 1..=200000 * scale, so `l_partkey <= s * parts` selects a fraction `s`
//! of the rows spread through every row group: statistics cannot prune it,
//! and the savings shown come from filtering, not from sorted data.

use bytes::Bytes;

use crate::data;
use crate::error::BoxError;
use crate::measure::{self, Measurement};
use crate::readers::{Mode, Pred, Query, Readers};
use crate::rig::Rig;

pub const SELECTIVITIES: [f64; 4] = [0.001, 0.01, 0.1, 1.0];
const NAME: &str = "tpch/lineitem.parquet";

#[derive(Debug, Clone)]
pub struct PushdownSettings {
    pub scale: f64,
    /// Timed repetitions of each case in each mode.
    pub runs: usize,
}

impl PushdownSettings {
    pub fn describe(&self, rows: u64, bytes: u64) -> String {
        format!(
            "pushdown: TPC-H lineitem at scale {} ({rows} rows, {:.1} MiB zstd Parquet), filter `l_partkey <= s * parts` \
             for s in 0.1%, 1%, 10%, 100%, projecting l_partkey, l_extendedprice or all 16 columns; {} run(s) per case and mode",
            self.scale,
            bytes as f64 / (1u64 << 20) as f64,
            self.runs
        )
    }
}

/// The case name, e.g. `1% of rows, 2 cols`.
pub fn case_name(selectivity: f64, all_columns: bool) -> String {
    format!(
        "{}% of rows, {}",
        selectivity * 100.0,
        if all_columns { "all cols" } else { "2 cols" }
    )
}

fn query(selectivity: f64, all_columns: bool, parts: i64) -> Query {
    Query {
        name: NAME.into(),
        columns: (!all_columns).then(|| vec!["l_partkey".into(), "l_extendedprice".into()]),
        filter: Some(Pred::int_at_most(
            "l_partkey",
            ((selectivity * parts as f64).round() as i64).max(1),
        )),
    }
}

/// Generates and uploads the table; returns its rows and file size.
async fn upload_data(rig: &Rig, scale: f64) -> Result<(u64, u64), BoxError> {
    let expected_rows = (6_000_000.0 * scale) as u64;
    let bar = data::rows_bar(expected_rows, "lineitem");
    let path = rig.scratch().join(NAME);
    let rows = tokio::task::block_in_place(|| data::lineitem(&path, scale, &bar))?;
    bar.finish_and_clear();
    let bytes = std::fs::read(&path)?;
    let size = bytes.len() as u64;
    rig.upload(NAME, Bytes::from(bytes)).await?;
    std::fs::remove_file(&path)?;
    Ok((rows, size))
}

pub async fn run(
    rig: &Rig,
    args: &PushdownSettings,
) -> Result<(String, Vec<Measurement>), BoxError> {
    if !(args.scale > 0.0 && args.scale <= 100.0) {
        return Err("--scale must be in (0, 100]".into());
    }
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let parts = (200_000.0 * args.scale) as i64;
    if parts < 1000 {
        return Err(
            "--scale is too small for 0.1% selectivity on l_partkey (need scale >= 0.005)".into(),
        );
    }
    let (rows, size) = upload_data(rig, args.scale).await?;
    let readers = Readers::new(rig);
    let mut out = Vec::new();
    for all_columns in [false, true] {
        for selectivity in SELECTIVITIES {
            let case = case_name(selectivity, all_columns);
            let queries = vec![query(selectivity, all_columns, parts); args.runs];
            // Each round runs the query in every mode, the cold run from an
            // empty cache and the warm one right after it.
            let measured =
                measure::interleaved(&readers, "pushdown", &case, &Mode::ALL, &queries, true)
                    .await?;
            let mut expected = None;
            for (mode, (m, replies)) in Mode::ALL.into_iter().zip(measured) {
                match &expected {
                    None => expected = Some(replies),
                    Some(e) => measure::check_same(&case, mode, e, &replies, &queries)?,
                }
                out.push(m);
            }
            measure::check_content(&readers, &case, &queries).await?;
        }
    }
    Ok((args.describe(rows, size), out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readers::Bound;

    #[test]
    fn thresholds_select_the_asked_fraction_of_parts() {
        let parts = 200_000;
        for s in SELECTIVITIES {
            let q = query(s, false, parts);
            let Some(Pred {
                bound: Bound::IntAtMost(max),
                ..
            }) = q.filter
            else {
                panic!("an integer bound is expected");
            };
            assert!(((max as f64 / parts as f64) - s).abs() < 1e-9);
        }
        assert_eq!(query(1.0, true, parts).columns, None);
        assert_eq!(query(0.01, false, parts).columns.map(|c| c.len()), Some(2));
    }
}
