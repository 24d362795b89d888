//! Turning a DataFusion failure into the protocol error a user should see.

use std::error::Error;

use arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use parquet::errors::ParquetError;

use crate::error::QuiverError;

/// The innermost useful text of a DataFusion error, without the chain of
/// "Error during planning:" prefixes.
pub fn message(err: &DataFusionError) -> String {
    match err.find_root() {
        DataFusionError::SQL(e, _) => e.to_string(),
        DataFusionError::SchemaError(e, _) => e.to_string(),
        DataFusionError::Plan(m) => m.clone(),
        other => other.to_string(),
    }
}

/// Classifies a failed plan or stream of object `what`. Our own errors are
/// found anywhere in the source chain and returned unchanged. Evaluation
/// errors are blamed on the request only when it has a filter; without one
/// they come from decoding the object.
pub fn classify(err: DataFusionError, what: &str, filter_given: bool) -> QuiverError {
    let mut parquet_problem = None;
    let mut evaluation_problem = None;
    let mut current: Option<&(dyn Error + 'static)> = Some(&err);
    while let Some(e) = current {
        if let Some(q) = e.downcast_ref::<QuiverError>() {
            return q.clone();
        }
        if let Some(p) = e.downcast_ref::<ParquetError>() {
            if !matches!(p, ParquetError::External(_)) {
                parquet_problem.get_or_insert_with(|| p.to_string());
            }
        }
        if let Some(a) = e.downcast_ref::<ArrowError>() {
            if filter_given && is_evaluation_error(a) {
                evaluation_problem.get_or_insert_with(|| a.to_string());
            }
        }
        current = e.source();
    }
    // The filter is evaluated inside the Parquet decoder, so its failures
    // (a cast that does not fit a value, say) arrive wrapped in Parquet
    // errors: they are the request's fault, not the object's.
    if let Some(a) = evaluation_problem {
        return QuiverError::invalid(format!("the filter could not be evaluated on {what}: {a}"));
    }
    if let Some(p) = parquet_problem {
        return QuiverError::DataLoss(format!("object {what} is not valid Parquet: {p}"));
    }
    match err.find_root() {
        DataFusionError::SQL(..)
        | DataFusionError::SchemaError(..)
        | DataFusionError::Plan(_)
        | DataFusionError::NotImplemented(_) => {
            QuiverError::invalid(format!("the request cannot be planned: {}", message(&err)))
        }
        DataFusionError::ArrowError(e, _) => {
            QuiverError::DataLoss(format!("object {what} could not be decoded: {e}"))
        }
        DataFusionError::ResourcesExhausted(m) => {
            QuiverError::ResourceExhausted(format!("the scan of {what} ran out of resources: {m}"))
        }
        DataFusionError::ParquetError(e) => {
            QuiverError::DataLoss(format!("object {what} is not valid Parquet: {e}"))
        }
        other => QuiverError::Internal(format!("the scan of {what} failed: {other}")),
    }
}

fn is_evaluation_error(e: &ArrowError) -> bool {
    matches!(
        e,
        ArrowError::CastError(_)
            | ArrowError::ParseError(_)
            | ArrowError::DivideByZero
            | ArrowError::ArithmeticOverflow(_)
            | ArrowError::ComputeError(_)
            | ArrowError::InvalidArgumentError(_)
    )
}
