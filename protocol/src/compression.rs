//! Compression of the Arrow IPC bodies a node streams, which a client asks
//! for per request. Off by default: some Flight clients (the JDBC driver,
//! C#) cannot read compressed bodies, and on loopback compressing costs
//! more CPU than the bytes it saves.

use serde::{Deserialize, Serialize};

/// The DoGet header that asks for compression, with the values of
/// [`IpcCompression::name`]; it wins over the ticket's `compression`.
pub const COMPRESSION_HEADER: &str = "x-quiver-ipc-compression";

/// An Arrow IPC body compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpcCompression {
    /// LZ4 frame format: fast to compress and decode; for links of a few
    /// Gbit/s and up.
    #[serde(rename = "lz4_frame")]
    Lz4Frame,
    /// Zstandard: smaller bodies for more CPU; for slower links.
    #[serde(rename = "zstd")]
    Zstd,
}

impl IpcCompression {
    /// The codec's name in tickets and in [`COMPRESSION_HEADER`].
    pub fn name(self) -> &'static str {
        match self {
            IpcCompression::Lz4Frame => "lz4_frame",
            IpcCompression::Zstd => "zstd",
        }
    }

    /// Reads a codec name; `none` (or an empty value) asks for none.
    pub fn parse(name: &str) -> Result<Option<Self>, String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Ok(None),
            "lz4_frame" | "lz4" => Ok(Some(IpcCompression::Lz4Frame)),
            "zstd" => Ok(Some(IpcCompression::Zstd)),
            other => Err(format!(
                "unknown IPC compression `{other}`; use lz4_frame, zstd or none"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for c in [IpcCompression::Lz4Frame, IpcCompression::Zstd] {
            assert_eq!(IpcCompression::parse(c.name()), Ok(Some(c)));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.name()));
        }
        assert_eq!(
            IpcCompression::parse(" ZSTD "),
            Ok(Some(IpcCompression::Zstd))
        );
        assert_eq!(IpcCompression::parse("none"), Ok(None));
        let err = IpcCompression::parse("gzip").unwrap_err();
        assert!(err.contains("gzip") && err.contains("lz4_frame"), "{err}");
    }
}
