//! Summaries of a workload's timed runs. Workloads that put Quiver beside a
//! baseline compare medians (one slow run on a noisy machine moves a mean,
//! not a median) and pick configurations by their fastest trial.

use std::time::Duration;

/// The smallest of `values`; infinity when there are none.
pub fn fastest(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The upper median of `values`; NaN when there are none, so an empty
/// series shows as such in a report rather than as a time.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `d` in milliseconds, as reports give times.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_fastest_of_a_few_runs() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(median(&[]).is_nan());
        assert_eq!(fastest(&[3.0, 1.5, 2.0]), 1.5);
        assert_eq!(fastest(&[]), f64::INFINITY);
        assert_eq!(ms(Duration::from_micros(1500)), 1.5);
    }
}
