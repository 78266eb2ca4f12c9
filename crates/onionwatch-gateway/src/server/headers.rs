//! What the gateway changes in forwarded headers: hop-by-hop headers go,
//! and so does every spelling of the circuit-id header a client sent; and
//! which requests it refuses to forward at all (bad `Host`).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

/// Why a request's `Host` makes it unfit to forward (RFC 9112 §3.2): the
/// upstream would pick a virtual host from a field we cannot vouch for.
/// `None` when it is fine. An HTTP/1.0 request without `Host` is refused
/// too, rather than given the upstream's address: that would route it to
/// the upstream's default virtual host, which may not be the onion site.
pub(super) fn host_problem(version: Version, headers: &HeaderMap) -> Option<&'static str> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let Some(host) = hosts.next() else {
        return Some(if version == Version::HTTP_10 {
            "400 Bad Request: an HTTP/1.0 request without a Host header is not forwarded; send Host\n"
        } else {
            "400 Bad Request: a request without a Host header (required by HTTP/1.1)\n"
        });
    };
    if hosts.next().is_some() {
        return Some("400 Bad Request: more than one Host header\n");
    }
    (!valid_host(host.as_bytes()))
        .then_some("400 Bad Request: the Host header is not a valid host[:port]\n")
}

/// Make `headers` fit to forward: remove hop-by-hop headers (RFC 9110
/// §7.6.1) and, given `circuit`, every header of the circuit-id name (all
/// occurrences, and its spellings with `_` for `-`: CGI, PHP and WSGI map
/// both to the same variable, so both are spoofing). With `allow_upgrade`,
/// an upgrade request keeps `Upgrade` and `Connection: upgrade`. Returns
/// whether it is such an upgrade.
pub(super) fn clean_headers(
    headers: &mut HeaderMap,
    circuit: Option<&HeaderName>,
    allow_upgrade: bool,
) -> bool {
    // One scan first: most messages need no removal, and each removal
    // hashes its name.
    let (mut connection, mut hop, mut spoof) = (false, false, false);
    for name in headers.keys() {
        if name == header::CONNECTION {
            connection = true;
        } else if is_hop_by_hop(name) {
            hop = true;
        } else if let Some(c) = circuit {
            spoof |= name == c || (name.as_str().contains('_') && same_with_dashes(name, c));
        }
    }
    let upgrade = allow_upgrade
        && connection
        && headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"));
    if connection {
        let listed: Vec<HeaderName> = connection_tokens(headers)
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .filter(|n| !(upgrade && n == header::UPGRADE))
            .collect();
        for n in listed {
            headers.remove(n);
        }
        headers.remove(header::CONNECTION);
    }
    if hop {
        for n in [
            header::TE,
            header::TRAILER,
            header::TRANSFER_ENCODING,
            HeaderName::from_static("keep-alive"),
            HeaderName::from_static("proxy-connection"),
        ] {
            headers.remove(n);
        }
        if !upgrade {
            headers.remove(header::UPGRADE);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if let (true, Some(c)) = (spoof, circuit) {
        headers.remove(c);
        let spoofs: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().contains('_') && same_with_dashes(k, c))
            .cloned()
            .collect();
        for k in spoofs {
            headers.remove(&k);
        }
    }
    upgrade
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2), possibly empty: a registered
/// name or IPv4 address, or an IP literal in brackets; never user info, a
/// path or spaces.
fn valid_host(v: &[u8]) -> bool {
    let (host, port) = match v.strip_prefix(b"[") {
        Some(rest) => match rest.iter().position(|&b| b == b']') {
            Some(end) => {
                let literal = &rest[..end];
                let ok = !literal.is_empty()
                    && literal
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
                if !ok {
                    return false;
                }
                (&b""[..], &rest[end + 1..])
            }
            None => return false,
        },
        None => match v.iter().position(|&b| b == b':') {
            Some(i) => (&v[..i], &v[i..]),
            None => (v, &b""[..]),
        },
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    port_ok
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b))
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// `name` with every `_` read as `-` equals `target`.
fn same_with_dashes(name: &HeaderName, target: &HeaderName) -> bool {
    let (a, b) = (name.as_str().as_bytes(), target.as_str().as_bytes());
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| x == y || (x == b'_' && y == b'-'))
}

/// The comma-separated tokens of every `Connection` header.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn host_must_be_single_valid_and_present() {
        let with = |values: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::HOST, HeaderValue::from_static(v));
            }
            h
        };
        let v11 = Version::HTTP_11;
        assert_eq!(host_problem(v11, &with(&["x.onion"])), None);
        assert_eq!(host_problem(v11, &with(&["x.onion:80"])), None);
        assert_eq!(host_problem(v11, &with(&["[::1]:8080"])), None);
        assert_eq!(host_problem(v11, &with(&[""])), None);
        assert_eq!(host_problem(Version::HTTP_10, &with(&["x.onion"])), None);
        for bad in [
            with(&[]),
            with(&["a.onion", "b.onion"]),
            with(&["a.onion", "a.onion"]),
            with(&["user@x.onion"]),
            with(&["x.onion/path"]),
            with(&["x onion"]),
            with(&["x.onion:port"]),
            with(&["x.onion:80:80"]),
            with(&["[::1"]),
            with(&["[::1]x"]),
        ] {
            assert!(host_problem(v11, &bad).is_some(), "{bad:?}");
        }
        assert!(host_problem(Version::HTTP_10, &with(&[])).is_some());
    }

    #[test]
    fn every_spelling_of_the_circuit_header_is_removed() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("X-Onion-CircuitID", "1"),
            ("x-onion-circuitid", "2"),
            ("X-ONION-CIRCUITID", "3"),
            ("X_Onion_CircuitID", "4"),
            ("x_onion-circuitid", "5"),
            ("X-Onion-Circuit", "keep"),
            ("Accept", "keep"),
        ] {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        clean_headers(&mut h, Some(&Config::default().header()), false);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["accept", "x-onion-circuit"]);
    }

    #[test]
    fn hop_by_hop_headers_go_and_upgrades_keep_theirs() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret, Upgrade"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::HOST, HeaderValue::from_static("x.onion"));
        let mut up = h.clone();
        assert!(clean_headers(&mut up, None, true));
        assert_eq!(up.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(up.get(header::CONNECTION).unwrap(), "upgrade");
        assert!(!up.contains_key("x-secret") && !up.contains_key(header::TE));
        assert!(!clean_headers(&mut h, None, false));
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["host"]);
    }
}
