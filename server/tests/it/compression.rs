//! IPC body compression is negotiated per request (`docs/protocol.md`,
//! "Compression"): asked for in the ticket or a header, the header winning;
//! the batches are the same, the bodies compressed with the codec asked for;
//! a codec the node does not know is the request's error, and the node
//! goes on serving.

use arrow::array::RecordBatch;
use arrow::ipc::{root_as_message, CompressionType};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::FlightData;
use futures::TryStreamExt;
use quiver_protocol::{IpcCompression, ScanRequest, COMPRESSION_HEADER};
use tonic::Code;

use crate::common::*;

/// DoGet of `req` with `header`, if any: the codec of every record batch
/// message, and the batches decoded.
async fn get(
    node: &quiver_server::RunningNode,
    req: &ScanRequest,
    header: Option<&str>,
) -> Result<(Vec<Option<CompressionType>>, Vec<RecordBatch>), tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", node.flight_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = FlightServiceClient::new(channel);
    let mut request = tonic::Request::new(ticket(req));
    if let Some(h) = header {
        request
            .metadata_mut()
            .insert(COMPRESSION_HEADER, h.parse().unwrap());
    }
    let messages: Vec<FlightData> = raw
        .do_get(request)
        .await?
        .into_inner()
        .try_collect()
        .await?;
    let codecs = messages
        .iter()
        .filter_map(|m| root_as_message(&m.data_header).ok())
        .filter_map(|m| m.header_as_record_batch())
        .map(|b| b.compression().map(|c| c.codec()))
        .collect();
    let batches = FlightRecordBatchStream::new_from_flight_data(futures::stream::iter(
        messages.into_iter().map(Ok),
    ))
    .try_collect()
    .await
    .map_err(into_status)?;
    Ok((codecs, batches))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_is_negotiated_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t/data.parquet");
    write_parquet(&file, 6000, 40);
    let node = quiver_server::RunningNode::start(node_config(
        vec![local_source("local", dir.path())],
        None,
    ))
    .await
    .unwrap();
    let mut req = scan("local", "t/data.parquet");
    req.filter = Some("qty > 10".into());
    let want = rows(&reference(&file, None, req.filter.as_deref()).await);

    use IpcCompression::*;
    let cases = [
        (None, None, None),
        (Some(Zstd), None, Some(CompressionType::ZSTD)),
        (Some(Lz4Frame), None, Some(CompressionType::LZ4_FRAME)),
        (None, Some("lz4_frame"), Some(CompressionType::LZ4_FRAME)),
        (Some(Zstd), Some("lz4"), Some(CompressionType::LZ4_FRAME)),
        (Some(Zstd), Some("none"), None),
    ];
    for (in_ticket, header, codec) in cases {
        let mut req = req.clone();
        req.compression = in_ticket;
        let (codecs, batches) = get(&node, &req, header).await.unwrap();
        assert!(
            !codecs.is_empty(),
            "{in_ticket:?} {header:?}: no record batches"
        );
        assert!(
            codecs.iter().all(|c| *c == codec),
            "{in_ticket:?} {header:?}: codecs {codecs:?}, want {codec:?}"
        );
        assert_eq!(rows(&batches), want, "{in_ticket:?} {header:?}");
    }

    // GetFlightInfo copies the descriptor's codec into its tickets.
    let mut planned = req.clone();
    planned.compression = Some(Zstd);
    let info = flight_info(&mut client(&node).await, &planned)
        .await
        .unwrap();
    for endpoint in &info.endpoint {
        let t = ScanRequest::from_bytes(&endpoint.ticket.as_ref().unwrap().ticket).unwrap();
        assert_eq!(t.compression, Some(Zstd));
    }

    let err = get(&node, &req, Some("gzip")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("gzip"), "{err}");
    let bad_ticket = br#"{"source":"local","path":"t/data.parquet","compression":"gzip"}"#;
    let err = do_get_raw(&mut client(&node).await, bad_ticket)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let batches = do_get(&mut client(&node).await, &req).await.unwrap();
    assert_eq!(rows(&batches), want, "the node still serves");
    node.shutdown().await.unwrap();
}
