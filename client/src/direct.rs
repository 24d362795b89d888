//! The last resort when no owner can serve: read the object straight from
//! its source with DataFusion, applying the request as a node would.

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::common::Column;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::UNNAMED_TABLE;
use datafusion::prelude::{Expr, ParquetReadOptions, SessionContext};
use object_store::ObjectStore;
use quiver_protocol::ScanRequest;
use url::Url;

use crate::error::ClientError;

/// Where to read a source's objects when no node can serve them: the
/// source's root URL (`s3://bucket/prefix/` or `file:///dir/`) and a store
/// for that URL's bucket or filesystem.
#[derive(Clone)]
pub struct DirectSource {
    pub root: Url,
    pub store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for DirectSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSource")
            .field("root", &self.root.as_str())
            .finish_non_exhaustive()
    }
}

/// The object at `path` read with the request's projection, filter and
/// limit.
pub async fn read_direct(
    direct: &DirectSource,
    path: &str,
    req: &ScanRequest,
) -> Result<Vec<RecordBatch>, ClientError> {
    // Only a node applies a table's deletion vectors; read here, the rows
    // they delete would come back.
    if req.deletion_vector.is_some() {
        return Err(ClientError::Refused(format!(
            "{path} has rows deleted by a deletion vector, which only a node applies; it is not read directly"
        )));
    }
    let df = |e: datafusion::error::DataFusionError| {
        ClientError::DataFusion(format!("direct read of {path} failed: {}", e.message()))
    };
    let url = direct.root.join(path).map_err(|e| ClientError::BadUrl {
        url: path.to_string(),
        reason: e.to_string(),
    })?;
    read_object(direct.store.clone(), &url, req)
        .await
        .map_err(df)
}

/// `text` with DataFusion's name for a table read without one taken off
/// column names: a filter names plain columns, so its errors should too
/// (`l_orderkey`, not `"?table?".l_orderkey`).
fn plain_names(text: &str) -> String {
    text.replace(&format!("\"{UNNAMED_TABLE}\"."), "")
        .replace(&format!("{UNNAMED_TABLE}."), "")
}

/// Byte ranges of one object read at once when the whole answer is wanted:
/// over a link with tens of milliseconds per request, concurrency is what
/// reading fast means. 16 is what `quiver-bench node`'s trials pick over
/// its sweep of link latencies (docs/benchmarks.md, "Single node"); the
/// count is of requests in flight, not of cores, so it is not scaled by
/// them.
const READ_PARTITIONS: usize = 16;

/// The Parquet object at `url` in `store`, read with DataFusion applying the
/// request's filter, projection and limit with a node's semantics (though
/// not, as a node does, with the filter pushed into the decoder). Without a
/// limit the object is read as several byte ranges at once (rows then come in no promised order, as from a
/// scan of several objects); with one, a single partition reads it from the
/// start in file order, so the limit keeps the first rows a node returns.
pub(crate) async fn read_object(
    store: Arc<dyn ObjectStore>,
    url: &Url,
    req: &ScanRequest,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    let partitions = if req.limit.is_none() {
        READ_PARTITIONS
    } else {
        1
    };
    let config = crate::session_config()
        .with_target_partitions(partitions)
        .with_repartition_file_scans(partitions > 1)
        .with_repartition_file_min_size(0)
        .with_round_robin_repartition(false);
    // Filter pushdown stays off: it reads the filter columns of a row group
    // before its other pages, a round trip more per row group, which over
    // a link with tens of milliseconds per request costs more than the
    // bytes it saves.
    let ctx = SessionContext::new_with_config(config);
    let mut base = url.clone();
    base.set_path("/");
    ctx.register_object_store(&base, store);
    let mut frame = ctx
        .read_parquet(url.as_str(), ParquetReadOptions::default())
        .await?;
    if let Some(filter) = &req.filter {
        let bad = |e: DataFusionError| {
            DataFusionError::Plan(format!(
                "the filter `{filter}` is not valid: {}",
                plain_names(&e.message())
            ))
        };
        let expr = frame.parse_sql_expr(filter).map_err(bad)?;
        frame = frame.filter(expr).map_err(bad)?;
    }
    if let Some(columns) = &req.columns {
        frame = frame.select(
            columns
                .iter()
                .map(|c| Expr::Column(Column::new_unqualified(c))),
        )?;
    }
    if let Some(n) = req.limit {
        frame = frame.limit(0, Some(usize::try_from(n).unwrap_or(usize::MAX)))?;
    }
    Ok(frame
        .collect_partitioned()
        .await?
        .into_iter()
        .flatten()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    #[tokio::test]
    async fn filter_errors_name_plain_columns() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "l_orderkey",
            DataType::Int64,
            false,
        )]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])
                .unwrap();
        let file = std::fs::File::create(dir.path().join("t.parquet")).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        let url = Url::from_file_path(dir.path().join("t.parquet")).unwrap();

        for (filter, expected) in [
            ("foo > 1", "Valid fields are l_orderkey."),
            ("l_orderkey", "non-boolean predicate 'l_orderkey'"),
        ] {
            let req = ScanRequest {
                filter: Some(filter.into()),
                ..Default::default()
            };
            let err = read_object(store.clone(), &url, &req)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("the filter `{filter}` is not valid: ")),
                "{err}"
            );
            assert!(err.contains(expected), "{filter}: {err}");
            assert!(!err.contains(UNNAMED_TABLE), "{filter}: {err}");
        }
        let req = ScanRequest {
            filter: Some("l_orderkey > 1".into()),
            ..Default::default()
        };
        let rows: usize = read_object(store.clone(), &url, &req)
            .await
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(rows, 1);

        // A file with rows a deletion vector deletes is never read here:
        // the reader would return them.
        let direct = DirectSource {
            root: Url::from_directory_path(dir.path()).unwrap(),
            store,
        };
        let req = ScanRequest {
            deletion_vector: Some(quiver_protocol::DeletionVector {
                table: "t/".into(),
                storage_type: quiver_protocol::DeletionVectorStorage::Inline,
                path_or_inline_dv: "00000".into(),
                offset: None,
                size_in_bytes: 4,
                cardinality: 1,
            }),
            ..Default::default()
        };
        let err = read_direct(&direct, "t.parquet", &req).await.unwrap_err();
        assert!(matches!(err, ClientError::Refused(_)), "{err}");
        assert!(err.to_string().contains("deletion vector"), "{err}");
    }
}
