//! End-to-end tests of the client against in-process fake control ports.

use std::path::Path;
use std::time::Duration;

use tokio::io::{duplex, AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::args::{hex, quote, unhex};
use super::*;

const ADDR: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";
const NULL_INFO: &str =
    "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250-VERSION Tor=\"0.4.9.11\"\r\n250 OK\r\n";
/// Every test must finish well within this.
const LIMIT: Duration = Duration::from_secs(10);

/// A fake tor: for each line the client sends, `handler` returns what to
/// write back (possibly nothing), or `None` to close the connection. The
/// task returns the lines received.
fn fake_tor<F>(mut handler: F) -> (DuplexStream, JoinHandle<Vec<String>>)
where
    F: FnMut(&str) -> Option<String> + Send + 'static,
{
    let (client, server) = duplex(1 << 16);
    let task = tokio::spawn(async move {
        let (r, mut w) = tokio::io::split(server);
        let mut lines = BufReader::new(r).lines();
        let mut seen = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line.clone());
            match handler(&line) {
                Some(out) => {
                    if w.write_all(out.as_bytes()).await.is_err() {
                        break;
                    }
                }
                None => break,
            }
        }
        seen
    });
    (client, task)
}

/// The padded `PROTOCOLINFO 1` the client sends first.
fn is_protocolinfo(line: &str) -> bool {
    line == super::client::protocolinfo_line()
}

fn quick() -> ConnectOptions {
    ConnectOptions {
        timeout: Duration::from_secs(5),
        command_timeout: Some(Duration::from_secs(5)),
        ..ConnectOptions::default()
    }
}

/// Answers PROTOCOLINFO with NULL auth and AUTHENTICATE with OK; other
/// lines go to `rest`.
fn null_tor<F>(mut rest: F) -> impl FnMut(&str) -> Option<String> + Send + 'static
where
    F: FnMut(&str) -> Option<String> + Send + 'static,
{
    move |line| match line {
        l if is_protocolinfo(l) => Some(NULL_INFO.into()),
        "AUTHENTICATE" => Some("250 OK\r\n".into()),
        other => rest(other),
    }
}

async fn connect_fake<F>(handler: F) -> (ControlClient, EventStream, JoinHandle<Vec<String>>)
where
    F: FnMut(&str) -> Option<String> + Send + 'static,
{
    let (stream, task) = fake_tor(handler);
    let (c, e) = timeout(
        LIMIT,
        ControlClient::from_stream(stream, "fake", Auth::default(), quick()),
    )
    .await
    .expect("no hang")
    .expect("connects");
    (c, e, task)
}

#[tokio::test]
async fn typed_commands_against_a_fake_tor() {
    let (tor, _events, task) = connect_fake(null_tor(|line| {
        let r = match line {
            "GETINFO version status/bootstrap-phase" => {
                "250-version=0.4.9.11\r\n250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY=\"Done\"\r\n250 OK\r\n"
            }
            "GETINFO status/bootstrap-phase" => {
                "250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY=\"Done\"\r\n250 OK\r\n"
            }
            "GETINFO circuit-status" => {
                "250+circuit-status=\r\n35 BUILT $A~a,$B~b PURPOSE=HS_SERVICE_REND HS_STATE=HSSR_JOINED REND_QUERY=abc\r\n36 LAUNCHED PURPOSE=GENERAL\r\n.\r\n250 OK\r\n"
            }
            "GETINFO onions/current" => "250-onions/current=aaa\r\n250 OK\r\n",
            "GETINFO onions/detached" => "551 No onion services of the specified type.\r\n",
            "GETINFO net/listeners/socks" => "250-net/listeners/socks=\"127.0.0.1:9050\" \"unix:/run/tor/socks\"\r\n250 OK\r\n",
            "GETCONF HiddenServiceDir SocksPort Nickname" => {
                "250-HiddenServiceDir=/a\r\n250-HiddenServiceDir=/b c\r\n250-SocksPort\r\n250 Nickname=\"my \\\"nick\\\"\"\r\n"
            }
            "SETEVENTS HS_DESC CIRC" | "SIGNAL NEWNYM" | "DEL_ONION aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaad" => "250 OK\r\n",
            "CLOSECIRCUIT 48" => "552 Unknown circuit \"48\"\r\n",
            "CLOSECIRCUIT 35" => "250 OK\r\n",
            "ADD_ONION NEW:ED25519-V3 Flags=Detach Port=80,127.0.0.1:8080" => {
                "250-ServiceID=bbbb\r\n250-PrivateKey=ED25519-V3:c2VjcmV0\r\n250 OK\r\n"
            }
            l if l.starts_with("ONION_CLIENT_AUTH_ADD") => "251 Client for onion existed and replaced\r\n",
            l if l.starts_with("ONION_CLIENT_AUTH_REMOVE") => "250 OK\r\n",
            l if l.starts_with("HSFETCH") => "250 OK\r\n",
            _ => "510 Unrecognized command\r\n",
        };
        Some(r.into())
    }))
    .await;

    assert_eq!(
        tor.protocol_info().unwrap().tor_version.as_deref(),
        Some("0.4.9.11")
    );
    let info = tor
        .get_info(&["version", "status/bootstrap-phase"])
        .await
        .unwrap();
    assert_eq!(info[0], ("version".into(), "0.4.9.11".into()));
    let b = tor.bootstrap_phase().await.unwrap();
    assert_eq!(
        (b.progress, b.tag.as_str(), b.summary.as_str()),
        (100, "done", "Done")
    );

    let circs = tor.circuit_status().await.unwrap();
    assert_eq!(circs.len(), 2);
    assert_eq!(circs[0].id, 35);
    assert_eq!(circs[0].rend_query.as_deref(), Some("abc"));
    assert_eq!(circs[1].status, CircStatus::Launched);

    assert_eq!(tor.onions_current().await.unwrap(), ["aaa"]);
    assert_eq!(
        tor.listeners(ListenerKind::Socks).await.unwrap(),
        ["127.0.0.1:9050", "unix:/run/tor/socks"]
    );
    let conf = tor
        .get_conf(&["HiddenServiceDir", "SocksPort", "Nickname"])
        .await
        .unwrap();
    assert_eq!(
        conf,
        [
            ("HiddenServiceDir".into(), Some("/a".into())),
            ("HiddenServiceDir".into(), Some("/b c".into())),
            ("SocksPort".into(), None),
            ("Nickname".into(), Some("my \"nick\"".into())),
        ]
    );
    tor.set_events(&["HS_DESC", "CIRC"]).await.unwrap();
    tor.signal(Signal::NewNym).await.unwrap();
    tor.close_circuit(35).await.unwrap();
    let e = tor.close_circuit(48).await.unwrap_err();
    assert!(e.is_unknown_entity() && e.is_invalid_argument(), "{e}");
    assert_eq!(
        e.to_string(),
        "tor refused \"CLOSECIRCUIT 48\": 552 Unknown circuit \"48\""
    );

    let mut req = AddOnion::new(80, Some("127.0.0.1:8080"));
    req.flags.push(OnionFlag::Detach);
    let added = tor.add_onion(&req).await.unwrap();
    assert_eq!(added.service_id, "bbbb");
    assert_eq!(added.private_key.as_deref(), Some("ED25519-V3:c2VjcmV0"));
    tor.del_onion(&("a".repeat(55) + "d.onion")).await.unwrap();

    let id = "a".repeat(55) + "d";
    let outcome = tor
        .onion_client_auth_add(&id, "c2VjcmV0c2VjcmV0", Some("probe"), true)
        .await
        .unwrap();
    assert_eq!(outcome, ClientAuthAdded::Replaced);
    tor.onion_client_auth_remove(&id).await.unwrap();
    tor.hs_fetch(&format!("{ADDR}.onion"), &["$FP~nick".into()])
        .await
        .unwrap();

    // Arguments that would break the command are refused before sending.
    for res in [
        tor.hs_fetch("not-an-onion", &[]).await,
        tor.hs_fetch(ADDR, &["a b".into()]).await,
        tor.set_events(&["HS_DESC\r\nSIGNAL HALT"]).await,
        tor.raw_command("GETINFO x\r\nSIGNAL HALT").await.map(drop),
        tor.get_info(&["a b"]).await.map(drop),
        tor.onion_client_auth_add(ADDR, "bad key", None, false)
            .await
            .map(drop),
    ] {
        assert!(
            matches!(res, Err(ControlError::InvalidArgument { .. })),
            "{res:?}"
        );
    }
    let e = tor.raw_command("FOO").await.unwrap();
    assert_eq!(e.status, 510);

    drop(tor);
    let seen = timeout(LIMIT, task).await.unwrap().unwrap();
    assert!(
        seen.contains(&format!("HSFETCH {ADDR} SERVER=$FP~nick")),
        "{seen:?}"
    );
    assert!(seen.contains(&format!(
        "ONION_CLIENT_AUTH_ADD {id} x25519:c2VjcmV0c2VjcmV0 ClientName=probe Flags=Permanent"
    )));
    assert!(!seen.iter().any(|l| l.contains("HALT")), "{seen:?}");
}

#[tokio::test]
async fn events_between_reply_lines_are_routed() {
    let (tor, mut events, _task) = connect_fake(null_tor(|line| {
        (line == "GETINFO a b").then(|| {
            format!(
                "250-a=1\r\n650 CIRC 1 LAUNCHED\r\n250+b=\r\nx\r\n.\r\n650+HS_DESC_CONTENT {ADDR} id $F~n\r\n\
                 hs-descriptor 3\r\n..\r\n.\r\n650 OK\r\n650 STREAM 5 NEW 0 x:80\r\n250 OK\r\n"
            )
        })
    }))
    .await;
    let info = tor.get_info(&["a", "b"]).await.unwrap();
    assert_eq!(info, [("a".into(), "1".into()), ("b".into(), "x".into())]);
    let e1 = timeout(LIMIT, events.recv()).await.unwrap().unwrap();
    assert!(matches!(e1, Event::Circ(ref c) if c.id == 1), "{e1:?}");
    let e2 = timeout(LIMIT, events.recv()).await.unwrap().unwrap();
    let Event::HsDescContent(c) = e2 else {
        panic!("{e2:?}")
    };
    assert_eq!(c.content, "hs-descriptor 3\n.");
    let e3 = timeout(LIMIT, events.recv()).await.unwrap().unwrap();
    assert_eq!(e3.keyword(), "STREAM");
    assert_eq!(events.dropped(), 0);
}

#[tokio::test]
async fn closed_connection_fails_waiters_and_ends_events() {
    let (tor, mut events, _task) = connect_fake(null_tor(|_| None)).await;
    let e = timeout(LIMIT, tor.get_info(&["version"]))
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(
        matches!(
            e,
            ControlError::Closed {
                reason: CloseReason::Eof,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.is_closed());
    assert!(timeout(LIMIT, events.recv()).await.unwrap().is_none());
    assert!(tor.is_closed());
    // Later commands fail at once.
    let e = timeout(LIMIT, tor.signal(Signal::Reload))
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.is_closed(), "{e}");
}

#[tokio::test]
async fn many_waiters_all_fail_on_close() {
    let mut n = 0;
    // Reads five commands without answering, then closes.
    let (stream, _task) = fake_tor(move |_| {
        n += 1;
        (n < 5).then(String::new)
    });
    let (tor, _events) = ControlClient::unauthenticated(stream, "fake", quick());
    let waits: Vec<_> = (0..5)
        .map(|i| {
            let tor = tor.clone();
            tokio::spawn(async move { tor.command(&format!("GETINFO k{i}")).await })
        })
        .collect();
    for w in waits {
        let e = timeout(LIMIT, w)
            .await
            .expect("no hang")
            .unwrap()
            .unwrap_err();
        assert!(e.is_closed(), "{e}");
    }
}

#[tokio::test]
async fn truncated_and_oversized_replies_close_cleanly() {
    // Cut in the middle of a data block.
    let (stream, server) = duplex(1 << 16);
    let (tor, _events) = ControlClient::unauthenticated(stream, "fake", quick());
    let writer = tokio::spawn(async move {
        let mut server = server;
        server
            .write_all(b"250-a=1\r\n250+b=\r\nunterminated")
            .await
            .unwrap();
        server.shutdown().await.unwrap();
        server
    });
    let e = timeout(LIMIT, tor.get_info(&["a", "b"]))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            e,
            ControlError::Closed {
                reason: CloseReason::Protocol(ProtocolError::Truncated),
                ..
            }
        ),
        "{e}"
    );
    drop(writer);

    // A 2 MiB line stops the reader at the 1 MiB limit.
    let (stream, server) = duplex(1 << 16);
    let (tor, _events) = ControlClient::unauthenticated(stream, "fake", quick());
    tokio::spawn(async move {
        let mut server = server;
        let mut line = b"250-x=".to_vec();
        line.resize(2 << 20, b'a');
        let _ = server.write_all(&line).await;
        std::future::pending::<()>().await;
    });
    let e = timeout(LIMIT, tor.get_info(&["x"]))
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(
        matches!(
            e,
            ControlError::Closed {
                reason: CloseReason::Protocol(ProtocolError::LineTooLong { .. }),
                ..
            }
        ),
        "{e}"
    );

    // Invalid UTF-8 is decoded lossily, not fatal.
    let (tor, _events, _task) =
        connect_fake(null_tor(|_| Some("250-k=\u{0}\r\n250 OK\r\n".into()))).await;
    let v = tor.get_info_one("k").await.unwrap();
    assert_eq!(v, "\u{0}");
    let (stream, server) = duplex(1 << 16);
    let (tor, _events) = ControlClient::unauthenticated(stream, "fake", quick());
    let mut server = server;
    server
        .write_all(b"250-k=\xff\xfe\r\n250 OK\r\n")
        .await
        .unwrap();
    assert_eq!(tor.get_info_one("k").await.unwrap(), "\u{fffd}\u{fffd}");
}

#[tokio::test]
async fn unsolicited_reply_is_a_protocol_error() {
    let (stream, mut server) = duplex(1 << 16);
    let (tor, mut events) = ControlClient::unauthenticated(stream, "fake", quick());
    server.write_all(b"250 OK\r\n").await.unwrap();
    assert!(timeout(LIMIT, events.recv()).await.unwrap().is_none());
    let e = tor.command("GETINFO x").await.unwrap_err();
    assert!(
        matches!(
            e,
            ControlError::Closed {
                reason: CloseReason::Protocol(ProtocolError::Unsolicited { status: 250 }),
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_timed_out_command_keeps_replies_in_order() {
    // Holds the first reply until the second command arrives.
    let (stream, _task) = fake_tor(|line| {
        Some(if line == "GETINFO second" {
            "250-first=1\r\n250 OK\r\n250-second=2\r\n250 OK\r\n".to_owned()
        } else {
            String::new()
        })
    });
    let opts = ConnectOptions {
        command_timeout: Some(Duration::from_millis(100)),
        ..quick()
    };
    let (tor, _events) = ControlClient::unauthenticated(stream, "fake", opts);
    let e = tor.get_info_one("first").await.unwrap_err();
    assert!(matches!(e, ControlError::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("GETINFO first"), "{e}");
    assert_eq!(tor.get_info_one("second").await.unwrap(), "2");
}

#[tokio::test]
async fn a_command_cancelled_mid_write_closes_the_connection() {
    // A peer that never reads: the write stalls after 8 bytes.
    let (stream, _server) = duplex(8);
    let (tor, _events) = ControlClient::unauthenticated(stream, "fake", quick());
    let long = format!("GETINFO {}", "k".repeat(100));
    let res = timeout(Duration::from_millis(50), tor.raw_command(&long)).await;
    assert!(res.is_err(), "the write cannot finish");
    let e = tor.raw_command("GETINFO x").await.unwrap_err();
    assert!(
        matches!(
            e,
            ControlError::Closed {
                reason: CloseReason::Cancelled,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn slow_event_consumer_does_not_stall_commands() {
    let (stream, _task) = fake_tor(|_| {
        let mut out = String::new();
        for i in 0..10 {
            out.push_str(&format!("650 CIRC {i} LAUNCHED\r\n"));
        }
        out.push_str("250 OK\r\n");
        Some(out)
    });
    let opts = ConnectOptions {
        event_capacity: 2,
        ..quick()
    };
    let (tor, mut events) = ControlClient::unauthenticated(stream, "fake", opts);
    timeout(LIMIT, tor.command("SETEVENTS CIRC"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(events.dropped(), 8);
    assert!(events.try_recv().is_some());
    assert!(events.try_recv().is_some());
    assert!(events.try_recv().is_none());
    drop(tor);
    assert!(timeout(LIMIT, events.recv()).await.unwrap().is_none());
}

#[tokio::test]
async fn not_a_control_port() {
    // An HTTP server.
    let (stream, _task) =
        fake_tor(|_| Some("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".into()));
    let e = ControlClient::from_stream(stream, "web", Auth::default(), quick())
        .await
        .unwrap_err();
    assert!(matches!(e, ControlError::NotControlPort { .. }), "{e}");
    assert!(e.to_string().contains("not a tor control port"), "{e}");

    // A server that closes at once.
    let (stream, _task) = fake_tor(|_| None);
    let e = ControlClient::from_stream(stream, "closer", Auth::default(), quick())
        .await
        .unwrap_err();
    assert!(matches!(e, ControlError::NotControlPort { .. }), "{e}");

    // Control-like but not PROTOCOLINFO.
    let (stream, _task) = fake_tor(|_| Some("250 OK\r\n".into()));
    let e = ControlClient::from_stream(stream, "odd", Auth::default(), quick())
        .await
        .unwrap_err();
    assert!(matches!(e, ControlError::NotControlPort { .. }), "{e}");

    // A server that never answers: bounded by the timeout.
    let (stream, _task) = fake_tor(|_| Some(String::new()));
    let opts = ConnectOptions {
        timeout: Duration::from_millis(200),
        ..quick()
    };
    let e = timeout(
        LIMIT,
        ControlClient::from_stream(stream, "silent", Auth::default(), opts),
    )
    .await
    .expect("no hang")
    .unwrap_err();
    assert!(
        matches!(e, ControlError::Timeout { ref stage, .. } if stage == "PROTOCOLINFO"),
        "{e}"
    );
}

#[tokio::test]
async fn an_http_server_that_waits_for_the_headers_is_caught_at_once() {
    // Like tor's MetricsPort: silent until the blank line ending the
    // headers, 400 once they exceed 1024 bytes.
    let (client, mut server) = duplex(1 << 16);
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        while seen.len() <= 1024 && !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match tokio::io::AsyncReadExt::read(&mut server, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let _ = server.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n").await;
    });
    let opts = ConnectOptions {
        timeout: LIMIT,
        ..quick()
    };
    let e = timeout(
        Duration::from_secs(2),
        ControlClient::from_stream(client, "metrics", Auth::default(), opts),
    )
    .await
    .expect("caught well before the connect timeout")
    .unwrap_err();
    let ControlError::NotControlPort { detail, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(detail.contains("HTTP/1.0 400 Bad Request"), "{detail}");
}

#[test]
fn protocolinfo_padding_is_only_version_arguments() {
    let line = super::client::protocolinfo_line();
    assert!(line.len() > 1024, "{}", line.len());
    assert!(line.len() < 1200, "{}", line.len());
    let mut words = line.split(' ');
    assert_eq!(words.next(), Some("PROTOCOLINFO"));
    assert!(words.all(|w| w == "1"), "{line}");
}

fn cookie_info(path: &Path, methods: &str) -> String {
    format!(
        "250-PROTOCOLINFO 1\r\n250-AUTH METHODS={methods} COOKIEFILE={}\r\n250-VERSION Tor=\"0.4.9.11\"\r\n250 OK\r\n",
        quote(path.to_str().unwrap())
    )
}

/// A tor offering SAFECOOKIE with `cookie`; `lie` makes it send a wrong
/// server hash.
fn safecookie_tor(
    path: std::path::PathBuf,
    cookie: [u8; 32],
    lie: bool,
) -> impl FnMut(&str) -> Option<String> + Send {
    let server_nonce = [0x5a; 32];
    let mut client_nonce = Vec::new();
    move |line| {
        if is_protocolinfo(line) {
            return Some(cookie_info(&path, "COOKIE,SAFECOOKIE"));
        }
        if let Some(cn) = line.strip_prefix("AUTHCHALLENGE SAFECOOKIE ") {
            client_nonce = unhex(cn).expect("hex nonce");
            assert_eq!(client_nonce.len(), 32);
            let mut hash = safecookie_server_hash(&cookie, &client_nonce, &server_nonce);
            if lie {
                hash[0] ^= 1;
            }
            return Some(format!(
                "250 AUTHCHALLENGE SERVERHASH={} SERVERNONCE={}\r\n",
                hex(&hash).to_uppercase(),
                hex(&server_nonce)
            ));
        }
        if let Some(answer) = line.strip_prefix("AUTHENTICATE ") {
            let want = safecookie_client_hash(&cookie, &client_nonce, &server_nonce);
            return Some(if unhex(answer).as_deref() == Some(&want[..]) {
                "250 OK\r\n".into()
            } else {
                "515 Authentication failed: Safe cookie response did not match expected value.\r\n"
                    .into()
            });
        }
        Some("250-version=0.4.9.11\r\n250 OK\r\n".into())
    }
}

#[tokio::test]
async fn safecookie_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control auth \"cookie\"");
    let cookie = [0x42u8; 32];
    std::fs::write(&path, cookie).unwrap();

    let (stream, task) = fake_tor(safecookie_tor(path.clone(), cookie, false));
    let (tor, _events) = ControlClient::from_stream(stream, "fake", Auth::default(), quick())
        .await
        .unwrap();
    assert_eq!(tor.get_info_one("version").await.unwrap(), "0.4.9.11");
    assert_eq!(
        tor.protocol_info().unwrap().cookie_file.as_deref(),
        Some(path.as_path())
    );
    drop(tor);
    let seen = task.await.unwrap();
    assert!(seen[1].starts_with("AUTHCHALLENGE SAFECOOKIE "), "{seen:?}");
    assert!(seen[2].starts_with("AUTHENTICATE "), "{seen:?}");
    // The cookie itself never crosses the wire.
    assert!(!seen.iter().any(|l| l.contains(&hex(&cookie))));

    // Explicit SafeCookie with a path override works the same.
    let (stream, _task) = fake_tor(safecookie_tor(path.clone(), cookie, false));
    let auth = Auth::SafeCookie {
        path: Some(path.clone()),
    };
    ControlClient::from_stream(stream, "fake", auth, quick())
        .await
        .unwrap();

    // A tor that does not know our cookie is caught before we answer.
    let (stream, task) = fake_tor(safecookie_tor(path.clone(), cookie, true));
    let e = ControlClient::from_stream(stream, "fake", Auth::default(), quick())
        .await
        .unwrap_err();
    assert!(matches!(e, ControlError::ServerHashMismatch { .. }), "{e}");
    let seen = task.await.unwrap();
    assert!(
        !seen.iter().any(|l| l.starts_with("AUTHENTICATE")),
        "{seen:?}"
    );

    // Tor's cookie differs from ours: its server hash gives it away, so we
    // stop before answering.
    let (stream, _task) = fake_tor(safecookie_tor(path.clone(), [0x43; 32], false));
    let e = ControlClient::from_stream(stream, "fake", Auth::default(), quick())
        .await
        .unwrap_err();
    assert!(matches!(e, ControlError::ServerHashMismatch { .. }), "{e}");
}

#[tokio::test]
async fn auto_prefers_safecookie_then_cookie_then_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cookie");
    let cookie = [0x42u8; 32];
    std::fs::write(&path, cookie).unwrap();
    let missing = dir.path().join("missing");
    // Names `named` as its cookie file, accepts the cookie, SAFECOOKIE and
    // the password "pw".
    let tor = |named: &Path, methods: &'static str| {
        let named = named.to_owned();
        let mut safe = safecookie_tor(path.clone(), cookie, false);
        move |line: &str| match line {
            l if is_protocolinfo(l) => Some(cookie_info(&named, methods)),
            r#"AUTHENTICATE "pw""# => Some("250 OK\r\n".into()),
            l if l == format!("AUTHENTICATE {}", hex(&cookie)) => Some("250 OK\r\n".into()),
            other => safe(other),
        }
    };
    let all = "COOKIE,SAFECOOKIE,HASHEDPASSWORD";
    for (named, methods, want) in [
        (&path, all, AuthMethod::SafeCookie),
        (&path, "HASHEDPASSWORD,COOKIE", AuthMethod::Cookie),
        // An unreadable cookie falls back to the password.
        (&missing, all, AuthMethod::HashedPassword),
    ] {
        let (stream, _task) = fake_tor(tor(named, methods));
        let auth = Auth::Auto {
            password: Some("pw".into()),
        };
        let (c, _events) = ControlClient::from_stream(stream, "fake", auth, quick())
            .await
            .unwrap_or_else(|e| panic!("{methods} {named:?}: {e}"));
        assert_eq!(c.auth_method(), Some(&want), "{methods} {named:?}");
    }

    // Without a password, an unreadable cookie is the error to report.
    let (stream, _task) = fake_tor(tor(&missing, all));
    let e = ControlClient::from_stream(stream, "fake", Auth::default(), quick())
        .await
        .unwrap_err();
    assert!(
        matches!(e, ControlError::CookieUnreadable { ref path, .. } if *path == missing),
        "{e}"
    );
}

#[tokio::test]
async fn cookie_auth_and_cookie_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cookie");
    std::fs::write(&path, [0xab; 32]).unwrap();
    let p = path.clone();
    let (stream, task) = fake_tor(move |line| {
        Some(match line {
            l if is_protocolinfo(l) => cookie_info(&p, "COOKIE"),
            l if l == format!("AUTHENTICATE {}", "ab".repeat(32)) => "250 OK\r\n".into(),
            _ => "515 Authentication failed\r\n".into(),
        })
    });
    ControlClient::from_stream(stream, "fake", Auth::default(), quick())
        .await
        .unwrap();
    drop(task);

    // Unreadable cookie: the error names the file and says what to check.
    let missing = dir.path().join("nope");
    let m = missing.clone();
    let (stream, _task) = fake_tor(move |_| Some(cookie_info(&m, "COOKIE,SAFECOOKIE")));
    let e = ControlClient::from_stream(stream, "fake", Auth::default(), quick())
        .await
        .unwrap_err();
    assert!(matches!(e, ControlError::CookieUnreadable { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(missing.to_str().unwrap()) && msg.contains("permissions"),
        "{msg}"
    );

    // Wrong length.
    let short = dir.path().join("short.cookie");
    std::fs::write(&short, b"0123456789").unwrap();
    let s = short.clone();
    let (stream, _task) = fake_tor(move |_| Some(cookie_info(&s, "COOKIE")));
    let e = ControlClient::from_stream(stream, "fake", Auth::default(), quick())
        .await
        .unwrap_err();
    assert!(
        matches!(e, ControlError::CookieWrongLength { len: 10, .. }),
        "{e}"
    );
}

/// A control port offering only COOKIE (which sends the file's content)
/// and naming `named` as its cookie file: the client must not read and send
/// just any file. Returns the error and the lines the port received.
async fn cookie_only_port(named: &Path, auth: Auth) -> (Result<(), ControlError>, Vec<String>) {
    let n = named.to_owned();
    let (stream, task) = fake_tor(move |line| {
        Some(match line {
            l if is_protocolinfo(l) => cookie_info(&n, "COOKIE"),
            l if l.starts_with("AUTHENTICATE ") => "250 OK\r\n".into(),
            _ => "510 Unrecognized command\r\n".into(),
        })
    });
    let r = timeout(
        LIMIT,
        ControlClient::from_stream(stream, "fake", auth, quick()),
    )
    .await
    .expect("no hang")
    .map(drop);
    (r, task.await.unwrap())
}

#[tokio::test]
async fn a_cookie_only_port_cannot_make_us_send_any_file() {
    let dir = tempfile::tempdir().unwrap();
    // An /etc/passwd-like file, and a 32-byte secret (the size of a cookie).
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, [b'x'; 100]).unwrap();
    let secret = dir.path().join("id_ed25519");
    let secret_bytes = [0x5e; 32];
    std::fs::write(&secret, secret_bytes).unwrap();
    for (named, auth) in [
        (&passwd, Auth::default()),
        (&secret, Auth::default()),
        (&secret, Auth::Cookie { path: None }),
    ] {
        let (r, seen) = cookie_only_port(named, auth.clone()).await;
        let e = r.unwrap_err();
        assert!(
            matches!(e, ControlError::CookieNotTorCookie { ref path, .. } if path == named),
            "{auth:?} {named:?}: {e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(named.to_str().unwrap()) && msg.contains("explicitly"),
            "{msg}"
        );
        assert!(
            !seen.iter().any(|l| l.starts_with("AUTHENTICATE")),
            "nothing sent: {seen:?}"
        );
    }
    // A FIFO named like a cookie is refused, not opened (which would hang).
    let fifo = dir.path().join("control_auth_cookie");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (r, _) = cookie_only_port(&fifo, Auth::default()).await;
    let e = r.unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");

    // The operator can opt in by naming the file.
    let (r, seen) = cookie_only_port(
        &passwd,
        Auth::Cookie {
            path: Some(secret.clone()),
        },
    )
    .await;
    r.unwrap();
    assert!(
        seen.contains(&format!("AUTHENTICATE {}", hex(&secret_bytes))),
        "{seen:?}"
    );
    // And a file tor names like a cookie is used as before.
    let cookie = dir.path().join("control.authcookie");
    std::fs::write(&cookie, [0x42; 32]).unwrap();
    let (r, seen) = cookie_only_port(&cookie, Auth::default()).await;
    r.unwrap();
    assert!(
        seen.contains(&format!("AUTHENTICATE {}", "42".repeat(32))),
        "{seen:?}"
    );
}

#[tokio::test]
async fn password_auth_and_wrong_password() {
    let info = "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=HASHEDPASSWORD\r\n250 OK\r\n";
    let handler = move |line: &str| {
        Some(match line {
            l if is_protocolinfo(l) => info.into(),
            r#"AUTHENTICATE "pa\"ss\\word""# => "250 OK\r\n".into(),
            _ => "515 Authentication failed: Password did not match HashedControlPassword value from configuration\r\n".into(),
        })
    };
    let (stream, _task) = fake_tor(handler);
    ControlClient::from_stream(
        stream,
        "fake",
        Auth::Password(r#"pa"ss\word"#.into()),
        quick(),
    )
    .await
    .unwrap();
    let (stream, _task) = fake_tor(handler);
    let auth = Auth::Auto {
        password: Some(r#"pa"ss\word"#.into()),
    };
    ControlClient::from_stream(stream, "fake", auth, quick())
        .await
        .unwrap();

    let (stream, _task) = fake_tor(handler);
    let e = ControlClient::from_stream(stream, "fake", Auth::Password("wrong".into()), quick())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ControlError::AuthFailed {
                method: AuthMethod::HashedPassword,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.tor_status(), Some(515));
    assert!(!e.to_string().contains("wrong"), "{e}");

    // Auto without a password: explain what is missing.
    let (stream, _task) = fake_tor(handler);
    let e = ControlClient::from_stream(stream, "fake", Auth::default(), quick())
        .await
        .unwrap_err();
    assert!(matches!(e, ControlError::NoUsableMethod { .. }), "{e}");
    assert!(e.to_string().contains("password"), "{e}");

    // An explicit method tor does not offer.
    let (stream, _task) = fake_tor(handler);
    let e = ControlClient::from_stream(stream, "fake", Auth::Null, quick())
        .await
        .unwrap_err();
    assert!(matches!(e, ControlError::MethodNotOffered { .. }), "{e}");
    assert!(e.to_string().contains("HASHEDPASSWORD"), "{e}");
}

#[tokio::test]
async fn tcp_and_unix_transports() {
    async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: S) {
        let (r, mut w) = tokio::io::split(s);
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let out = match l.as_str() {
                l if is_protocolinfo(l) => NULL_INFO,
                _ => "250 OK\r\n",
            };
            w.write_all(out.as_bytes()).await.unwrap();
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ControlAddr::Tcp(listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        serve(s).await;
    });
    let (tor, _e) = timeout(LIMIT, ControlClient::connect(&addr, Auth::Null))
        .await
        .unwrap()
        .unwrap();
    tor.signal(Signal::Heartbeat).await.unwrap();

    #[cfg(unix)]
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            serve(s).await;
        });
        let addr: ControlAddr = format!("unix:{}", path.display()).parse().unwrap();
        let (tor, _e) = timeout(LIMIT, ControlClient::connect(&addr, Auth::default()))
            .await
            .unwrap()
            .unwrap();
        tor.signal(Signal::Heartbeat).await.unwrap();

        let gone: ControlAddr = format!("unix:{}", dir.path().join("nothing").display())
            .parse()
            .unwrap();
        let e = ControlClient::connect(&gone, Auth::default())
            .await
            .unwrap_err();
        assert!(matches!(e, ControlError::Connect { .. }), "{e}");
        assert!(e.to_string().contains("ControlPort"), "{e}");
    }

    // A closed port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ControlAddr::Tcp(listener.local_addr().unwrap());
    drop(listener);
    let e = ControlClient::connect(&addr, Auth::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ControlError::Connect { .. }), "{e}");
}

#[test]
fn control_addr_parses() {
    assert_eq!(
        "127.0.0.1:9051".parse::<ControlAddr>().unwrap(),
        ControlAddr::Tcp("127.0.0.1:9051".parse().unwrap())
    );
    assert_eq!(
        "[::1]:9051".parse::<ControlAddr>().unwrap().to_string(),
        "[::1]:9051"
    );
    let unix: ControlAddr = "unix:/run/tor/control".parse().unwrap();
    assert_eq!(unix, ControlAddr::Unix("/run/tor/control".into()));
    assert_eq!(unix.to_string(), "unix:/run/tor/control");
    for bad in [
        "",
        "unix:",
        "localhost",
        "127.0.0.1",
        "9051",
        "127.0.0.1:99999",
        "tcp:1.2.3.4:1",
    ] {
        let e = bad.parse::<ControlAddr>().unwrap_err();
        assert!(e.to_string().contains("unix:/path"), "{e}");
    }
}

#[test]
fn error_helpers() {
    let tor = |status| ControlError::Tor {
        status,
        message: "x".into(),
        command: "C".into(),
    };
    assert!(tor(513).is_invalid_argument());
    assert!(tor(512).is_invalid_argument());
    assert!(!tor(551).is_invalid_argument());
    assert!(tor(551).is_not_found());
    assert!(!tor(513).is_unknown_entity());
    assert_eq!(tor(510).tor_status(), Some(510));
    assert_eq!(ControlError::NoCookieFile.tor_status(), None);
}
