//! Parsing of registry link files, whose whole body is `sha256:<64 hex>`. Pure.
//! Anything but exactly that (a newline aside) is malformed: the caller fails closed.

use crate::digest::Digest;

/// Parses a link file's body; `None` unless it is exactly `sha256:<64 lowercase hex>`.
pub fn parse_link(body: &[u8]) -> Option<Digest> {
    Digest::parse(std::str::from_utf8(body).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exact_links_only() {
        let good = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert!(parse_link(good.as_bytes()).is_some());
        assert!(parse_link(format!("{good}\n").as_bytes()).is_none());
        assert!(parse_link(&good.as_bytes()[..40]).is_none());
        assert!(parse_link(b"\xff\xfe").is_none());
        assert!(parse_link(b"").is_none());
    }
}
