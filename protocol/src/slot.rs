use crc::{Crc, CRC_16_XMODEM};

/// Number of hash slots the key space is cut into, as in Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

const XMODEM: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);

/// The part of a key that is hashed: the text inside the first `{...}` when it
/// is non-empty, so that users can co-locate related objects; otherwise the
/// whole key. Same rule as Redis Cluster, so its test vectors apply.
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// `CRC16/XMODEM(hash_tag(key)) mod 16384`.
pub fn key_slot(key: &str) -> u16 {
    XMODEM.checksum(hash_tag(key).as_bytes()) % SLOT_COUNT
}

/// The slot of an object: the key is `"<source>/<path>"`.
pub fn slot_of(source: &str, path: &str) -> u16 {
    key_slot(&format!("{source}/{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value() {
        assert_eq!(XMODEM.checksum(b"123456789"), 0x31C3);
    }

    #[test]
    fn redis_test_vectors() {
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("bar"), 5061);
        assert_eq!(
            key_slot("{user1000}.following"),
            key_slot("{user1000}.followers")
        );
    }

    #[test]
    fn hash_tag_edge_cases() {
        assert_eq!(hash_tag("foo{}{bar}"), "foo{}{bar}");
        assert_eq!(hash_tag("foo{{bar}}zap"), "{bar");
        assert_eq!(hash_tag("foo{bar}{zap}"), "bar");
        assert_eq!(hash_tag("no-tag"), "no-tag");
        assert_eq!(hash_tag("open{only"), "open{only");
    }

    #[test]
    fn object_keys_use_source_and_path() {
        assert_eq!(slot_of("lake", "t/a.parquet"), key_slot("lake/t/a.parquet"));
        assert_eq!(
            slot_of("lake", "t/{day1}/a.parquet"),
            slot_of("other", "x/{day1}/b.parquet")
        );
    }
}
