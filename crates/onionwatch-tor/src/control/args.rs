//! Tokens of reply and event lines: positional words, `KEY=value` pairs and
//! control-spec `QuotedString`s with C-style escapes.

/// One space-separated token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A bare or quoted word.
    Word(String),
    /// `KEY=value` (value unquoted if it was quoted).
    Pair(String, String),
}

/// Split a line into tokens. Quoted strings may contain spaces; a quoted
/// string left open runs to the end of the line (tor never sends one; being
/// lenient keeps odd lines readable).
pub fn tokenize(s: &str) -> Vec<Token> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        if b[i] == b'"' {
            let (v, used) = unquote(&b[i..]);
            out.push(Token::Word(lossy(v)));
            i += used;
            continue;
        }
        let start = i;
        let key_end = b[i..]
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'/'))
            .map_or(b.len(), |p| i + p);
        if key_end > start && key_end < b.len() && b[key_end] == b'=' {
            let key = s[start..key_end].to_owned();
            i = key_end + 1;
            // tor quotes some values twice (`DATA=""PROTOCOL""` in
            // STATUS_CLIENT SOCKS_UNKNOWN_PROTOCOL): an empty string glued
            // to more text is that, so read the inner quoted string.
            let doubled = b.get(i) == Some(&b'"')
                && b.get(i + 1) == Some(&b'"')
                && b.get(i + 2).is_some_and(|&c| c != b' ');
            if doubled {
                let (v, used) = unquote(&b[i + 1..]);
                out.push(Token::Pair(key, lossy(v)));
                i += 1 + used;
                if b.get(i) == Some(&b'"') {
                    i += 1;
                }
            } else if i < b.len() && b[i] == b'"' {
                let (v, used) = unquote(&b[i..]);
                out.push(Token::Pair(key, lossy(v)));
                i += used;
            } else {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b' ')
                    .map_or(b.len(), |p| i + p);
                out.push(Token::Pair(key, s[i..end].to_owned()));
                i = end;
            }
            continue;
        }
        let end = b[i..]
            .iter()
            .position(|&c| c == b' ')
            .map_or(b.len(), |p| i + p);
        out.push(Token::Word(s[start..end].to_owned()));
        i = end;
    }
    out
}

fn lossy(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Decode a quoted string starting at `b[0] == '"'`. Returns the bytes and
/// how many input bytes were used (through the closing quote, or all).
///
/// Escapes: `\n \r \t \\ \" \'`, octal `\ooo` (1-3 digits) and `\xHH`; any
/// other escaped byte stands for itself.
pub fn unquote(b: &[u8]) -> (Vec<u8>, usize) {
    debug_assert_eq!(b.first(), Some(&b'"'));
    let mut out = Vec::new();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'"' => return (out, i + 1),
            b'\\' if i + 1 < b.len() => {
                let c = b[i + 1];
                i += 2;
                match c {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'0'..=b'7' => {
                        let mut v = u32::from(c - b'0');
                        let mut n = 1;
                        while n < 3 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                            v = v * 8 + u32::from(b[i] - b'0');
                            i += 1;
                            n += 1;
                        }
                        out.push(v as u8);
                    }
                    b'x' if i + 1 < b.len()
                        && b[i].is_ascii_hexdigit()
                        && b[i + 1].is_ascii_hexdigit() =>
                    {
                        out.push(hex_val(b[i]) << 4 | hex_val(b[i + 1]));
                        i += 2;
                    }
                    other => out.push(other),
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    (out, b.len())
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// Quote `s` as a control-spec `QuotedString`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\{:03o}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decode hex (either case); `None` if malformed.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() & 1 == 1 || !b.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    Some(
        b.chunks(2)
            .map(|p| hex_val(p[0]) << 4 | hex_val(p[1]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use Token::*;

    fn w(s: &str) -> Token {
        Word(s.into())
    }
    fn p(k: &str, v: &str) -> Token {
        Pair(k.into(), v.into())
    }

    #[test]
    fn tokenizes_pairs_and_quotes() {
        assert_eq!(
            tokenize(r#"NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done here""#),
            vec![
                w("NOTICE"),
                w("BOOTSTRAP"),
                p("PROGRESS", "100"),
                p("TAG", "done"),
                p("SUMMARY", "Done here")
            ]
        );
        assert_eq!(
            tokenize(r#"AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/a b/c\"d\\e""#),
            vec![
                w("AUTH"),
                p("METHODS", "COOKIE,SAFECOOKIE"),
                p("COOKIEFILE", "/a b/c\"d\\e")
            ]
        );
        assert_eq!(
            tokenize(r#""127.0.0.1:9050" "unix:/x y""#),
            vec![w("127.0.0.1:9050"), w("unix:/x y")]
        );
        assert_eq!(tokenize("  a   b  "), vec![w("a"), w("b")]);
        assert_eq!(tokenize("$AB~nick,$CD~x"), vec![w("$AB~nick,$CD~x")]);
        assert_eq!(tokenize("=x K= ="), vec![w("=x"), p("K", ""), w("=")]);
        assert_eq!(tokenize(r#"K="open"#), vec![p("K", "open")]);
        assert_eq!(tokenize(r#"K="a\"#), vec![p("K", "a\\")]);
        assert_eq!(tokenize(""), vec![]);
        assert_eq!(tokenize("é=ü x"), vec![w("é=ü"), w("x")]);
    }

    #[test]
    fn doubly_quoted_values_are_read_whole() {
        // As tor 0.4.9 sends them.
        assert_eq!(
            tokenize(r#"WARN SOCKS_UNKNOWN_PROTOCOL DATA=""PROTOCOL"""#),
            vec![
                w("WARN"),
                w("SOCKS_UNKNOWN_PROTOCOL"),
                p("DATA", "PROTOCOL")
            ]
        );
        assert_eq!(
            tokenize(r#"DATA=""GET \"x\\ "" N=1"#),
            vec![p("DATA", r#"GET "x\ "#), p("N", "1")]
        );
        // A plain empty string stays one.
        assert_eq!(tokenize(r#"A="" B="""#), vec![p("A", ""), p("B", "")]);
        // Cut short: no panic, the text so far.
        assert_eq!(tokenize(r#"A=""x"#), vec![p("A", "x")]);
        assert_eq!(tokenize(r#"A=""x""#), vec![p("A", "x")]);
    }

    #[test]
    fn unquote_escapes() {
        assert_eq!(
            unquote(br#""a\nb\tc\r\101\x41\q""#),
            (b"a\nb\tc\rAAq".to_vec(), 21)
        );
        assert_eq!(unquote(br#""\377\0""#).0, vec![0xff, 0]);
        assert_eq!(unquote(br#""\xZZ""#).0, b"xZZ".to_vec());
        assert_eq!(unquote(b"\"").0, Vec::<u8>::new());
        assert_eq!(unquote(br#""\"#).0, b"\\".to_vec());
        assert_eq!(unquote(br#""\777""#).0, vec![0xff]);
    }

    #[test]
    fn quote_round_trips() {
        for s in [
            "",
            "pass word",
            "q\"uote",
            "back\\slash",
            "nl\nx\r\t\x01\x7f",
            "ünï",
        ] {
            let q = quote(s);
            assert!(!q.contains('\n') && !q.contains('\r'), "{q}");
            let (back, used) = unquote(q.as_bytes());
            assert_eq!(used, q.len());
            assert_eq!(String::from_utf8(back).unwrap(), s);
        }
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00ABff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }
}
