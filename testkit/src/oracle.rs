//! The differential oracle every correctness test compares with.
//!
//! It is DataFusion reading the Parquet files directly with statistics
//! pruning, the page index, bloom filters and filter pushdown all off: the
//! node prunes with the same DataFusion code, so an oracle that pruned too
//! would agree with a pruning bug instead of catching it.

use datafusion::prelude::{SessionConfig, SessionContext};

/// A session that reads every row of every file it is given and filters
/// afterwards.
pub fn session() -> SessionContext {
    let mut config = SessionConfig::new()
        .with_parquet_pruning(false)
        .with_parquet_page_index_pruning(false)
        .with_parquet_bloom_filter_pruning(false);
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.pushdown_filters = false;
    parquet.schema_force_view_types = false;
    SessionContext::new_with_config(config)
}
