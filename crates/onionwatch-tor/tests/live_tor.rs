//! The control-port client, circuit-id codec and SOCKS dialer against real
//! tor: one private network shared by every test of this binary.

use std::time::Duration;

use onionwatch_testnet::{
    shared_network, Backend, ControlKind, NetworkConfig, NetworkInfo, ServiceConfig,
    ServiceTorConfig, HOLD_PATH,
};
use onionwatch_tor::control::{
    AddOnion, Auth, AuthMethod, ClientAuthAdded, ConnectOptions, ControlAddr, ControlClient,
    ControlError, Event, EventStream, HsDescAction, ListenerKind, Signal, StatusKind,
};
use onionwatch_tor::proxy::ProxyHeader;
use onionwatch_tor::socks::{self, Isolation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const PASSWORD: &str = "correct horse battery staple";
/// A real v3 address (the Tor Project's website) that this private network
/// has never seen: valid checksum, never published here.
const UNPUBLISHED: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";
const WAIT: Duration = Duration::from_secs(90);

/// hs0: a plain onion service, TCP control port. hs1: circuit-id export,
/// control port on a unix socket. The client also takes a password.
fn net() -> &'static NetworkInfo {
    shared_network(|| NetworkConfig {
        service_tors: vec![
            ServiceTorConfig::default(),
            ServiceTorConfig {
                services: vec![ServiceConfig {
                    export_circuit_id: true,
                    ..ServiceConfig::default()
                }],
                control: ControlKind::Unix,
                ..ServiceTorConfig::default()
            },
        ],
        client_password: Some(PASSWORD.into()),
        ..NetworkConfig::default()
    })
}

fn client_addr() -> ControlAddr {
    ControlAddr::Tcp(net().client.control)
}

async fn client(auth: Auth) -> Result<(ControlClient, EventStream), ControlError> {
    ControlClient::connect(&client_addr(), auth).await
}

/// The first event `pick` accepts, within [`WAIT`].
async fn wait_for<T>(
    events: &mut EventStream,
    what: &str,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("event stream open");
            if let Some(found) = pick(event) {
                return found;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

#[tokio::test]
async fn cookie_safecookie_and_password_authenticate_and_a_wrong_password_fails() {
    // The client tor offers COOKIE, SAFECOOKIE and HASHEDPASSWORD: Auto
    // takes SAFECOOKIE even when it has the password.
    for (auth, method) in [
        (Auth::Cookie { path: None }, AuthMethod::Cookie),
        (Auth::SafeCookie { path: None }, AuthMethod::SafeCookie),
        (Auth::Password(PASSWORD.into()), AuthMethod::HashedPassword),
        (Auth::Auto { password: None }, AuthMethod::SafeCookie),
        (
            Auth::Auto {
                password: Some(PASSWORD.into()),
            },
            AuthMethod::SafeCookie,
        ),
    ] {
        let label = format!("{auth:?}");
        let (tor, _events) = client(auth)
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(tor.auth_method(), Some(&method), "{label}");
        let phase = tor.bootstrap_phase().await.unwrap();
        assert_eq!(phase.progress, 100, "{label}: {phase:?}");
        assert_eq!(phase.tag, "done");
        let info = tor.protocol_info().expect("PROTOCOLINFO was read");
        assert!(format!("{info:?}").contains("0.4"), "{info:?}");
    }

    let err = client(Auth::Password("wrong".into())).await.unwrap_err();
    let ControlError::AuthFailed { method, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*method, AuthMethod::HashedPassword);
    // tor's own words, not ours.
    assert!(
        message.contains("Password did not match HashedControlPassword"),
        "{message}"
    );

    // An explicit cookie path that is not readable is named in the error.
    let err = client(Auth::Cookie {
        path: Some("/nonexistent/control_auth_cookie".into()),
    })
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/control_auth_cookie"),
        "{err}"
    );
}

#[tokio::test]
async fn a_port_that_is_not_a_control_port_fails_clearly() {
    // The MetricsPort answers the padded PROTOCOLINFO with 400 (headers over
    // its limit), the SocksPort with its "not an HTTP proxy" page: both are
    // caught at their first line, long before the connect timeout.
    let metrics = net().onions[0].metrics.expect("hs0 has a MetricsPort");
    let socks = net().client.socks;
    let opts = ConnectOptions {
        timeout: WAIT,
        ..ConnectOptions::default()
    };
    for (port, answer) in [
        (metrics, "HTTP/1.0 400 Bad Request"),
        (socks, "HTTP/1.0 501 Tor is not an HTTP Proxy"),
    ] {
        let err = timeout(
            Duration::from_secs(5),
            ControlClient::connect_with(&ControlAddr::Tcp(port), Auth::default(), opts.clone()),
        )
        .await
        .unwrap_or_else(|_| panic!("{port} ({answer}) is caught at once"))
        .unwrap_err();
        let ControlError::NotControlPort { detail, .. } = &err else {
            panic!("{port}: {err:?}")
        };
        assert!(detail.contains(answer), "{port}: {detail}");
        assert!(err.to_string().contains("not a tor control port"), "{err}");
    }
}

#[tokio::test]
async fn hsfetch_of_a_live_onion_service_yields_received_and_the_descriptor() {
    let (tor, mut events) = client(Auth::default()).await.unwrap();
    tor.set_events(&["HS_DESC", "HS_DESC_CONTENT"])
        .await
        .unwrap();
    let address = &net().onions[0].address;
    let id = address.trim_end_matches(".onion");
    tor.hs_fetch(address, &[]).await.unwrap();

    let (mut hsdir, mut content) = (None, None);
    timeout(WAIT, async {
        while !(hsdir.is_some() && content.is_some()) {
            match events.recv().await.expect("event stream open") {
                Event::HsDesc(d) if d.address == id && d.action == HsDescAction::Received => {
                    hsdir = Some(d.hsdir.expect("RECEIVED names its HSDir"));
                }
                Event::HsDescContent(c) if c.address == id && !c.content.is_empty() => {
                    content = Some(c.content)
                }
                _ => {}
            }
        }
    })
    .await
    .expect("RECEIVED and HS_DESC_CONTENT within the wait");
    let content = content.unwrap();
    assert!(content.starts_with("hs-descriptor 3"), "{content}");
    assert!(content.contains("\nrevision-counter "), "{content}");

    // Again from that HSDir by SERVER= (its $FINGERPRINT alone): the new
    // REQUESTED and the RECEIVED after it name that server.
    let hsdir = hsdir.unwrap();
    let (fingerprint, _nick) = hsdir.split_once('~').expect("$FINGERPRINT~nickname");
    assert!(
        fingerprint.len() == 41 && fingerprint.starts_with('$'),
        "{hsdir}"
    );
    tor.hs_fetch(address, &[fingerprint.to_owned()])
        .await
        .unwrap();
    for action in [HsDescAction::Requested, HsDescAction::Received] {
        let d = wait_for(
            &mut events,
            &format!("{action:?} from {hsdir}"),
            |e| match e {
                Event::HsDesc(d) if d.address == id && d.action == action => Some(d),
                _ => None,
            },
        )
        .await;
        assert_eq!(d.hsdir.as_deref(), Some(hsdir.as_str()), "{d:?}");
    }
}

#[tokio::test]
async fn hsfetch_of_an_unpublished_onion_service_fails_with_a_reason() {
    let (tor, mut events) = client(Auth::default()).await.unwrap();
    tor.set_events(&["HS_DESC"]).await.unwrap();
    tor.hs_fetch(UNPUBLISHED, &[]).await.unwrap();
    let reason = timeout(WAIT, async {
        loop {
            if let Some(Event::HsDesc(d)) = events.recv().await {
                if d.address == UNPUBLISHED && d.action == HsDescAction::Failed {
                    return d.reason;
                }
            }
        }
    })
    .await
    .expect("FAILED within the wait");
    assert_eq!(reason.as_deref(), Some("NOT_FOUND"));

    // A bad checksum is refused by tor itself.
    let bad = format!("{}a", &UNPUBLISHED[..55]);
    let err = tor.hs_fetch(&bad, &[]).await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
}

#[tokio::test]
async fn a_real_proxy_header_decodes_to_a_live_circuit_that_closecircuit_cuts() {
    let info = net();
    let onion = &info.onions[1];
    assert!(onion.export_circuit_id);
    let iso = Isolation::new("circuit-test");

    // The built-in backend echoes tor's PROXY line and, for HOLD_PATH,
    // keeps the stream open so the circuit can be closed under it.
    let mut stream = socks::connect(info.client.socks, &onion.address, 80, Some(&iso))
        .await
        .unwrap();
    let request = format!("GET {HOLD_PATH} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let want = Backend::body_for("hs1-0", HOLD_PATH);
    timeout(WAIT, async {
        while !String::from_utf8_lossy(&seen).ends_with(&want) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "stream closed early: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the held answer within the wait");
    let seen = String::from_utf8_lossy(&seen).into_owned();
    let line = seen
        .lines()
        .find_map(|l| l.strip_prefix("proxy: "))
        .unwrap_or_else(|| panic!("no PROXY line echoed in {seen:?}"));
    let header = ProxyHeader::parse(format!("{line}\r\n").as_bytes()).unwrap();
    let id = header
        .circuit_id()
        .expect("a circuit id in the source address")
        .0;

    let control: ControlAddr = onion.control.parse().unwrap();
    assert!(matches!(control, ControlAddr::Unix(_)));
    let (tor, _events) = ControlClient::connect(&control, Auth::default())
        .await
        .unwrap();
    let circuits = tor.circuit_status().await.unwrap();
    assert!(
        circuits.iter().any(|c| c.id == id),
        "circuit {id} not in {circuits:?}"
    );

    tor.close_circuit(id).await.unwrap();
    // The backend holds the stream for 30 s: an end before 10 s is the close.
    let read = timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("the client's stream ends when its circuit is closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let circuits = tor.circuit_status().await.unwrap();
    assert!(!circuits
        .iter()
        .any(|c| c.id == id && c.status.as_str() == "BUILT"));

    let err = tor.close_circuit(u32::MAX).await.unwrap_err();
    assert!(err.tor_status().is_some(), "{err:?}");
}

#[tokio::test]
async fn getinfo_getconf_signal_and_listeners_have_typed_results() {
    let (tor, _events) = client(Auth::default()).await.unwrap();
    let socks_listeners = tor.listeners(ListenerKind::Socks).await.unwrap();
    assert_eq!(socks_listeners, vec![net().client.socks.to_string()]);
    let conf = tor
        .get_conf(&["SocksPort", "TestingTorNetwork"])
        .await
        .unwrap();
    assert!(
        conf.iter()
            .any(|(k, v)| k == "TestingTorNetwork" && v.as_deref() == Some("1")),
        "{conf:?}"
    );
    let version = tor.get_info_one("version").await.unwrap();
    assert!(version.starts_with("0.4."), "{version}");
    // NEWNYM and RELOAD go to hs0 (see below): on this tor they would
    // cancel other tests' descriptor fetches.
    tor.signal(Signal::ClearDnsCache).await.unwrap();
    let err = tor.get_info(&["no/such/key"]).await.unwrap_err();
    assert!(err.tor_status().is_some(), "{err:?}");
}

#[tokio::test]
async fn newnym_and_reload_are_accepted_and_tor_still_answers() {
    let control: ControlAddr = net().onions[0].control.parse().unwrap();
    let (tor, _events) = ControlClient::connect(&control, Auth::default())
        .await
        .unwrap();
    for signal in [Signal::NewNym, Signal::Reload] {
        tor.signal(signal).await.unwrap();
        // The same connection, and a new one, still get answers.
        let version = tor.get_info_one("version").await.unwrap();
        assert!(version.starts_with("0.4."), "{signal:?}: {version}");
        let (again, _events) = ControlClient::connect(&control, Auth::default())
            .await
            .unwrap();
        assert_eq!(again.bootstrap_phase().await.unwrap().progress, 100);
    }
}

#[tokio::test]
async fn circ_and_status_client_events_arrive_from_real_tor() {
    let (tor, mut events) = client(Auth::default()).await.unwrap();
    tor.set_events(&["CIRC", "STATUS_CLIENT"]).await.unwrap();

    // A stream on a fresh isolation needs new onion-service circuits.
    let onion = &net().onions[1];
    let id = onion.address.trim_end_matches(".onion");
    let iso = Isolation::new("circ-events");
    let stream = socks::connect_timeout(net().client.socks, &onion.address, 80, Some(&iso), WAIT)
        .await
        .unwrap();
    let circ = wait_for(&mut events, "CIRC event for the onion", |e| match e {
        Event::Circ(c) if c.rend_query.as_deref() == Some(id) => Some(c),
        _ => None,
    })
    .await;
    let purpose = circ.purpose.as_deref().unwrap_or("");
    assert!(purpose.starts_with("HS_CLIENT_"), "{circ:?}");
    assert!(circ.id > 0 && !circ.path.is_empty(), "{circ:?}");
    drop(stream);

    // tor reports a SocksPort client that does not speak SOCKS, with the
    // first 8 bytes it sent. Other tests send junk to the same SocksPort in
    // parallel, so only the event carrying our bytes is ours.
    let mut junk = tokio::net::TcpStream::connect(net().client.socks)
        .await
        .unwrap();
    junk.write_all(b"onionwatch\r\n").await.unwrap();
    let status = wait_for(
        &mut events,
        "STATUS_CLIENT event with DATA=onionwat",
        |e| match e {
            Event::Status(s)
                if s.action == "SOCKS_UNKNOWN_PROTOCOL"
                    && s.args.get("DATA").map(String::as_str) == Some("onionwat") =>
            {
                Some(s)
            }
            _ => None,
        },
    )
    .await;
    assert_eq!(status.kind, StatusKind::Client);
    assert_eq!(status.severity, "WARN");
}

#[tokio::test]
async fn add_onion_del_onion_and_client_auth_round_trip() {
    let onion = &net().onions[0];
    let control: ControlAddr = onion.control.parse().unwrap();
    let (tor, _events) = ControlClient::connect(&control, Auth::default())
        .await
        .unwrap();
    let target = onion.backend.to_string();
    let reply = tor
        .add_onion(&AddOnion::new(80, Some(&target)))
        .await
        .unwrap();
    assert_eq!(reply.service_id.len(), 56);
    assert!(tor
        .onions_current()
        .await
        .unwrap()
        .contains(&reply.service_id));
    tor.del_onion(&reply.service_id).await.unwrap();
    assert!(!tor
        .onions_current()
        .await
        .unwrap()
        .contains(&reply.service_id));

    let (client, _events) = client(Auth::default()).await.unwrap();
    // Any 32 bytes are an x25519 private key.
    let key = "yPGUxgKaC5ACyEzsdANHJEJzt5DIqDRBlAFaAWWQn0o=";
    // What tor holds for the address: its ONION_CLIENT_AUTH_VIEW lines.
    let view = || async {
        let reply = client
            .command(&format!("ONION_CLIENT_AUTH_VIEW {UNPUBLISHED}"))
            .await
            .unwrap();
        reply
            .lines
            .iter()
            .filter(|l| l.text.starts_with("CLIENT "))
            .map(|l| l.text.clone())
            .collect::<Vec<_>>()
    };
    let add = || client.onion_client_auth_add(UNPUBLISHED, key, Some("test"), false);
    assert_eq!(add().await.unwrap(), ClientAuthAdded::Added);
    assert_eq!(add().await.unwrap(), ClientAuthAdded::Replaced);
    let held = view().await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(
        held[0].contains(&format!("x25519:{key}")) && held[0].contains("ClientName=test"),
        "{held:?}"
    );
    client.onion_client_auth_remove(UNPUBLISHED).await.unwrap();
    assert_eq!(view().await, Vec::<String>::new());
}

#[tokio::test]
async fn socks_failures_carry_tors_extended_error_codes() {
    use onionwatch_tor::socks::SocksReply;
    let socks_addr = net().client.socks;
    let iso = Isolation::new("socks-errors");
    let host = format!("{UNPUBLISHED}.onion");
    let err = socks::connect_timeout(socks_addr, &host, 80, Some(&iso), WAIT)
        .await
        .unwrap_err();
    assert_eq!(
        err.reply(),
        Some(SocksReply::OnionDescriptorNotFound),
        "{err}"
    );

    let bad = format!("{}a.onion", &UNPUBLISHED[..55]);
    let err = socks::connect(socks_addr, &bad, 80, Some(&iso))
        .await
        .unwrap_err();
    assert_eq!(err.reply(), Some(SocksReply::OnionInvalidAddress), "{err}");
}
