//! What the client's reads and listings hand back: who served a read, an
//! object or a whole scan read into memory, and an object's listing, kept
//! apart from the routing that produces them.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use quiver_protocol::ObjectListing;

/// Who answered a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    Node(String),
    /// The store, through a pre-signed URL a node handed out.
    Presigned,
    Direct,
}

/// One object read whole.
#[derive(Debug)]
pub struct Scan {
    pub batches: Vec<RecordBatch>,
    pub served_by: Served,
}

/// A whole scan read into memory, endpoints in plan order.
#[derive(Debug, Clone)]
pub struct Table {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Table {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// An object as `ListFlights` describes it.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub listing: ObjectListing,
    /// Its row count, from its footer.
    pub rows: Option<u64>,
    pub schema: Option<SchemaRef>,
}
