//! Prepared statements: created by one call, given parameters by another
//! (DoPut), run by a third and closed by a fourth, so the node keeps them
//! between calls. The registry is bounded, and a handle that is unknown or
//! closed is a clear error, never a different statement.

use std::collections::HashMap;
use std::sync::Mutex;

use arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use tonic::Status;

#[derive(Debug, Clone)]
pub struct Prepared {
    pub sql: String,
    /// The bound parameters, one value per `$n` in order.
    pub params: Option<Vec<ScalarValue>>,
}

#[derive(Debug)]
pub struct Registry {
    max: usize,
    statements: Mutex<HashMap<Vec<u8>, Prepared>>,
}

fn unknown() -> Status {
    Status::not_found(
        "no such prepared statement: the handle is unknown or was closed; create it again",
    )
}

impl Registry {
    pub fn new(max: usize) -> Self {
        Registry {
            max,
            statements: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Prepared>> {
        self.statements.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `sql` and returns its handle.
    pub fn create(&self, sql: String) -> Result<Vec<u8>, Status> {
        let mut statements = self.lock();
        if statements.len() >= self.max {
            return Err(Status::resource_exhausted(format!(
                "this node already holds its maximum of {} prepared statements; close some",
                self.max
            )));
        }
        let handle = uuid::Uuid::new_v4().as_bytes().to_vec();
        statements.insert(handle.clone(), Prepared { sql, params: None });
        Ok(handle)
    }

    pub fn get(&self, handle: &[u8]) -> Result<Prepared, Status> {
        self.lock().get(handle).cloned().ok_or_else(unknown)
    }

    /// Binds the single row of `batch` as the statement's parameters.
    pub fn bind(&self, handle: &[u8], batches: &[RecordBatch]) -> Result<(), Status> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows != 1 {
            return Err(Status::invalid_argument(format!(
                "bind exactly one row of parameters to a query; got {rows}"
            )));
        }
        let Some(batch) = batches.iter().find(|b| b.num_rows() == 1) else {
            return Err(Status::invalid_argument("no parameter row was sent"));
        };
        let values = batch
            .columns()
            .iter()
            .map(|c| ScalarValue::try_from_array(c, 0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(format!("cannot read a parameter: {e}")))?;
        let mut statements = self.lock();
        let prepared = statements.get_mut(handle).ok_or_else(unknown)?;
        prepared.params = Some(values);
        Ok(())
    }

    pub fn close(&self, handle: &[u8]) -> Result<(), Status> {
        self.lock().remove(handle).map(|_| ()).ok_or_else(unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_bounded_and_checked() {
        let r = Registry::new(2);
        let a = r.create("SELECT 1".into()).unwrap();
        let _b = r.create("SELECT 2".into()).unwrap();
        assert_eq!(
            r.create("SELECT 3".into()).unwrap_err().code(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(r.get(&a).unwrap().sql, "SELECT 1");
        r.close(&a).unwrap();
        assert_eq!(r.get(&a).unwrap_err().code(), tonic::Code::NotFound);
        assert_eq!(r.close(&a).unwrap_err().code(), tonic::Code::NotFound);
        assert_eq!(r.get(b"nope").unwrap_err().code(), tonic::Code::NotFound);
    }
}
