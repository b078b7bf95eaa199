//! Keeping secrets out of messages and logs: secrets themselves are `secrecy`'s
//! `SecretString` (redacted in `Debug`, wiped when dropped); URLs, which may carry
//! `user:password@`, are shown with it replaced.

/// `url` with any `user:password@` replaced by `***@`, for messages (it works on text that
/// is not a valid URL too).
pub fn redact_userinfo(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..start], &url[start + at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_userinfo;

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            redact_userinfo("http://u:p@w@host:5000/v2/"),
            "http://***@host:5000/v2/"
        );
        assert_eq!(redact_userinfo("https://host/a@b"), "https://host/a@b");
        assert_eq!(redact_userinfo("not a url"), "not a url");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let s = secrecy::SecretString::from("hunter2");
        let shown = format!("{:?}", Some((String::from("k"), s)));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
