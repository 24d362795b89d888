//! Planning a table's scan: what each object is asked for (the columns it
//! has, the filters it evaluates exactly as the table does) and the
//! GetFlightInfo calls that turn those requests into endpoints.

use std::sync::Arc;

use arrow::datatypes::FieldRef;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::Expr;
use futures::{StreamExt, TryStreamExt};
use quiver_protocol::ScanRequest;

use super::files::TableObject;
use super::QuiverTable;
use crate::error::to_datafusion;
use crate::plan::Plan;
use crate::pushdown::all_of;

/// Objects planned at once when a scan must plan them one by one.
const PLAN_CONCURRENCY: usize = 16;

/// What one object is asked for in a scan.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ObjectRequest {
    /// The columns it sends, as it sends them; `None`: all of them.
    columns: Option<Vec<String>>,
    fields: Vec<FieldRef>,
    filter: Option<String>,
}

impl QuiverTable {
    /// Whether `object` can evaluate `filter` exactly as the table would:
    /// every column it reads is there with the table's type.
    pub(super) fn evaluates(&self, object: &TableObject, filter: &Expr) -> bool {
        filter.column_refs().iter().all(|c| {
            let table = self.schema.field_with_name(&c.name).ok();
            let own = object.schema.field_with_name(&c.name).ok();
            matches!((table, own), (Some(t), Some(o)) if t.data_type() == o.data_type())
        })
    }

    /// The request for `object`: the columns of `wanted` (table columns, in
    /// order) it has, and the filters it evaluates exactly, ANDed.
    pub(super) fn object_request(
        &self,
        object: &TableObject,
        wanted: &[FieldRef],
        filters: &[(&Expr, String)],
    ) -> ObjectRequest {
        let mut fields: Vec<FieldRef> = wanted
            .iter()
            .filter_map(|f| object.schema.field_with_name(f.name()).ok())
            .map(|f| Arc::new(f.clone()))
            .collect();
        // Only row counts are needed (or none of the columns is here): ask
        // for one column, since a batch with no columns cannot cross
        // Flight; the scan drops it or fills the table's columns with nulls.
        if fields.is_empty() {
            fields.extend(object.schema.fields().first().cloned());
        }
        let columns: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
        let all: Vec<&String> = object.schema.fields().iter().map(|f| f.name()).collect();
        let texts: Vec<&str> = filters
            .iter()
            .filter(|(f, _)| self.evaluates(object, f))
            .map(|(_, t)| t.as_str())
            .collect();
        let filter = all_of(&texts);
        ObjectRequest {
            columns: (columns.iter().collect::<Vec<_>>() != all).then_some(columns),
            fields,
            filter,
        }
    }

    /// Plans the scan: one GetFlightInfo of the table's path when the table
    /// is every object under it and every object gets the same request (the
    /// node then checks they still agree), else one per object, in key
    /// order.
    pub(super) async fn plan(
        &self,
        objects: &[&TableObject],
        requests: Vec<ObjectRequest>,
        limit: Option<u64>,
    ) -> DfResult<Plan> {
        let request = |path: &str, r: &ObjectRequest| ScanRequest {
            source: Some(self.source.clone()),
            path: Some(path.to_string()),
            columns: r.columns.clone(),
            filter: r.filter.clone(),
            limit,
            ..Default::default()
        };
        // The whole path only while every object of it is scanned.
        let whole = self.whole && objects.len() == self.objects.len();
        if let Some(first) = requests.first().filter(|_| whole) {
            if requests.iter().all(|r| r == first) {
                let req = request(&self.path, first);
                return self.client.plan(&req).await.map_err(to_datafusion);
            }
        }
        let reqs: Vec<ScanRequest> = objects
            .iter()
            .zip(&requests)
            .map(|(o, r)| ScanRequest {
                deletion_vector: o.deletion_vector.clone(),
                immutable: o.immutable,
                ..request(&o.path, r)
            })
            .collect();
        let plans: Vec<Plan> = futures::stream::iter(reqs)
            .map(|req| async move { self.client.plan(&req).await })
            .buffered(PLAN_CONCURRENCY)
            .try_collect()
            .await
            .map_err(to_datafusion)?;
        let total_records = plans
            .iter()
            .map(|p| p.total_records)
            .try_fold(0u64, |sum, r| r.and_then(|r| sum.checked_add(r)));
        Ok(Plan {
            schema: self.schema.clone(),
            endpoints: plans.into_iter().flat_map(|p| p.endpoints).collect(),
            total_records,
            limit,
        })
    }
}
