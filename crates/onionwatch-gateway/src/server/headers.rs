//! What the gateway changes in forwarded headers: hop-by-hop headers go,
//! and so does every spelling of the circuit-id header a client sent.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

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
