//! The value types settings are written in (sizes, durations, policies):
//! each parses from a flag or variable (`FromStr`) and from the file
//! (serde) with the same rules and the same messages.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A byte size written as `1GiB`, `512MiB`, `8MB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| ByteSize(b.as_u64()))
            .map_err(|_| format!("`{s}` is not a size (try 512MiB or 1GiB)"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written as `30s`, `15m`, `1h` or `0s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(Span)
            .map_err(|_| format!("`{s}` is not a duration (try 30s, 15m or 1h)"))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Cache eviction policies that foyer offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Eviction {
    Lru,
    Lfu,
    S3fifo,
    Fifo,
    Sieve,
}

impl Eviction {
    /// Every policy, in the order the docs list them.
    pub const ALL: [Eviction; 5] = [
        Eviction::Lru,
        Eviction::Lfu,
        Eviction::S3fifo,
        Eviction::Fifo,
        Eviction::Sieve,
    ];

    /// The name the configuration spells it with.
    pub fn name(self) -> &'static str {
        match self {
            Eviction::Lru => "lru",
            Eviction::Lfu => "lfu",
            Eviction::S3fifo => "s3fifo",
            Eviction::Fifo => "fifo",
            Eviction::Sieve => "sieve",
        }
    }
}

impl FromStr for Eviction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lru" => Ok(Eviction::Lru),
            "lfu" => Ok(Eviction::Lfu),
            "s3fifo" => Ok(Eviction::S3fifo),
            "fifo" => Ok(Eviction::Fifo),
            "sieve" => Ok(Eviction::Sieve),
            other => Err(format!(
                "`{other}` is not an eviction policy (lru, lfu, s3fifo, fifo or sieve)"
            )),
        }
    }
}

/// What a node does when a scan needs bytes it does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissPolicy {
    /// The owner fetches from the origin, fills the cache and streams.
    ReadThrough,
    /// A cold object goes to a client that accepts URLs as a pre-signed GET
    /// URL, and the owner warms it in the background.
    Presign,
    /// As `presign`, for cold objects larger than `presign_min_bytes`.
    Auto,
}

impl FromStr for MissPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read-through" => Ok(MissPolicy::ReadThrough),
            "presign" => Ok(MissPolicy::Presign),
            "auto" => Ok(MissPolicy::Auto),
            other => Err(format!(
                "`{other}` is not a miss policy (read-through, presign or auto)"
            )),
        }
    }
}
