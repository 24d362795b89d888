//! `quiver query` and `quiver sql`: rows out of the cache, in the format
//! asked for.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use futures::StreamExt;
use quiver_client::table::AsOf;
use quiver_client::{ClientError, QuiverClient, QuiverTable};
use quiver_protocol::ScanRequest;

use super::output::{self, Format};
use super::target::{parse_table, Target};

pub struct QueryArgs {
    pub target: String,
    pub columns: Option<Vec<String>>,
    pub filter: Option<String>,
    pub limit: Option<u64>,
    pub format: Format,
    pub output: Option<PathBuf>,
}

pub async fn query(client: &QuiverClient, args: QueryArgs) -> Result<(), ClientError> {
    let target = Target::parse(&args.target)?;
    let req = ScanRequest {
        source: Some(target.source),
        path: Some(target.path),
        columns: args.columns,
        filter: args.filter,
        limit: args.limit,
        ..Default::default()
    };
    let (schema, stream) = client.read(&req).await?;
    let rows = output::write(args.format, args.output.as_deref(), schema, stream).await?;
    report(rows, args.output.as_deref());
    Ok(())
}

pub async fn sql(
    client: &QuiverClient,
    statement: &str,
    tables: &[String],
    format: Format,
    out: Option<PathBuf>,
) -> Result<(), ClientError> {
    let ctx = SessionContext::new_with_config(quiver_client::session_config());
    for spec in tables {
        let (name, target) = parse_table(spec)?;
        // `lake/shop/sales/@v3`: a Delta table at a version (or a time).
        let table = match target.path.rsplit_once("/@") {
            Some((dir, as_of)) => {
                QuiverTable::delta(
                    client.clone(),
                    &target.source,
                    &format!("{dir}/"),
                    AsOf::parse(as_of),
                )
                .await?
            }
            None => QuiverTable::open(client.clone(), &target.source, &target.path).await?,
        };
        ctx.register_table(name.as_str(), table)?;
    }
    let frame = ctx.sql(statement).await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let stream = frame
        .execute_stream()
        .await?
        .map(|r| r.map_err(ClientError::from))
        .boxed();
    let rows = output::write(format, out.as_deref(), schema, stream).await?;
    report(rows, out.as_deref());
    Ok(())
}

/// The row count on stderr, so stdout holds only the data.
fn report(rows: u64, out: Option<&std::path::Path>) {
    match out {
        Some(path) => eprintln!("{rows} rows written to {}", path.display()),
        None => eprintln!("({rows} rows)"),
    }
}
