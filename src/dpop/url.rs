//! URL normalisation for `htu` (RFC 9449 §4.3 step 9): syntax-based and scheme-based
//! normalisation of RFC 3986 §6.2.2 and §6.2.3, without query and fragment.

/// `scheme://host[:port]/path` normalised, or `None` for anything that is not an `http` or
/// `https` URL with a host (userinfo refused, invalid percent-encoding refused).
pub(super) fn normalize(url: &str) -> Option<String> {
    let url = url.split('#').next().unwrap_or(url);
    let url = url.split('?').next().unwrap_or(url);
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        (&authority[..=end], &authority[end + 1..])
    } else {
        match authority.rfind(':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        }
    };
    if host.is_empty()
        || !host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'[' | b']' | b':')
        })
    {
        return None;
    }
    let port = match port.strip_prefix(':') {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
            let n = p.parse::<u16>().ok()?;
            (n != default_port).then_some(n)
        }
        Some(_) => return None,
    };
    let path = remove_dot_segments(&normalize_percent(path)?);
    let mut out = format!("{scheme}://{}", host.to_ascii_lowercase());
    if let Some(port) = port {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out.push_str(&path);
    Some(out)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Upper-case hex in percent-encodings, unreserved characters decoded; `None` for a bad
/// percent-encoding or a byte outside visible ASCII.
fn normalize_percent(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            // Two hex digits exactly (`from_str_radix` alone would take `+F`).
            if !hex.bytes().all(|d| d.is_ascii_hexdigit()) {
                return None;
            }
            let v = u8::from_str_radix(hex, 16).ok()?;
            if is_unreserved(v) {
                out.push(char::from(v));
            } else {
                out.push_str(&format!("%{v:02X}"));
            }
            i += 3;
        } else if (0x21..=0x7e).contains(&b) {
            out.push(char::from(b));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// RFC 3986 §5.2.4 for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_urls_normalise_alike() {
        let want = "https://api.example/a/b";
        for url in [
            "https://api.example/a/b",
            "HTTPS://API.Example/a/b",
            "https://api.example:443/a/b",
            "https://api.example/a/./b",
            "https://api.example/a/x/../b",
            "https://api.example/%61/b",
            "https://api.example/a/b?x=1",
            "https://api.example/a/b#frag",
        ] {
            assert_eq!(normalize(url).as_deref(), Some(want), "{url}");
        }
        assert_eq!(normalize("http://h").as_deref(), Some("http://h/"));
        assert_eq!(normalize("http://h:80/").as_deref(), Some("http://h/"));
        assert_eq!(
            normalize("http://h:8080/").as_deref(),
            Some("http://h:8080/")
        );
        assert_eq!(normalize("http://h/%2f").as_deref(), Some("http://h/%2F"));
        assert_eq!(
            normalize("http://[::1]:80/x").as_deref(),
            Some("http://[::1]/x")
        );
        assert_eq!(normalize("http://h/a/..").as_deref(), Some("http://h/"));
    }

    #[test]
    fn different_urls_differ_and_junk_is_refused() {
        // Percent-encodings need two hex digits (`from_str_radix` alone takes a sign).
        assert_eq!(normalize("https://h/%+F"), None);
        assert_eq!(normalize("https://h/%-1"), None);
        assert_ne!(normalize("https://h/a"), normalize("http://h/a"));
        assert_ne!(normalize("https://h/a"), normalize("https://h:8443/a"));
        assert_ne!(normalize("https://h/a"), normalize("https://h/A"));
        for bad in [
            "ftp://h/",
            "https://",
            "https://u:p@h/",
            "https://h/%zz",
            "https://h/%4",
            "https://h:99999/",
            "https://h:x/",
            "https://h/a b",
            "h/a",
            "https://h h/",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }
}
