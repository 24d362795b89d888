//! `SOURCE/PATH` arguments: a configured source's name, then a key or a
//! prefix ending in `/` inside it.

use quiver_client::ClientError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub source: String,
    pub path: String,
}

impl Target {
    /// `lake/tpch/lineitem/` is source `lake`, prefix `tpch/lineitem/`;
    /// `lake` alone is the whole source.
    pub fn parse(spec: &str) -> Result<Target, ClientError> {
        let (source, path) = spec.split_once('/').unwrap_or((spec, ""));
        if source.is_empty() {
            return Err(ClientError::Refused(format!(
                "`{spec}` does not start with a source name; write SOURCE/PATH, e.g. lake/tpch/lineitem/"
            )));
        }
        Ok(Target {
            source: source.to_string(),
            path: path.to_string(),
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.source, self.path)
    }
}

/// `NAME=SOURCE/PATH` of `quiver sql --table`.
pub fn parse_table(spec: &str) -> Result<(String, Target), ClientError> {
    let bad = || {
        ClientError::Refused(format!(
            "bad --table `{spec}`: write NAME=SOURCE/PATH, e.g. lineitem=lake/tpch/lineitem/"
        ))
    };
    let (name, target) = spec.split_once('=').ok_or_else(bad)?;
    let name = name.trim();
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name || target.trim().is_empty() {
        return Err(bad());
    }
    Ok((name.to_string(), Target::parse(target.trim())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets_and_tables() {
        let t = Target::parse("lake/tpch/lineitem/").unwrap();
        assert_eq!(
            (t.source.as_str(), t.path.as_str()),
            ("lake", "tpch/lineitem/")
        );
        let t = Target::parse("lake").unwrap();
        assert_eq!((t.source.as_str(), t.path.as_str()), ("lake", ""));
        assert!(Target::parse("/x").is_err());
        let (name, t) = parse_table("li=lake/tpch/lineitem/").unwrap();
        assert_eq!((name.as_str(), t.path.as_str()), ("li", "tpch/lineitem/"));
        for bad in ["li", "=lake/x", "1x=lake/x", "a b=lake/x", "li="] {
            assert!(parse_table(bad).is_err(), "{bad}");
        }
    }
}
