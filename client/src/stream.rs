//! Record batch streams from nodes: a timeout on progress rather than on the
//! whole read, and a row cap across several endpoints.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::error::ClientError;

/// Batches as a client reads them.
pub type BatchStream = BoxStream<'static, Result<RecordBatch, ClientError>>;

/// `stream` failing when the node sends nothing for `timeout`: a long
/// healthy scan is never cut short, a stalled one is.
pub fn with_progress_timeout(
    stream: FlightRecordBatchStream,
    timeout: Duration,
    url: String,
) -> BatchStream {
    futures::stream::unfold(Some(stream), move |state| {
        let url = url.clone();
        async move {
            let mut s = state?;
            match tokio::time::timeout(timeout, s.next()).await {
                Ok(Some(Ok(batch))) => Some((Ok(batch), Some(s))),
                Ok(Some(Err(e))) => Some((Err(ClientError::from(e).at(&url)), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(ClientError::Connect {
                        url,
                        reason: format!("the node sent nothing for {timeout:?}"),
                    }),
                    None,
                )),
            }
        }
    })
    .boxed()
}

/// At most `limit` rows of `stream`, cutting the last batch; stops reading
/// once the cap is reached.
pub fn limit_rows(stream: BatchStream, limit: Option<u64>) -> BatchStream {
    let Some(limit) = limit else {
        return stream;
    };
    futures::stream::unfold((stream, limit), |(mut s, left)| async move {
        if left == 0 {
            return None;
        }
        match s.next().await? {
            Ok(batch) => {
                let n = batch.num_rows() as u64;
                if n <= left {
                    Some((Ok(batch), (s, left - n)))
                } else {
                    // `left < n <= usize::MAX`, so the cast is exact.
                    Some((Ok(batch.slice(0, left as usize)), (s, 0)))
                }
            }
            Err(e) => Some((Err(e), (s, 0))),
        }
    })
    .boxed()
}
