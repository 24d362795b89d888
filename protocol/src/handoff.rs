//! The frames of a `handoff-read` stream: one chunk each, as its 8-byte
//! big-endian index, with a checksum the 4-byte big-endian CRC-32C of its
//! bytes, then its bytes; or, when the request asks for `parts`, one part
//! of a chunk each, its offset in the chunk (8 bytes, big-endian) after
//! the index. The donor builds them; the importer and the peer fill of a
//! miss take them apart.

use bytes::{Bytes, BytesMut};

/// Bytes before a checksummed chunk: its index and its CRC-32C.
const FRAME_HEADER: usize = 12;

/// Bytes before a checksummed part: its chunk's index, its offset in the
/// chunk and its CRC-32C.
const PART_HEADER: usize = 20;

/// The CRC-32C (Castagnoli) a checksummed `handoff-read` frame carries.
pub fn handoff_checksum(bytes: &[u8]) -> u32 {
    const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    CRC32C.checksum(bytes)
}

/// Why a checksummed frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a chunk frame is shorter than its header")]
    Short,
    #[error("chunk {index} does not match its checksum")]
    Checksum { index: u64 },
}

/// Frames chunk `index`: its index, with `checksum` the CRC-32C of
/// `bytes`, then `bytes`.
pub fn frame_chunk(index: u64, bytes: &[u8], checksum: bool) -> Bytes {
    let mut framed = BytesMut::with_capacity(FRAME_HEADER + bytes.len());
    framed.extend_from_slice(&index.to_be_bytes());
    if checksum {
        framed.extend_from_slice(&handoff_checksum(bytes).to_be_bytes());
    }
    framed.extend_from_slice(bytes);
    framed.freeze()
}

/// Splits a checksummed `handoff-read` frame into its chunk index and
/// bytes, after checking the bytes against the checksum.
pub fn unframe_chunk(framed: Bytes) -> Result<(u64, Bytes), FrameError> {
    if framed.len() < FRAME_HEADER {
        return Err(FrameError::Short);
    }
    let mut index = [0u8; 8];
    index.copy_from_slice(&framed[..8]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&framed[8..FRAME_HEADER]);
    let bytes = framed.slice(FRAME_HEADER..);
    let index = u64::from_be_bytes(index);
    if handoff_checksum(&bytes) != u32::from_be_bytes(crc) {
        return Err(FrameError::Checksum { index });
    }
    Ok((index, bytes))
}

/// Frames the bytes of chunk `index` from `offset`: the index, the offset,
/// with `checksum` the CRC-32C of `bytes`, then `bytes`.
pub fn frame_part(index: u64, offset: u64, bytes: &[u8], checksum: bool) -> Bytes {
    let mut framed = BytesMut::with_capacity(PART_HEADER + bytes.len());
    framed.extend_from_slice(&index.to_be_bytes());
    framed.extend_from_slice(&offset.to_be_bytes());
    if checksum {
        framed.extend_from_slice(&handoff_checksum(bytes).to_be_bytes());
    }
    framed.extend_from_slice(bytes);
    framed.freeze()
}

/// Splits a checksummed part frame into its chunk index, its offset and
/// its bytes, after checking the bytes against the checksum.
pub fn unframe_part(framed: Bytes) -> Result<(u64, u64, Bytes), FrameError> {
    if framed.len() < PART_HEADER {
        return Err(FrameError::Short);
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&framed[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let (index, offset) = (word(0), word(8));
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&framed[16..PART_HEADER]);
    let bytes = framed.slice(PART_HEADER..);
    if handoff_checksum(&bytes) != u32::from_be_bytes(crc) {
        return Err(FrameError::Checksum { index });
    }
    Ok((index, offset, bytes))
}

#[cfg(test)]
mod tests {
    use super::{
        frame_chunk, frame_part, handoff_checksum, unframe_chunk, unframe_part, FrameError,
    };
    use bytes::Bytes;

    fn frame(index: u64, crc: u32, bytes: &[u8]) -> Bytes {
        let mut f = index.to_be_bytes().to_vec();
        f.extend_from_slice(&crc.to_be_bytes());
        f.extend_from_slice(bytes);
        Bytes::from(f)
    }

    #[test]
    fn a_chunk_that_fails_its_checksum_is_refused() {
        let bytes = b"some chunk bytes";
        let good = frame(7, handoff_checksum(bytes), bytes);
        assert_eq!(unframe_chunk(good).unwrap(), (7, Bytes::from_static(bytes)));
        let mut flipped = bytes.to_vec();
        flipped[3] ^= 1;
        assert!(unframe_chunk(frame(7, handoff_checksum(bytes), &flipped)).is_err());
        assert!(unframe_chunk(Bytes::from_static(b"short")).is_err());
        // An empty chunk still carries its header.
        assert!(unframe_chunk(frame(0, handoff_checksum(b""), b"")).is_ok());
    }

    #[test]
    fn frames_are_laid_out_as_the_protocol_says() {
        let bytes = b"some chunk bytes";
        assert_eq!(
            frame_chunk(7, bytes, true),
            frame(7, handoff_checksum(bytes), bytes)
        );
        let mut plain = 7u64.to_be_bytes().to_vec();
        plain.extend_from_slice(bytes);
        assert_eq!(frame_chunk(7, bytes, false), Bytes::from(plain));
        let mut flipped = bytes.to_vec();
        flipped[3] ^= 1;
        let bad = frame(7, handoff_checksum(bytes), &flipped);
        assert_eq!(
            unframe_chunk(bad).unwrap_err().to_string(),
            "chunk 7 does not match its checksum"
        );
        assert_eq!(
            unframe_chunk(Bytes::from_static(b"short")),
            Err(FrameError::Short)
        );
    }

    #[test]
    fn part_frames_carry_their_offset_and_are_checked() {
        let bytes = b"part of a chunk";
        let framed = frame_part(3, 4096, bytes, true);
        let mut want = 3u64.to_be_bytes().to_vec();
        want.extend_from_slice(&4096u64.to_be_bytes());
        want.extend_from_slice(&handoff_checksum(bytes).to_be_bytes());
        want.extend_from_slice(bytes);
        assert_eq!(framed, Bytes::from(want));
        assert_eq!(
            unframe_part(framed.clone()).unwrap(),
            (3, 4096, Bytes::from_static(bytes))
        );
        let mut bad = framed.to_vec();
        bad[22] ^= 1;
        assert_eq!(
            unframe_part(Bytes::from(bad)),
            Err(FrameError::Checksum { index: 3 })
        );
        assert_eq!(
            unframe_part(frame_chunk(3, bytes, true).slice(..12)),
            Err(FrameError::Short)
        );
    }
}
