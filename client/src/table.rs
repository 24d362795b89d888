//! A DataFusion table over the Parquet objects under one source path, read
//! through Quiver: projection, filters and limit go to the owning nodes, and
//! only the matching rows cross the network.
//!
//! The objects of a table need not share one schema (`docs/protocol.md`,
//! "Schema merging"): the table's schema is their schemas merged, and each
//! object is asked for the columns it has, with only the filters it can
//! evaluate exactly as the table does; the scan fills and widens the rest.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, Result as DfResult, Statistics};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;
use futures::{StreamExt, TryStreamExt};
use quiver_protocol::ScanRequest;

use crate::error::{to_datafusion, ClientError};
use crate::exec::{QuiverScanExec, ScanSpec};
use crate::plan::Plan;
use crate::pushdown::{all_of, filter_text, PushBudget};
use crate::routing::{ObjectInfo, QuiverClient};

/// Objects planned at once when a scan must plan them one by one.
const PLAN_CONCURRENCY: usize = 16;

/// One object of a table and the schema a node sends for it.
#[derive(Debug, Clone)]
struct TableObject {
    path: String,
    schema: SchemaRef,
}

/// The objects under a source path, with their schemas, as one listing saw
/// them: what a [`QuiverTable`] is built from.
#[derive(Debug, Clone)]
pub struct TableFiles {
    source: String,
    path: String,
    objects: Vec<TableObject>,
    rows: Option<u64>,
    bytes: Option<u64>,
}

impl TableFiles {
    /// Lists `source`/`path` (one object, or every Parquet object under a
    /// prefix ending in `/`) with one ListFlights call.
    pub async fn list(
        client: &QuiverClient,
        source: &str,
        path: &str,
    ) -> Result<TableFiles, ClientError> {
        let objects = client.list(source, path).await?;
        TableFiles::new(source, path, objects)
    }

    /// The files of `source`/`path` from a listing the caller already has
    /// (every entry must lie under `path`). Fails with NotFound when there
    /// is none, as planning the path would.
    pub fn new(
        source: &str,
        path: &str,
        objects: Vec<ObjectInfo>,
    ) -> Result<TableFiles, ClientError> {
        if objects.is_empty() {
            return Err(ClientError::Status {
                code: tonic::Code::NotFound,
                message: format!("there are no Parquet objects under {source}/{path}"),
                request_id: None,
            });
        }
        let rows = objects
            .iter()
            .map(|o| o.rows)
            .try_fold(0u64, |sum, r| r.and_then(|r| sum.checked_add(r)));
        let bytes = objects
            .iter()
            .try_fold(0u64, |sum, o| sum.checked_add(o.listing.size));
        let objects = objects
            .into_iter()
            .map(|o| {
                let schema = o.schema.ok_or_else(|| {
                    ClientError::Decode(format!(
                        "the listing of {source}/{} has no readable schema",
                        o.listing.path
                    ))
                })?;
                Ok(TableObject {
                    path: o.listing.path,
                    schema,
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(TableFiles {
            source: source.to_string(),
            path: path.to_string(),
            objects,
            rows,
            bytes,
        })
    }

    /// The schema the objects of every one of `tables` are read with
    /// together (see [`merge_schemas`]).
    pub fn merged_schema(tables: &[&TableFiles]) -> Result<SchemaRef, Box<SchemaConflict>> {
        let objects: Vec<(String, SchemaRef)> = tables
            .iter()
            .flat_map(|t| {
                t.objects
                    .iter()
                    .map(|o| (format!("{}/{}", t.source, o.path), o.schema.clone()))
            })
            .collect();
        merge_schemas(&objects)
    }
}

/// Two objects of one table whose column cannot be read as one type.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "column `{column}` is {first_type} in {first} but {second_type} in {second}, and no type holds both without loss, so the files cannot be read as one table"
)]
pub struct SchemaConflict {
    pub column: String,
    /// The object that gave the column its type so far, and that type.
    pub first: String,
    pub first_type: DataType,
    /// The object that disagrees, and its type.
    pub second: String,
    pub second_type: DataType,
    /// Every column of the objects, in merged order, with each conflicting
    /// one typed `Null`: the shape a catalog can still list the table with.
    pub partial: SchemaRef,
}

/// Integer and floating-point types by the values they hold exactly.
fn holds(ty: &DataType) -> Option<(bool, bool, u8)> {
    // (float, signed, bits of magnitude they hold exactly)
    Some(match ty {
        DataType::Int8 => (false, true, 7),
        DataType::Int16 => (false, true, 15),
        DataType::Int32 => (false, true, 31),
        DataType::Int64 => (false, true, 63),
        DataType::UInt8 => (false, false, 8),
        DataType::UInt16 => (false, false, 16),
        DataType::UInt32 => (false, false, 32),
        DataType::UInt64 => (false, false, 64),
        DataType::Float16 => (true, true, 11),
        DataType::Float32 => (true, true, 24),
        DataType::Float64 => (true, true, 53),
        _ => return None,
    })
}

/// Whether every value of `from` is exactly a value of `to`: a wider
/// integer, an unsigned integer into a wider signed one, an integer into a
/// float whose mantissa holds it, a float into a wider float.
fn widens(from: &DataType, to: &DataType) -> bool {
    let (Some((from_float, from_signed, from_bits)), Some((to_float, to_signed, to_bits))) =
        (holds(from), holds(to))
    else {
        return false;
    };
    match (from_float, to_float) {
        (true, false) => false,
        (true, true) => from_bits <= to_bits,
        // An integer's magnitude must fit the float's mantissa.
        (false, true) => from_bits <= to_bits,
        (false, false) => (to_signed || !from_signed) && from_bits <= to_bits,
    }
}

/// The type both `a` and `b` are read as: either one if they are the same
/// (nested field names aside) or one widens to the other, else the
/// narrowest type both widen to (`int8` and `uint8` as `int16`, `int32` and
/// `float32` as `float64`).
fn common_type(a: &DataType, b: &DataType) -> Option<DataType> {
    if a == b || a.equals_datatype(b) || widens(b, a) {
        return Some(a.clone());
    }
    if widens(a, b) {
        return Some(b.clone());
    }
    [
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Float32,
        DataType::Float64,
    ]
    .into_iter()
    .find(|c| widens(a, c) && widens(b, c))
}

/// One schema for objects whose schemas may differ: every column of any of
/// them, in the order the objects (in the given order) first name them;
/// a column missing from some object, or nullable in one, is nullable; a
/// column whose types differ takes the type both widen to without loss.
/// Objects that agree come back with exactly their schema. Names the two
/// objects and the column when a column's types cannot be reconciled.
pub fn merge_schemas(objects: &[(String, SchemaRef)]) -> Result<SchemaRef, Box<SchemaConflict>> {
    let Some((_, first)) = objects.first() else {
        return Ok(Arc::new(Schema::empty()));
    };
    if objects.iter().all(|(_, s)| s.fields() == first.fields()) {
        return Ok(first.clone());
    }
    // Per column: its field so far and the object that set its type.
    let mut fields: Vec<(Field, usize)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut conflict: Option<(String, usize, usize, DataType, DataType)> = None;
    let mut broken: Vec<bool> = Vec::new();
    for (k, (_, schema)) in objects.iter().enumerate() {
        for field in schema.fields() {
            let Some(&i) = index.get(field.name()) else {
                index.insert(field.name().clone(), fields.len());
                let mut f = field.as_ref().clone();
                // Missing from the objects before this one.
                if k > 0 {
                    f = f.with_nullable(true);
                }
                fields.push((f, k));
                broken.push(false);
                continue;
            };
            if broken[i] {
                continue;
            }
            let (merged, origin) = &mut fields[i];
            if field.is_nullable() {
                merged.set_nullable(true);
            }
            match common_type(merged.data_type(), field.data_type()) {
                Some(ty) if &ty == merged.data_type() => {}
                Some(ty) => {
                    merged.set_data_type(ty);
                    *origin = k;
                }
                None => {
                    conflict.get_or_insert_with(|| {
                        (
                            field.name().clone(),
                            *origin,
                            k,
                            merged.data_type().clone(),
                            field.data_type().clone(),
                        )
                    });
                    broken[i] = true;
                }
            }
        }
        // Columns this object lacks are nulls in its rows.
        for (f, _) in fields.iter_mut() {
            if schema.field_with_name(f.name()).is_err() {
                f.set_nullable(true);
            }
        }
    }
    let out: Vec<Field> = fields
        .into_iter()
        .zip(&broken)
        .map(|((f, _), &broken)| {
            if broken {
                Field::new(f.name(), DataType::Null, true)
            } else {
                f
            }
        })
        .collect();
    let metadata = if objects
        .iter()
        .all(|(_, s)| s.metadata() == first.metadata())
    {
        first.metadata().clone()
    } else {
        HashMap::new()
    };
    let merged = Arc::new(Schema::new_with_metadata(out, metadata));
    match conflict {
        None => Ok(merged),
        Some((column, a, b, first_type, second_type)) => Err(Box::new(SchemaConflict {
            column,
            first: objects[a].0.clone(),
            first_type,
            second: objects[b].0.clone(),
            second_type,
            partial: merged,
        })),
    }
}

#[derive(Debug)]
pub struct QuiverTable {
    client: QuiverClient,
    source: String,
    path: String,
    schema: SchemaRef,
    /// The objects as listed when the table was made, in key order.
    objects: Vec<TableObject>,
    statistics: Statistics,
}

/// What one object is asked for in a scan.
#[derive(Debug, Clone, PartialEq)]
struct ObjectRequest {
    /// The columns it sends, as it sends them; `None`: all of them.
    columns: Option<Vec<String>>,
    fields: Vec<FieldRef>,
    filter: Option<String>,
}

impl QuiverTable {
    /// A table of `source`/`path`: one object, or every Parquet object under
    /// a prefix ending in `/`, read with their schemas merged
    /// ([`merge_schemas`]). Fails now, with the node's message, if the
    /// source or path does not exist, or names the two objects and the
    /// column when their schemas cannot be merged.
    pub async fn try_new(
        client: QuiverClient,
        source: impl Into<String>,
        path: impl Into<String>,
    ) -> Result<QuiverTable, ClientError> {
        let files = TableFiles::list(&client, &source.into(), &path.into()).await?;
        let schema = TableFiles::merged_schema(&[&files])
            .map_err(|conflict| ClientError::Refused(conflict.to_string()))?;
        Ok(QuiverTable::from_files(client, files, schema))
    }

    /// A table of `files` read with `schema`, which must be their merged
    /// schema or that of a set of objects holding them
    /// ([`TableFiles::merged_schema`]): the partitions of one table share
    /// the schema of all of them.
    pub fn from_files(client: QuiverClient, files: TableFiles, schema: SchemaRef) -> QuiverTable {
        let mut statistics = Statistics::new_unknown(&schema);
        if let Some(rows) = files.rows.and_then(|r| usize::try_from(r).ok()) {
            statistics.num_rows = Precision::Exact(rows);
        }
        // Parquet is compressed: the decoded size is larger, so this is a
        // lower bound for join planning, not an exact figure.
        if let Some(bytes) = files.bytes.and_then(|b| usize::try_from(b).ok()) {
            statistics.total_byte_size = Precision::Inexact(bytes);
        }
        QuiverTable {
            client,
            source: files.source,
            path: files.path,
            schema,
            objects: files.objects,
            statistics,
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether `object` can evaluate `filter` exactly as the table would:
    /// every column it reads is there with the table's type.
    fn evaluates(&self, object: &TableObject, filter: &Expr) -> bool {
        filter.column_refs().iter().all(|c| {
            let table = self.schema.field_with_name(&c.name).ok();
            let own = object.schema.field_with_name(&c.name).ok();
            matches!((table, own), (Some(t), Some(o)) if t.data_type() == o.data_type())
        })
    }

    /// The request for `object`: the columns of `wanted` (table columns, in
    /// order) it has, and the filters it evaluates exactly, ANDed.
    fn object_request(
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

    /// Plans the scan: one GetFlightInfo of the table's path when every
    /// object gets the same request (the node then checks they still agree),
    /// else one per object, in key order.
    async fn plan(&self, requests: Vec<ObjectRequest>, limit: Option<u64>) -> DfResult<Plan> {
        let request = |path: &str, r: &ObjectRequest| ScanRequest {
            source: Some(self.source.clone()),
            path: Some(path.to_string()),
            columns: r.columns.clone(),
            filter: r.filter.clone(),
            limit,
            ..Default::default()
        };
        if let Some(first) = requests.first() {
            if requests.iter().all(|r| r == first) {
                let req = request(&self.path, first);
                return self.client.plan(&req).await.map_err(to_datafusion);
            }
        }
        let reqs: Vec<ScanRequest> = self
            .objects
            .iter()
            .zip(&requests)
            .map(|(o, r)| request(&o.path, r))
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

/// `expr` with its columns unqualified: the scan's schema has no table name.
fn unqualified(expr: Expr) -> DfResult<Expr> {
    Ok(expr
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => Transformed::yes(Expr::Column(Column::new_unqualified(c.name))),
                other => Transformed::no(other),
            })
        })?
        .data)
}

#[async_trait]
impl TableProvider for QuiverTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Every filter DataFusion declared Exact reaches every object (see
        // `supports_filters_pushdown`); an Inexact one goes to the objects
        // that evaluate it and DataFusion applies it again to all rows. A
        // request carries them ANDed, and those that no longer fit one
        // request (DataFusion asks about filters a few at a time, so the
        // budget there cannot see them all) are applied here instead.
        let mut budget = PushBudget::default();
        let (texts, rest): (Vec<(&Expr, String)>, Vec<(&Expr, String)>) = filters
            .iter()
            .filter_map(|f| filter_text(f, &self.schema).map(|t| (f, t)))
            .partition(|(_, t)| budget.admit(t));
        let wanted: Vec<usize> = match projection {
            None => (0..self.schema.fields().len()).collect(),
            Some(p) => p.clone(),
        };
        let mut read = wanted.clone();
        for (f, _) in &rest {
            for c in f.column_refs() {
                let i = self.schema.index_of(&c.name)?;
                if !read.contains(&i) {
                    read.push(i);
                }
            }
        }
        let schema = Arc::new(self.schema.project(&read)?);
        let requests: Vec<ObjectRequest> = self
            .objects
            .iter()
            .map(|o| self.object_request(o, schema.fields(), &texts))
            .collect();
        // A limit holds after every filter: with some applied here, the
        // nodes must not stop early.
        let limit = limit.filter(|_| rest.is_empty()).map(|l| l as u64);
        let plan = self.plan(requests, limit).await?;
        let spec = ScanSpec {
            count_only: schema.fields().is_empty(),
            schema: schema.clone(),
            endpoints: plan.endpoints,
            limit,
            total_rows: plan.total_records,
        };
        let scan: Arc<dyn ExecutionPlan> = Arc::new(QuiverScanExec::new(self.client.clone(), spec));
        let rest = rest
            .into_iter()
            .map(|(f, _)| unqualified(f.clone()))
            .collect::<DfResult<Vec<_>>>()?;
        let Some(predicate) = conjunction(rest) else {
            return Ok(scan);
        };
        let predicate =
            state.create_physical_expr(predicate, &DFSchema::try_from(schema.as_ref().clone())?)?;
        let filtered: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(predicate, scan)?);
        let columns: Vec<(Arc<dyn PhysicalExpr>, String)> = wanted
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let name = self.schema.field(w).name().clone();
                (
                    Arc::new(PhysicalColumn::new(&name, i)) as Arc<dyn PhysicalExpr>,
                    name,
                )
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(columns, filtered)?))
    }

    /// Exact for every filter each object evaluates itself (DataFusion then
    /// drops it from the plan), as long as the filters pushed fit one
    /// request together (`PushBudget`); Inexact for one only some objects can
    /// evaluate as the table does (a column missing or of a narrower type
    /// in the others), which DataFusion applies again; Unsupported for the
    /// rest, which DataFusion applies to the rows that come back.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let mut budget = PushBudget::default();
        Ok(filters
            .iter()
            .map(|f| {
                let fits = filter_text(f, &self.schema).is_some_and(|t| budget.admit(&t));
                if !fits {
                    return TableProviderFilterPushDown::Unsupported;
                }
                let objects = self.objects.iter().filter(|o| self.evaluates(o, f)).count();
                match objects {
                    n if n == self.objects.len() => TableProviderFilterPushDown::Exact,
                    0 => TableProviderFilterPushDown::Unsupported,
                    _ => TableProviderFilterPushDown::Inexact,
                }
            })
            .collect())
    }

    fn statistics(&self) -> Option<Statistics> {
        Some(self.statistics.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &[(&str, DataType, bool)]) -> SchemaRef {
        Arc::new(Schema::new(
            fields
                .iter()
                .map(|(n, t, null)| Field::new(*n, t.clone(), *null))
                .collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn widening_is_lossless_only() {
        use DataType::*;
        assert!(widens(&Int32, &Int64));
        assert!(widens(&UInt32, &Int64));
        assert!(widens(&Int32, &Float64));
        assert!(widens(&Float32, &Float64));
        assert!(!widens(&Int64, &Int32));
        assert!(!widens(&Int64, &Float64));
        assert!(!widens(&Int32, &Float32));
        assert!(!widens(&Int8, &UInt64));
        assert!(!widens(&Float64, &Int64));
        assert_eq!(common_type(&Int8, &UInt8), Some(Int16));
        assert_eq!(common_type(&Int32, &Float32), Some(Float64));
        assert_eq!(common_type(&UInt64, &Int64), None);
        assert_eq!(common_type(&Utf8, &Int64), None);
    }

    #[test]
    fn schemas_merge_by_name_and_widen() {
        let a = schema(&[
            ("id", DataType::Int32, false),
            ("name", DataType::Utf8, false),
        ]);
        let b = schema(&[
            ("score", DataType::Float32, false),
            ("id", DataType::Int64, false),
        ]);
        let merged = merge_schemas(&[("a".into(), a.clone()), ("b".into(), b)]).unwrap();
        assert_eq!(
            merged,
            schema(&[
                ("id", DataType::Int64, false),
                ("name", DataType::Utf8, true),
                ("score", DataType::Float32, true),
            ])
        );
        let same = merge_schemas(&[("a".into(), a.clone()), ("a2".into(), a.clone())]).unwrap();
        assert!(Arc::ptr_eq(&same, &a));
    }

    #[test]
    fn a_conflict_names_both_objects_and_the_column() {
        let a = schema(&[("id", DataType::Int64, false), ("v", DataType::Utf8, true)]);
        let b = schema(&[("id", DataType::Int64, false), ("v", DataType::Int64, true)]);
        let err =
            merge_schemas(&[("s/t/a.parquet".into(), a), ("s/t/b.parquet".into(), b)]).unwrap_err();
        let text = err.to_string();
        for part in ["`v`", "s/t/a.parquet", "s/t/b.parquet", "Utf8", "Int64"] {
            assert!(text.contains(part), "{text}");
        }
        assert_eq!(
            err.partial,
            schema(&[("id", DataType::Int64, false), ("v", DataType::Null, true)])
        );
    }
}
