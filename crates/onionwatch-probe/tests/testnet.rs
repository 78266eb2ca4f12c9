//! The prober against a private Tor network: one network for this binary,
//! onion services whose backends are this file's own servers.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use onionwatch_metrics::{render, Collect, Format};
use onionwatch_probe::output::{json_line, nagios, NagiosState};
use onionwatch_probe::probe::FailureStage;
use onionwatch_probe::ProbeResult;
use onionwatch_testnet::with_shared_network;

/// Every wait in these tests is bounded by this.
const ROUND_LIMIT: Duration = Duration::from_secs(400);

fn by_name(results: &[ProbeResult]) -> HashMap<String, ProbeResult> {
    results
        .iter()
        .map(|r| (r.name.clone(), r.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_gives_the_right_results_metrics_and_json() {
    let yaml = format!("{FAST}{}", endpoints_yaml(true));
    let (prober, targets) = prober(&yaml).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let results = tokio::time::timeout(ROUND_LIMIT, prober.run_round(&targets, 1, Some(tx)))
        .await
        .expect("the round finished in time");
    let mut streamed = 0;
    while rx.try_recv().is_ok() {
        streamed += 1;
    }
    assert_eq!(streamed, results.len(), "every result is streamed");
    assert_eq!(results.len(), 6);
    let r = by_name(&results);
    let o = onions();
    let m = prober.metrics();

    // Healthy: 200 + pattern, descriptor decrypted, PoW announced.
    let h = &r["healthy"];
    assert!(h.passed && h.reachable, "{h:?}");
    assert_eq!(h.status_code, Some(200));
    assert_eq!(h.pattern_matched, Some(true));
    assert_eq!(h.error, None);
    assert_eq!(h.failure_stage, None);
    assert!(h.descriptor_reachable);
    assert!(
        h.hsdir.as_deref().is_some_and(|s| s.starts_with('$')),
        "{h:?}"
    );
    let intro = h.introduction_points.expect("the descriptor was decrypted");
    assert!((1..=20).contains(&intro), "{intro}");
    assert_eq!(h.pow_enabled, Some(true), "the healthy service has PoW on");
    let p = ["healthy", o.healthy.as_str(), "http", "80", "/"];
    let e = ["healthy", o.healthy.as_str()];
    assert_eq!(m.get("onion_service_reachable", &p), Some(1.0));
    assert_eq!(m.get("onion_service_status_code", &p), Some(200.0));
    assert_eq!(m.get("onion_service_unexpected_status_code", &p), Some(0.0));
    assert_eq!(
        m.get(
            "onion_service_pattern_matched",
            &["healthy", &o.healthy, "http", "80", "/", "healthy marker"]
        ),
        Some(1.0),
        "pattern_matched has samples (Onionprobe never sets it)"
    );
    assert!(m.get("onion_service_latency_seconds", &p).unwrap() > 0.0);
    assert_eq!(m.get("onion_service_descriptor_reachable", &e), Some(1.0));
    assert_eq!(
        m.get("onion_service_introduction_points_number", &e),
        Some(f64::from(intro))
    );
    assert_eq!(m.get("onion_service_pow_enabled", &e), Some(1.0));
    assert!(m.get("onion_service_pow_v1_effort", &e).is_some());
    assert_eq!(m.get("onion_service_is_single", &e), Some(0.0));
    assert_eq!(
        m.get("onion_service_descriptor_lifetime_seconds", &e),
        Some(10_800.0)
    );
    assert!(m
        .get("onion_service_descriptor_revision_counter", &e)
        .is_some());
    assert!(
        m.get("onion_service_descriptor_second_layer_size_bytes", &e)
            .unwrap()
            > 100.0
    );
    assert_eq!(
        m.get(
            "onion_service_descriptor_fetch_attempts",
            &["healthy", &o.healthy, "1"]
        ),
        Some(f64::from(h.descriptor_attempts))
    );
    assert_eq!(m.get("onionwatch_probe_success", &e), Some(1.0));
    let info = m.get_info("onion_service_descriptor", &e).unwrap();
    assert!(
        info.contains(&("state".into(), "RECEIVED".into())),
        "{info:?}"
    );

    // The other services were decrypted too, without PoW.
    for name in ["status500", "mismatch", "selfsigned"] {
        assert!(r[name].introduction_points.is_some(), "{name}");
        assert_eq!(r[name].pow_enabled, Some(false), "{name}");
    }

    // 500 with allowed_statuses [200]: unexpected, unreachable.
    let s = &r["status500"];
    assert!(!s.passed && !s.reachable);
    assert_eq!(s.status_code, Some(500), "{s:?}");
    assert_eq!(s.unexpected_status, Some(true));
    assert_eq!(s.error.as_deref(), Some("unexpected_status"));
    assert_eq!(s.failure_stage, Some(FailureStage::HttpStatus));
    assert_eq!(s.attempts, 3, "retried (http_connect_max_retries: 2)");
    let p5 = ["status500", o.error500.as_str(), "http", "80", "/"];
    assert_eq!(
        m.get("onion_service_unexpected_status_code", &p5),
        Some(1.0)
    );
    assert_eq!(m.get("onion_service_reachable", &p5), Some(0.0));
    assert_eq!(m.get("onion_service_status_code", &p5), Some(500.0));
    assert_eq!(
        m.get(
            "onion_service_connection_attempts",
            &["status500", &o.error500, "http", "80", "/", "0"]
        ),
        Some(3.0)
    );

    // Pattern mismatch: reachable, but failed.
    let x = &r["mismatch"];
    assert!(x.reachable && !x.passed);
    assert_eq!(x.pattern_matched, Some(false));
    assert_eq!(x.error.as_deref(), Some("pattern_not_matched"));
    assert_eq!(x.failure_stage, Some(FailureStage::Pattern));
    assert_eq!(
        m.get(
            "onionwatch_probe_failures",
            &["mismatch", &o.mismatch, "pattern"]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "onion_service_pattern_matched",
            &["mismatch", &o.mismatch, "http", "80", "/", "healthy marker"]
        ),
        Some(0.0)
    );
    assert_eq!(
        m.get(
            "onionwatch_probe_errors",
            &["mismatch", &o.mismatch, "pattern_not_matched"]
        ),
        Some(1.0)
    );

    // HTTPS, self-signed, no SAN, expiring in 2 days, tls_verify false.
    let t = &r["selfsigned"];
    assert!(t.passed, "{t:?}");
    let tls = t.tls.as_ref().expect("TLS details");
    assert!(tls.version.starts_with("TLSv1."), "{tls:?}");
    assert!(
        !tls.certificate_valid,
        "self-signed is not valid, even when not enforced"
    );
    let left = tls.certificate_expiry_seconds.unwrap();
    assert!(left > 0 && left <= CERT_DAYS_LEFT * 86_400, "{left}");
    assert_eq!(tls.certificate_match_hostname, Some(false));
    let pt = ["selfsigned", o.https.as_str(), "https", "80", "/"];
    let tl = ["selfsigned", o.https.as_str(), "80"];
    assert_eq!(m.get("onion_service_valid_certificate", &pt), Some(0.0));
    let expiry = m
        .get("onion_service_certificate_expiry_seconds", &tl)
        .expect("certificate metrics without a SAN (Onionprobe sets none)");
    assert!(expiry > 0.0 && expiry <= (CERT_DAYS_LEFT * 86_400) as f64);
    assert_eq!(
        m.get("onion_service_certificate_match_hostname", &tl),
        Some(0.0)
    );
    let cert = m.get_info("onion_service_certificate", &tl).unwrap();
    assert!(
        cert.iter()
            .any(|(k, v)| k == "subject" && v.contains("onionwatch self-signed test")),
        "{cert:?}"
    );
    let tlsinfo = m.get_info("onion_service_tls", &tl).unwrap();
    assert!(tlsinfo
        .iter()
        .any(|(k, v)| k == "version" && v.starts_with("TLSv1.")));

    // TCP: the stream opens.
    let k = &r["ssh"];
    assert!(k.passed && k.reachable, "{k:?}");
    assert_eq!(k.path, None);
    assert_eq!(k.status_code, None);

    // Never published: descriptor FAILED NOT_FOUND, unreachable, written 0.
    let u = &r["unpublished"];
    assert!(!u.descriptor_reachable && !u.reachable && !u.passed);
    assert_eq!(u.error.as_deref(), Some("descriptor_not_found"), "{u:?}");
    assert_eq!(u.descriptor_attempts, 3, "1 + descriptor_max_retries");
    assert_eq!(u.failure_stage, Some(FailureStage::DescriptorNotFound));
    assert_eq!(
        m.get(
            "onionwatch_probe_failures",
            &["unpublished", UNPUBLISHED, "descriptor_not_found"]
        ),
        Some(1.0)
    );
    assert_eq!(u.introduction_points, None);
    let pu = ["unpublished", UNPUBLISHED, "http", "80", "/"];
    let eu = ["unpublished", UNPUBLISHED];
    assert_eq!(m.get("onion_service_descriptor_reachable", &eu), Some(0.0));
    assert_eq!(
        m.get("onion_service_reachable", &pu),
        Some(0.0),
        "written, not left stale"
    );
    assert_eq!(
        m.get("onion_service_descriptor_fetch_error", &eu),
        Some(3.0)
    );
    assert_eq!(
        m.get("onion_service_descriptor_fetch_requests", &eu),
        Some(3.0)
    );
    assert_eq!(
        m.get(
            "onionwatch_probe_errors",
            &["unpublished", UNPUBLISHED, "descriptor_not_found"]
        ),
        Some(1.0),
        "counted once per probe"
    );
    let info = m.get_info("onion_service_descriptor", &eu).unwrap();
    assert!(
        info.contains(&("state".into(), "NOT_FOUND".into())),
        "{info:?}"
    );

    // JSON: one object per result with the promised keys.
    for res in &results {
        let line = json_line(res);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for key in [
            "name",
            "address",
            "protocol",
            "port",
            "path",
            "reachable",
            "status_code",
            "latency_seconds",
            "descriptor_reachable",
            "introduction_points",
            "error",
            "failure_stage",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {line}");
        }
        assert!(v["reachable"].is_boolean());
    }
    let v: serde_json::Value = serde_json::from_str(&json_line(&r["unpublished"])).unwrap();
    assert_eq!(v["error"], "descriptor_not_found");
    assert_eq!(v["failure_stage"], "descriptor_not_found");
    assert_eq!(v["reachable"], false);
    let v: serde_json::Value = serde_json::from_str(&json_line(&r["healthy"])).unwrap();
    assert_eq!(v["error"], serde_json::Value::Null);
    assert_eq!(v["failure_stage"], serde_json::Value::Null);
    assert_eq!(v["status_code"], 200);
    assert_eq!(v["protocol"], "http");
    let v: serde_json::Value = serde_json::from_str(&json_line(&r["status500"])).unwrap();
    assert_eq!(v["failure_stage"], "http_status");

    // Nagios: an unreachable service is CRITICAL.
    let (state, line) = nagios(&results);
    assert_eq!(state, NagiosState::Critical, "{line}");
    assert!(line.starts_with("ONIONWATCH CRITICAL - 3/6"), "{line}");

    // The exposition: bounded series, no timestamp label.
    let mut fams = Vec::new();
    m.collect(&mut fams);
    let text = render(&fams, Format::Prometheus);
    assert!(!text.contains("last_tested_at_posix_timestamp"));
    assert_eq!(text.matches("onion_service_probe_status_info{").count(), 6);
    assert!(text.contains("onionprobe_state{onionprobe_state=\"probing\"} 1"));
}

/// A backend whose port closed: tor reaches the onion service, whose tor
/// cannot connect; a killed onion-service tor: its descriptor is still on
/// the HSDirs, its introduction points are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_backend_and_a_stopped_onion_service_tor_have_their_stage() {
    let _one_at_a_time = DISTURBING.lock().await;
    let o = onions();
    let yaml = format!(
        "{FAST}endpoints:\n  stoppable:\n    address: {b}\n    protocol: http\n    port: 80\n  killed:\n    address: {k}\n    protocol: http\n    port: 80\n",
        b = o.stoppable,
        k = o.killed_tor,
    )
    .replace("http_connect_max_retries: 2", "http_connect_max_retries: 0");
    let (prober, targets) = prober(&yaml).await;

    // Both pass first, so the failures below are the stops'.
    let before = tokio::time::timeout(ROUND_LIMIT, prober.run_round(&targets, 1, None))
        .await
        .expect("round 1 in time");
    for r in &before {
        assert!(r.passed, "{r:?}");
        assert_eq!(r.failure_stage, None);
    }

    stop_backend().await;
    with_shared_network(|n| n.kill_node("hs1"))
        .expect("the shared network runs")
        .expect("hs1 killed");

    let after = tokio::time::timeout(ROUND_LIMIT, prober.run_round(&targets, 2, None))
        .await
        .expect("round 2 in time");
    let r = by_name(&after);
    let s = &r["stoppable"];
    assert!(s.descriptor_reachable && !s.passed, "{s:?}");
    assert_eq!(
        s.failure_stage,
        Some(FailureStage::ConnectionRefused),
        "{s:?}"
    );
    assert!(
        matches!(
            s.error.as_deref(),
            Some("general_failure" | "connection_refused")
        ),
        "{s:?}"
    );
    let k = &r["killed"];
    assert!(!k.passed, "{k:?}");
    assert!(
        matches!(
            k.failure_stage,
            Some(
                FailureStage::IntroductionFailed
                    | FailureStage::DescriptorNotFound
                    | FailureStage::DescriptorTimeout
                    // Seen in CI once, before an attempt's evidence was its
                    // own circuits only: the 60 s connect timeout, tor's
                    // client still retrying the killed service. A failed
                    // introduction circuit of the attempt now makes that
                    // introduction_failed; without one it stays.
                    | FailureStage::ConnectTimeout
            )
        ),
        "a descriptor, introduction or connect-timeout stage: {k:?}"
    );
    // No rendezvous can have joined the killed service in round 2: round 1's
    // joined circuit, which closes when the service's tor dies, is not this
    // attempt's evidence (it once was, and kept connect_timeout uncorrected).
    assert!(
        !k.error_detail.as_deref().unwrap_or("").contains("joined"),
        "an earlier round's circuit in the evidence: {k:?}"
    );
    let m = prober.metrics();
    assert_eq!(
        m.get(
            "onionwatch_probe_failures",
            &["stoppable", &o.stoppable, "connection_refused"]
        ),
        Some(1.0)
    );
    let stage = k.failure_stage.unwrap().as_str();
    assert_eq!(
        m.get(
            "onionwatch_probe_failures",
            &["killed", &o.killed_tor, stage]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_and_never_stale_or_fatal() {
    let o = onions();
    // Round 1: "site" is the healthy service; "wrongport" asks for a port
    // the onion service does not map; "tls-on-plain" speaks TLS to a plain
    // HTTP server (the case that crashes Onionprobe's exporter).
    let yaml = format!(
        "{FAST}endpoints:\n  site:\n    address: {h}\n    protocol: http\n    port: 80\n  wrongport:\n    address: {h}\n    protocol: http\n    port: 81\n  tls-on-plain:\n    address: {m}\n    protocol: https\n    port: 80\n    tls_verify: false\n  strict:\n    address: {s}\n    protocol: https\n    port: 80\n",
        h = o.healthy,
        m = o.mismatch,
        s = o.https,
    );
    let (prober, targets) = prober(&yaml).await;
    let results = tokio::time::timeout(ROUND_LIMIT, prober.run_round(&targets, 1, None))
        .await
        .expect("round 1 in time");
    let r = by_name(&results);
    let m = prober.metrics().clone();
    let site = ["site", o.healthy.as_str(), "http", "80", "/"];
    assert!(r["site"].passed, "{:?}", r["site"]);
    assert_eq!(m.get("onion_service_reachable", &site), Some(1.0));

    // An unmapped port: tor refuses the stream; the error counters count.
    let w = &r["wrongport"];
    assert!(!w.reachable);
    let reason = w.error.clone().unwrap();
    assert!(
        reason.starts_with("onion_service_")
            || reason.ends_with("_refused")
            || reason.contains("unreachable")
            || reason == "connection_timeout",
        "{reason}"
    );
    let pw = ["wrongport", o.healthy.as_str(), "http", "81", "/"];
    assert_eq!(m.get("onion_service_fetch_error", &pw), Some(1.0));
    assert_eq!(m.get("onion_service_request_exception", &pw), Some(1.0));
    assert_eq!(m.get("onion_service_fetch_requests", &pw), Some(3.0));
    assert_eq!(
        m.get(
            "onionwatch_probe_errors",
            &["wrongport", &o.healthy, &reason]
        ),
        Some(1.0)
    );

    // TLS to a plain HTTP server: a clean failure, counted, no crash.
    let t = &r["tls-on-plain"];
    assert_eq!(t.error.as_deref(), Some("tls_error"), "{t:?}");
    assert_eq!(t.failure_stage, Some(FailureStage::Tls), "{t:?}");
    assert_eq!(
        m.get(
            "onion_service_generic_error",
            &["tls-on-plain", &o.mismatch, "80"]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "onion_service_valid_certificate",
            &["tls-on-plain", &o.mismatch, "https", "80", "/"]
        ),
        Some(2.0),
        "untested, not 'valid', when nothing was fetched"
    );

    // tls_verify left out means verify: a self-signed certificate fails.
    let s = &r["strict"];
    assert_eq!(s.error.as_deref(), Some("certificate_invalid"), "{s:?}");
    assert_eq!(s.failure_stage, Some(FailureStage::Tls), "{s:?}");
    let ps = ["strict", o.https.as_str(), "https", "80", "/"];
    assert_eq!(m.get("onion_service_certificate_error", &ps), Some(1.0));
    assert_eq!(m.get("onion_service_valid_certificate", &ps), Some(0.0));

    // Round 2: same endpoint, but its descriptor step fails (a 1 ms
    // descriptor_timeout): reachable and descriptor_reachable are written 0,
    // not left at a stale 1; removed endpoints' series disappear.
    let yaml2 = format!(
        "launch_tor: false\nshuffle: false\nrandomize: false\ninterval: 0\ndescriptor_timeout: 0.001\ndescriptor_max_retries: 0\nendpoints:\n  site:\n    address: {h}\n    protocol: http\n    port: 80\n",
        h = o.healthy
    );
    let (config, _) = onionwatch_probe::Config::from_yaml(&yaml2, "reload").unwrap();
    let targets2 = config.targets().unwrap();
    prober.set_settings(onionwatch_probe::Settings::from_config(&config));
    m.retain_endpoints(&[("site", o.healthy.as_str())]);
    let results2 = tokio::time::timeout(ROUND_LIMIT, prober.run_round(&targets2, 2, None))
        .await
        .expect("round 2 in time");
    assert_eq!(
        results2[0].error.as_deref(),
        Some("descriptor_timeout"),
        "{:?}",
        results2[0]
    );
    assert_eq!(
        results2[0].failure_stage,
        Some(FailureStage::DescriptorTimeout),
        "{:?}",
        results2[0]
    );
    assert_eq!(m.get("onion_service_reachable", &site), Some(0.0));
    assert_eq!(
        m.get("onion_service_descriptor_reachable", &["site", &o.healthy]),
        Some(0.0),
        "written on a timeout too"
    );
    assert_eq!(
        m.get("onion_service_latency_seconds", &site),
        None,
        "no stale latency"
    );
    assert_eq!(
        m.get(
            "onion_service_reachable",
            &["wrongport", &o.healthy, "http", "81", "/"]
        ),
        None,
        "series of removed endpoints are gone"
    );
}

/// `name -> (type, label-name set, has samples)` from Prometheus text 0.0.4.
fn families(
    text: &str,
) -> std::collections::BTreeMap<String, (String, std::collections::BTreeSet<String>, bool)> {
    let mut out: std::collections::BTreeMap<
        String,
        (String, std::collections::BTreeSet<String>, bool),
    > = Default::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.entry(name.to_owned()).or_default().0 = kind.to_owned();
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap();
            let name = &line[..end];
            let e = out.entry(name.to_owned()).or_default();
            e.2 = true;
            if line[end..].starts_with('{') {
                // Label names: `k="…"` pairs; values may hold commas and quotes.
                let mut rest = &line[end + 1..];
                while let Some(eq) = rest.find("=\"") {
                    e.1.insert(rest[..eq].trim_start_matches(',').to_owned());
                    let mut i = eq + 2;
                    let b = rest.as_bytes();
                    while i < b.len() && b[i] != b'"' {
                        i += if b[i] == b'\\' { 2 } else { 1 };
                    }
                    rest = &rest[(i + 1).min(rest.len())..];
                    if rest.starts_with('}') {
                        break;
                    }
                }
            }
        }
    }
    out
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// Families deliberately different from Onionprobe (see the README).
const NO_SAMPLES_BY_DESIGN: &[&str] = &["onion_service_tls_security_level"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onionprobe_and_onionwatch_export_the_same_families() {
    let have = std::process::Command::new("python3")
        .args(["-c", "import onionprobe, prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        eprintln!("SKIPPED: Onionprobe is not installed (scripts/install-deps installs it)");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install onionprobe==1.4.1"
        );
        return;
    }
    let info = net();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{FAST}tor_address: 127.0.0.1\nsocks_port: {}\ncontrol_port: {}\ncontrol_password: '{PASSWORD}'\nloop: false\nprometheus_exporter: false\nlog_level: info\n{}",
        info.client.socks.port(),
        info.client.control.port(),
        endpoints_yaml(false)
    );
    let cfg = dir.path().join("onionprobe.yaml");
    std::fs::write(&cfg, &yaml).unwrap();
    let out = dir.path().join("onionprobe.prom");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/onionprobe_dump.py"
    );
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&out)
        .arg("-c")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut s = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut s).await;
        s
    });

    // onionwatch, same endpoints, same tor, at the same time.
    let (prober, targets) = prober(&yaml).await;
    tokio::time::timeout(ROUND_LIMIT, prober.run_round(&targets, 1, None))
        .await
        .expect("onionwatch's round in time");
    let registry = std::sync::Arc::new(onionwatch_server::Registry::default());
    registry.register(prober.metrics().clone());
    let listener = onionwatch_server::bind("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(onionwatch_server::serve_on(
        listener,
        onionwatch_server::router(registry),
        std::future::pending(),
    ));
    let ours = families(&scrape(addr).await);
    server.abort();

    let status = tokio::time::timeout(ROUND_LIMIT, child.wait())
        .await
        .expect("Onionprobe finished in time")
        .unwrap();
    let log = log.await.unwrap();
    let text = std::fs::read_to_string(&out).unwrap_or_else(|e| {
        panic!("Onionprobe wrote no metrics ({e}); status {status}; log:\n{log}")
    });
    let theirs = families(&text);
    assert!(
        theirs.get("onion_service_reachable").is_some_and(|f| f.2),
        "Onionprobe probed nothing; log:\n{log}"
    );

    let theirs: std::collections::BTreeMap<_, _> = theirs
        .into_iter()
        .filter(|(n, _)| !n.starts_with("python_") && !n.starts_with("process_"))
        .collect();
    let ours: std::collections::BTreeMap<_, _> = ours
        .into_iter()
        // Both sides export process_* families of their own process.
        .filter(|(n, _)| !n.starts_with("onionwatch_") && !n.starts_with("process_"))
        .collect();
    // `X_created` exists only for counters with samples: compare those
    // where both sides counted something.
    let comparable = |name: &str| match name.strip_suffix("_created") {
        Some(base) => {
            let t = format!("{base}_total");
            theirs.get(&t).is_some_and(|f| f.2) && ours.get(&t).is_some_and(|f| f.2)
        }
        None => true,
    };
    let names =
        |m: &std::collections::BTreeMap<String, (String, _, bool)>| -> Vec<(String, String)> {
            m.iter()
                .filter(|(n, _)| comparable(n))
                .map(|(n, f)| (n.clone(), f.0.clone()))
                .collect()
        };
    assert_eq!(names(&theirs), names(&ours), "family names and types");

    for (name, (_, labels, sampled)) in &theirs {
        let Some((_, our_labels, our_sampled)) = ours.get(name) else {
            continue;
        };
        if *sampled && !*our_sampled {
            assert!(
                NO_SAMPLES_BY_DESIGN.contains(&name.as_str()),
                "{name}: Onionprobe has samples, onionwatch none"
            );
            continue;
        }
        if !*sampled || !*our_sampled {
            continue;
        }
        let mut labels = labels.clone();
        if name == "onion_service_probe_status_info" {
            // Deliberate: no timestamp label (unbounded series).
            assert!(labels.remove("last_tested_at_posix_timestamp"));
        }
        assert_eq!(&labels, our_labels, "{name}: label names");
    }
    eprintln!(
        "Onionprobe exit status {status}; compared {} families",
        theirs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_authorized_onion_services_are_probed_with_their_key() {
    use onionwatch_tor::control::{AddOnion, Auth, ControlAddr, ControlClient};
    let info = net();
    let hs = &info.onions[0];
    let (svc, mut events) = ControlClient::connect(
        &hs.control.parse::<ControlAddr>().unwrap(),
        Auth::Cookie {
            path: Some(hs.cookie.clone()),
        },
    )
    .await
    .unwrap();
    let secret = [42u8; 32];
    let public = x25519_public(secret);
    let mut req = AddOnion::new(80, Some(&backends().healthy.to_string()));
    req.client_auth_v3 = vec![onionwatch_tor::onion::BASE32.encode(&public)];
    svc.set_events(&["HS_DESC"]).await.unwrap();
    let added = svc.add_onion(&req).await.unwrap();
    let address = format!("{}.onion", added.service_id);
    // Wait (bounded) until the service tor reports the descriptor uploaded.
    tokio::time::timeout(ROUND_LIMIT, async {
        while let Some(ev) = events.recv().await {
            if let onionwatch_tor::control::Event::HsDesc(d) = ev {
                if d.action == onionwatch_tor::control::HsDescAction::Uploaded
                    && d.address == added.service_id
                {
                    return;
                }
            }
        }
        panic!("the control connection closed");
    })
    .await
    .expect("the client-authorized onion service published its descriptor");
    let key = data_encoding::BASE64.encode(&secret);
    let yaml = |with_key: bool| {
        format!(
            "{}descriptor_max_retries: 12\ndescriptor_timeout: 20\nendpoints:\n  private:\n    address: {address}\n    protocol: http\n    port: 80\n    paths:\n      - path: /\n        pattern: 'healthy marker'\n{}",
            FAST.replace("descriptor_max_retries: 2\n", "")
                .replace("descriptor_timeout: 60\n", ""),
            if with_key { format!("    client_auth_key: '{key}'\n") } else { String::new() }
        )
    };
    // Without the key: the descriptor is fetched but cannot be decrypted,
    // and tor refuses the stream.
    let (p1, targets) = prober(&yaml(false)).await;
    let r = tokio::time::timeout(ROUND_LIMIT, p1.run_round(&targets, 1, None))
        .await
        .expect("in time");
    assert!(r[0].descriptor_reachable, "published in time: {:?}", r[0]);
    assert_eq!(r[0].introduction_points, None);
    assert!(!r[0].reachable);
    // tor usually answers 0xF4 (missing client authorization), but when its
    // own fetch races ours it can end the stream with a plain 0x04 instead.
    assert!(
        matches!(
            r[0].error.as_deref(),
            Some("onion_service_missing_client_auth" | "host_unreachable")
        ),
        "{:?}",
        r[0]
    );
    // With the key: decrypted, reachable, pattern found.
    let (p2, targets) = prober(&yaml(true)).await;
    let r = tokio::time::timeout(ROUND_LIMIT, p2.run_round(&targets, 1, None))
        .await
        .expect("in time");
    assert!(r[0].passed, "{:?}", r[0]);
    assert!(
        r[0].introduction_points.is_some_and(|n| n >= 1),
        "{:?}",
        r[0]
    );
    drop(svc);
}

fn x25519_public(secret: [u8; 32]) -> [u8; 32] {
    let s = tor_llcrypto::pk::curve25519::StaticSecret::from(secret);
    tor_llcrypto::pk::curve25519::PublicKey::from(&s).to_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_succeeds_on_a_retry_counts_as_reachable() {
    use std::sync::atomic::Ordering;
    let o = onions();
    // FAST allows http_connect_max_retries: 2, i.e. 3 attempts.
    let yaml = format!(
        "{FAST}endpoints:\n  flaky:\n    address: {}\n    protocol: http\n    port: 80\n    paths:\n      - path: /\n        pattern: '{FLAKY_MARKER}'\n        allowed_statuses: [200]\n",
        o.flaky
    );
    let (prober, targets) = prober(&yaml).await;
    let accepted_before = FLAKY_ACCEPTED.load(Ordering::SeqCst);
    FLAKY_DROPS.store(2, Ordering::SeqCst);
    let results = tokio::time::timeout(ROUND_LIMIT, prober.run_round(&targets, 1, None))
        .await
        .expect("the round finished in time");
    let r = &results[0];
    assert_eq!(
        FLAKY_DROPS.load(Ordering::SeqCst),
        0,
        "both failing attempts reached the backend: {r:?}"
    );
    assert_eq!(
        FLAKY_ACCEPTED.load(Ordering::SeqCst) - accepted_before,
        3,
        "two dropped connections, then one answered: {r:?}"
    );
    assert!(r.passed && r.reachable, "{r:?}");
    assert_eq!(r.attempts, 3, "{r:?}");
    assert_eq!(r.status_code, Some(200));
    assert_eq!(r.pattern_matched, Some(true));
    assert_eq!(r.error, None);

    let m = prober.metrics();
    let p = ["flaky", o.flaky.as_str(), "http", "80", "/"];
    assert_eq!(m.get("onion_service_reachable", &p), Some(1.0));
    assert_eq!(m.get("onion_service_status_code", &p), Some(200.0));
    assert!(m.get("onion_service_latency_seconds", &p).is_some());
    assert_eq!(m.get("onion_service_fetch_requests", &p), Some(3.0));
    assert_eq!(
        m.get("onion_service_fetch_error", &p),
        None,
        "the probe succeeded: no fetch error counted"
    );
    // Onionprobe's retry gauge: attempts used, under reachable="1" only.
    let mut fams = Vec::new();
    m.collect(&mut fams);
    let text = render(&fams, Format::Prometheus);
    let attempts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("onion_service_connection_attempts{") && l.contains("\"flaky\""))
        .collect();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert!(
        attempts[0].contains("reachable=\"1\"") && attempts[0].ends_with(" 3"),
        "{attempts:?}"
    );
    assert!(text.contains(&format!(
        "onion_service_reachable{{name=\"flaky\",address=\"{}\",protocol=\"http\",port=\"80\",path=\"/\"}} 1",
        o.flaky
    )));

    // While the next round retries, a scrape still finds the last result
    // (no gap in the series): its second attempt cannot have ended yet
    // when its first is counted.
    // One drop is enough to make it retry, and leaves a spare attempt should
    // tor lose a stream on its own (seen once in CI: three failed attempts
    // with two drops).
    let accepted_before = FLAKY_ACCEPTED.load(Ordering::SeqCst);
    FLAKY_DROPS.store(1, Ordering::SeqCst);
    let next = {
        let (prober, targets) = (prober.clone(), targets.clone());
        tokio::spawn(async move { prober.run_round(&targets, 2, None).await })
    };
    let deadline = std::time::Instant::now() + ROUND_LIMIT;
    while m.get("onion_service_fetch_requests", &p) < Some(4.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "round 2 never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(m.get("onion_service_status_code", &p), Some(200.0));
    assert!(m.get("onion_service_latency_seconds", &p).is_some());
    let results = tokio::time::timeout(ROUND_LIMIT, next)
        .await
        .expect("round 2 finished in time")
        .unwrap();
    assert!(
        results[0].passed,
        "{:?}; the backend saw {} connection(s), {} drop(s) left",
        results[0],
        FLAKY_ACCEPTED.load(Ordering::SeqCst) - accepted_before,
        FLAKY_DROPS.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_a_trusted_ca_is_valid_and_a_self_signed_one_is_not() {
    let o = onions();
    let ca = test_ca();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("test-ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let endpoints = format!(
        "endpoints:\n  ca-signed:\n    address: {}\n    protocol: https\n    port: 80\n    paths:\n      - path: /\n        pattern: 'CA-signed'\n        allowed_statuses: [200]\n  self-signed:\n    address: {}\n    protocol: https\n    port: 80\n    tls_verify: false\n",
        o.ca_https, o.https
    );
    let yaml = format!(
        "{FAST}tls_verify: true\ntls_ca_file: '{}'\n{endpoints}",
        ca_file.display()
    );
    let (p1, targets) = prober(&yaml).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let results = tokio::time::timeout(ROUND_LIMIT, p1.run_round(&targets, 1, None))
        .await
        .expect("the round finished in time");
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let r = by_name(&results);
    let m = p1.metrics();

    let c = &r["ca-signed"];
    assert!(c.passed, "verified against tls_ca_file: {c:?}");
    let tls = c.tls.as_ref().unwrap();
    assert!(tls.certificate_valid, "{tls:?}");
    assert_eq!(tls.certificate_match_hostname, Some(true));
    let pc = ["ca-signed", o.ca_https.as_str(), "https", "80", "/"];
    let tc = ["ca-signed", o.ca_https.as_str(), "80"];
    assert_eq!(m.get("onion_service_valid_certificate", &pc), Some(1.0));
    assert_eq!(
        m.get(
            "onion_service_certificate_not_valid_after_timestamp_seconds",
            &tc
        ),
        Some(ca.leaf_not_after as f64)
    );
    let expiry = m
        .get("onion_service_certificate_expiry_seconds", &tc)
        .unwrap();
    assert!(
        ((ca.leaf_not_after - after - 1) as f64..=(ca.leaf_not_after - before + 1) as f64)
            .contains(&expiry),
        "expiry {expiry} vs notAfter {} probed between {before} and {after}",
        ca.leaf_not_after
    );
    assert_eq!(
        m.get("onion_service_certificate_match_hostname", &tc),
        Some(1.0)
    );
    let cert = m.get_info("onion_service_certificate", &tc).unwrap();
    assert!(
        cert.iter()
            .any(|(k, v)| k == "issuer" && v.contains("onionwatch test CA")),
        "{cert:?}"
    );

    // Self-signed, not from the CA: invalid (fetched anyway, tls_verify false).
    let s = &r["self-signed"];
    assert!(s.passed, "{s:?}");
    assert!(!s.tls.as_ref().unwrap().certificate_valid);
    let ps = ["self-signed", o.https.as_str(), "https", "80", "/"];
    assert_eq!(m.get("onion_service_valid_certificate", &ps), Some(0.0));

    // Without tls_ca_file the same certificate is refused (tls_verify).
    let (p2, targets2) = prober(&format!("{FAST}tls_verify: true\n{endpoints}")).await;
    let results2 = tokio::time::timeout(ROUND_LIMIT, p2.run_round(&targets2, 1, None))
        .await
        .expect("the round finished in time");
    let c2 = &by_name(&results2)["ca-signed"];
    assert_eq!(c2.error.as_deref(), Some("certificate_invalid"), "{c2:?}");
    assert_eq!(
        p2.metrics().get("onion_service_valid_certificate", &pc),
        Some(0.0)
    );
}

/// Onionprobe 1.4.1's source distribution, unpacked: it alone ships the
/// Prometheus rules and the Grafana dashboard (the wheel does not). From
/// `ONIONPROBE_SDIST` (the .tar.gz) if set, else `pip download` (cached in
/// the target directory). `None` when neither works.
fn onionprobe_sdist() -> Option<std::path::PathBuf> {
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("onionprobe-1.4.1-sdist");
    let tree = cache.join("onionprobe-1.4.1");
    let wanted = [
        "configs/prometheus/prometheus-rules.yml",
        "configs/grafana/home.json",
    ];
    if wanted.iter().all(|f| tree.join(f).is_file()) {
        return Some(tree);
    }
    std::fs::create_dir_all(&cache).ok()?;
    let archive = match std::env::var_os("ONIONPROBE_SDIST") {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let ok = std::process::Command::new("python3")
                .args(["-m", "pip", "download", "--quiet", "--no-deps"])
                .args(["--no-binary", ":all:", "onionprobe==1.4.1", "-d"])
                .arg(&cache)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return None;
            }
            cache.join("onionprobe-1.4.1.tar.gz")
        }
    };
    let ok = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&cache)
        .args(wanted.iter().map(|f| format!("onionprobe-1.4.1/{f}")))
        .status()
        .is_ok_and(|s| s.success());
    (ok && wanted.iter().all(|f| tree.join(f).is_file())).then_some(tree)
}

/// Every `expr` string in a Grafana dashboard.
fn dashboard_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// The result vector of a successful instant query; panics on an error.
fn query_result(
    prom: &onionwatch_testnet::prometheus::Prometheus,
    q: &str,
) -> Vec<serde_json::Value> {
    let body = prom
        .query(q)
        .unwrap_or_else(|| panic!("no answer from Prometheus to {q:?}"));
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q:?}: {e}: {body}"));
    assert_eq!(v["status"], "success", "query {q:?} failed: {body}");
    match &v["data"]["result"] {
        serde_json::Value::Array(a) => a.clone(),
        // Scalars and strings are one value.
        other => vec![other.clone()],
    }
}

/// The part of a dashboard query that must have data: Grafana's
/// `… or vector(0)` fallback always does.
fn without_fallback(q: &str) -> &str {
    let q = q.trim();
    q.strip_suffix("or vector(0)")
        .map(str::trim_end)
        .unwrap_or(q)
}

/// Dashboard queries that are empty on this network, as they would be for
/// Onionprobe on the same services (each with the reason).
const EMPTY_HERE: &[(&str, &str)] = &[
    (
        "onion_service_pow_v1_effort > 0",
        "nobody attacks the test services: the suggested PoW effort is 0",
    ),
    (
        "sort_desc(avg_over_time(onion_service_latency_seconds[30m]) > 20)",
        "no service takes 20 s on loopback",
    ),
    (
        "count(onion_service_is_single==1)/count(onion_service_is_single)*100",
        "no single onion service in the test network",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onionprobes_alert_rules_and_dashboard_queries_work_on_our_metrics() {
    let Some(sdist) = onionprobe_sdist() else {
        eprintln!("SKIPPED: cannot get Onionprobe 1.4.1's source distribution (pip download onionprobe==1.4.1, or set ONIONPROBE_SDIST to the .tar.gz)");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to download onionprobe==1.4.1's sdist"
        );
        return;
    };
    if std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: promtool/prometheus are not installed (apt-get install prometheus)");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install prometheus"
        );
        return;
    }
    let rules_file = sdist.join("configs/prometheus/prometheus-rules.yml");
    let check = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules_file)
        .output()
        .unwrap();
    let check_out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "promtool check rules: {check:?}");
    assert!(check_out.contains("SUCCESS: 6 rules found"), "{check_out}");
    let rules: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&rules_file).unwrap()).unwrap();
    let mut alerts: Vec<(String, String)> = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            alerts.push((
                rule["alert"].as_str().unwrap().to_owned(),
                rule["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert_eq!(alerts.len(), 6);
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sdist.join("configs/grafana/home.json")).unwrap(),
    )
    .unwrap();
    let mut queries = Vec::new();
    dashboard_exprs(&dashboard, &mut queries);
    queries.sort();
    queries.dedup();
    assert!(queries.len() >= 40, "{queries:?}");

    // onionwatch probes the test services once and serves /metrics.
    let yaml = format!("{FAST}{}", endpoints_yaml(true));
    let (prober, targets) = prober(&yaml).await;
    tokio::time::timeout(ROUND_LIMIT, prober.run_round(&targets, 1, None))
        .await
        .expect("the round finished in time");
    let registry = std::sync::Arc::new(onionwatch_server::Registry::default());
    registry.register(prober.metrics().clone());
    let listener = onionwatch_server::bind("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(onionwatch_server::serve_on(
        listener,
        onionwatch_server::router(registry),
        std::future::pending(),
    ));

    let rules_path = rules_file.clone();
    let prom = tokio::task::spawn_blocking(move || {
        onionwatch_testnet::prometheus::Prometheus::start_with_rules(
            &[addr],
            Duration::from_secs(1),
            &[rules_path],
        )
    })
    .await
    .unwrap()
    .expect("Prometheus starts with Onionprobe's rules");
    let o = onions();

    // Wait (bounded) until the rules without `for:` fire on scraped data.
    let firing = |alerts_json: &str, name: &str| {
        let v: serde_json::Value = serde_json::from_str(alerts_json).unwrap_or_default();
        v["data"]["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x["labels"]["alertname"] == name)
                    .map(|x| {
                        (
                            x["labels"]["address"].as_str().unwrap_or("").to_owned(),
                            x["state"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let alerts_json = loop {
        let body = prom.api("/api/v1/alerts").unwrap_or_default();
        if !firing(&body, "Expiring TLS certificate for the Onion Service").is_empty()
            && !firing(&body, "Unexpected HTTP status code").is_empty()
        {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the alerts never became active: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // Every rule loads and evaluates without error.
    let rules_json = prom.api("/api/v1/rules").unwrap();
    let v: serde_json::Value = serde_json::from_str(&rules_json).unwrap();
    let mut seen = 0;
    for group in v["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            seen += 1;
            assert_eq!(rule["health"], "ok", "{rule}");
            assert!(
                rule["lastError"].as_str().unwrap_or("").is_empty(),
                "{rule}"
            );
        }
    }
    assert_eq!(seen, 6, "{rules_json}");

    // Each alert fires (or is pending for its `for:`) for the services
    // that are broken in that way, as Onionprobe's metrics would make it.
    let has = |name: &str, address: &str| {
        let list = firing(&alerts_json, name);
        assert!(
            list.iter().any(|(a, _)| a == address),
            "{name} for {address}: {list:?}"
        );
        list
    };
    has("Onion Service unreachable", &o.error500);
    has("Onion Service unreachable", UNPUBLISHED);
    has("Onion Service descriptor unreachable", UNPUBLISHED);
    has("Unexpected HTTP status code", &o.error500);
    let expiring = has("Expiring TLS certificate for the Onion Service", &o.https);
    assert!(expiring.iter().all(|(_, s)| s == "firing"), "{expiring:?}");
    let invalid = has("Invalid TLS certificate for the Onion Service", &o.https);
    assert!(invalid.iter().all(|(_, s)| s == "firing"), "{invalid:?}");
    for name in [
        "Onion Service unreachable",
        "Onion Service descriptor unreachable",
        "Unexpected HTTP status code",
    ] {
        let list = firing(&alerts_json, name);
        assert!(
            !list.iter().any(|(a, _)| a == &o.healthy),
            "{name} must not fire for the healthy service: {list:?}"
        );
    }
    // Before the first scrape there is no onionprobe_state, so this rule
    // may be pending from its group's first evaluation; once its group has
    // evaluated scraped data it must clear (bounded wait).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let body = prom.api("/api/v1/alerts").unwrap_or_default();
        if firing(&body, "Onionprobe not responding").is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Onionprobe not responding stays active while the prober is up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (name, expr) in &alerts {
        let result = query_result(&prom, expr);
        if name == "Onionprobe not responding" {
            assert!(result.is_empty(), "{name}: {result:?}");
            assert!(!query_result(&prom, "onionprobe_state").is_empty());
        } else {
            assert!(!result.is_empty(), "{name}: {expr} has no series");
        }
    }

    // Every dashboard query evaluates, and has data unless it is one that
    // is empty on this network for Onionprobe too.
    let mut empty = Vec::new();
    for q in &queries {
        // Evaluates without error (query_result asserts it).
        query_result(&prom, q);
        if query_result(&prom, without_fallback(q)).is_empty() {
            empty.push(without_fallback(q).to_owned());
        }
    }
    let expected: Vec<String> = EMPTY_HERE.iter().map(|(q, _)| (*q).to_owned()).collect();
    empty.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(
        empty, expected_sorted,
        "dashboard queries without data (expected: {EMPTY_HERE:?})"
    );
    eprintln!(
        "{} alert rules and {} dashboard queries checked",
        alerts.len(),
        queries.len()
    );
    drop(prom);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_within_the_onion_service_like_onionprobe() {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    let o = onions();
    let n = net();
    // tor_address as a host name (Onionprobe's Compose setup uses `tor`);
    // a look-ahead pattern (Python syntax); an endpoint whose pattern is
    // invalid, which must not stop the others.
    let yaml = format!(
        "{FAST}tor_address: localhost\nsocks_port: {socks}\ncontrol_port: {control}\ncontrol_password: '{PASSWORD}'\nendpoints:\n  redirect:\n    address: {r}\n    protocol: http\n    port: 80\n    paths:\n      - path: /\n        pattern: 'redirect(?= final)'\n        allowed_statuses: [200]\n      - path: /abs\n        allowed_statuses: [200]\n      - path: /rel/x\n        allowed_statuses: [200]\n      - path: /away\n        allowed_statuses: [200]\n  loop:\n    address: {r}\n    protocol: http\n    port: 80\n    paths:\n      - path: /loop/0\n        allowed_statuses: [200]\n  invalid:\n    address: {h}\n    protocol: http\n    port: 80\n    paths:\n      - path: /\n        pattern: '(?<=unclosed'\n",
        socks = n.client.socks.port(),
        control = n.client.control.port(),
        r = o.redirect,
        h = o.healthy,
    );
    let (config, warnings) = onionwatch_probe::Config::from_yaml(&yaml, "test").unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("endpoints.\"invalid\".paths[0].pattern")
                && w.contains("endpoint \"invalid\" is not probed")),
        "{warnings:?}"
    );
    let targets = config.targets().unwrap();
    let tor = onionwatch_probe::Tor::from_config(&config)
        .await
        .expect("tor_address: localhost resolves");
    let prober = onionwatch_probe::Prober::new(
        Arc::new(tor),
        Arc::new(onionwatch_probe::ProbeMetrics::new()),
        onionwatch_probe::Settings::from_config(&config),
    );
    let loops_before = LOOP_REQUESTS.load(Ordering::SeqCst);
    let results = tokio::time::timeout(ROUND_LIMIT, prober.run_round(&targets, 1, None))
        .await
        .expect("the round finished in time");
    assert!(results.iter().all(|r| r.name != "invalid"), "{results:?}");
    let r: HashMap<(String, String), ProbeResult> = results
        .iter()
        .map(|r| ((r.name.clone(), r.path.clone().unwrap()), r.clone()))
        .collect();
    let get = |name: &str, path: &str| &r[&(name.to_owned(), path.to_owned())];
    let m = prober.metrics();

    // / -> /final: the final status passes allowed_statuses [200], and the
    // look-ahead pattern matches the final body.
    let root = get("redirect", "/");
    assert!(root.passed && root.reachable, "{root:?}");
    assert_eq!(root.status_code, Some(200));
    assert_eq!(root.redirects, 1);
    assert_eq!(
        root.final_url.as_deref(),
        Some(format!("http://{}/final", o.redirect).as_str())
    );
    assert_eq!(root.pattern_matched, Some(true));
    let p = ["redirect", o.redirect.as_str(), "http", "80", "/"];
    assert_eq!(m.get("onion_service_status_code", &p), Some(200.0));
    assert_eq!(m.get("onion_service_reachable", &p), Some(1.0));
    assert_eq!(
        m.get(
            "onion_service_pattern_matched",
            &[
                "redirect",
                &o.redirect,
                "http",
                "80",
                "/",
                "redirect(?= final)"
            ]
        ),
        Some(1.0)
    );
    // Absolute and relative Locations.
    for path in ["/abs", "/rel/x"] {
        let x = get("redirect", path);
        assert!(x.passed && x.redirects == 1, "{path}: {x:?}");
        assert_eq!(
            x.final_url.as_deref(),
            Some(format!("http://{}/final", o.redirect).as_str())
        );
    }
    // A redirect out of the onion service is not followed: its 302 is the
    // answer, and the detail says why.
    let away = get("redirect", "/away");
    assert!(!away.passed, "{away:?}");
    assert_eq!(away.status_code, Some(302));
    assert_eq!(away.error.as_deref(), Some("unexpected_status"));
    let detail = away.error_detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains("http://example.com/") && detail.contains("follow_redirects_elsewhere"),
        "{detail}"
    );

    // Endless redirects: 30 followed per attempt (31 requests), then
    // too_many_redirects, counted once for the path (after the retries).
    let l = get("loop", "/loop/0");
    assert!(!l.passed, "{l:?}");
    assert_eq!(l.error.as_deref(), Some("too_many_redirects"), "{l:?}");
    assert_eq!(l.attempts, 3, "1 + http_connect_max_retries");
    assert_eq!(
        LOOP_REQUESTS.load(Ordering::SeqCst) - loops_before,
        3 * 31,
        "each attempt: the first request and 30 redirects"
    );
    let pl = ["loop", o.redirect.as_str(), "http", "80", "/loop/0"];
    assert_eq!(m.get("onion_service_too_many_redirects", &pl), Some(1.0));
    assert_eq!(m.get("onion_service_fetch_error", &pl), Some(1.0));
    assert_eq!(m.get("onion_service_reachable", &pl), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connect_max_retries_bounds_the_tls_step_like_onionprobe() {
    use std::sync::atomic::Ordering;
    let o = onions();
    let options = FAST
        .replace("http_connect_max_retries: 2", "http_connect_max_retries: 0")
        .replace("tls_connect_max_retries: 0", "tls_connect_max_retries: 2");
    let yaml = format!(
        "{options}endpoints:\n  refuser:\n    address: {}\n    protocol: https\n    port: 80\n    test_tls_connection: true\n    paths:\n      - path: /\n",
        o.refuser
    );
    let (prober, targets) = prober(&yaml).await;
    let before = REFUSER_ACCEPTED.load(Ordering::SeqCst);
    let results = tokio::time::timeout(ROUND_LIMIT, prober.run_round(&targets, 1, None))
        .await
        .expect("the round finished in time");
    let r = &results[0];
    assert_eq!(r.error.as_deref(), Some("tls_error"), "{r:?}");
    assert_eq!(r.attempts, 1, "{r:?}");
    assert_eq!(
        REFUSER_ACCEPTED.load(Ordering::SeqCst) - before,
        1 + 3,
        "one HTTPS attempt, then the TLS step: 1 + tls_connect_max_retries"
    );
}

/// Continues a stopped process when dropped, so a failing test never
/// leaves the shared network's tor stopped.
struct Stopped(i32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        let pid = i32::try_from(pid).unwrap();
        // SAFETY: sending a signal to a child process of this test binary.
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGSTOP) },
            0,
            "SIGSTOP {pid}"
        );
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// A real connect timeout past the introduction: the onion-service tor
/// `hs2` is stopped (SIGSTOP) after a probe fetched its descriptor, so the
/// HSDirs still serve the descriptor and the introduction points (relays)
/// still take the introduction, but the onion service never comes to the
/// rendezvous point. With a 1 s `http_connect_timeout` the stream does not
/// open in time: `connect_timeout`, and the detail says what tor's
/// circuits for the service were doing (CIRC events). Tor itself expires an
/// acknowledged rendezvous circuit only after three circuit build timeouts
/// plus a second, but the rendezvous point may destroy the circuit sooner
/// (seen in CI: `FAILED DESTROYED (remote DESTROYED)` within the second):
/// then the stage is `rendezvous_failed`, as truthfully. Either is a real
/// failure classified from tor's events; anything else fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_onion_service_tor_gives_a_connect_timeout_or_rendezvous_failure_explained_by_circuits(
) {
    let _one_at_a_time = DISTURBING.lock().await;
    let o = onions();
    let yaml = |timeout: u32| {
        format!(
            "{FAST}endpoints:\n  stalled:\n    address: {}\n    protocol: http\n    port: 80\n",
            o.stalled_tor
        )
        .replace("http_connect_max_retries: 2", "http_connect_max_retries: 0")
        .replace(
            "http_connect_timeout: 60",
            &format!("http_connect_timeout: {timeout}"),
        )
    };
    let (prober, targets) = prober(&yaml(60)).await;
    let before = tokio::time::timeout(ROUND_LIMIT, prober.run_round(&targets, 1, None))
        .await
        .expect("round 1 in time");
    assert!(before[0].passed, "{:?}", before[0]);

    let pid = with_shared_network(|n| {
        n.nodes()
            .iter()
            .find(|t| t.nickname == "hs2")
            .and_then(|t| t.pid())
    })
    .flatten()
    .expect("hs2 runs");
    let stopped = Stopped::stop(pid);
    // The same prober: each probe has its own isolation token, so its own
    // new circuits.
    let (config, _) = onionwatch_probe::config::Config::from_yaml(&yaml(1), "test").unwrap();
    prober.set_settings(onionwatch_probe::Settings::from_config(&config));
    let after = tokio::time::timeout(ROUND_LIMIT, prober.run_round(&targets, 2, None))
        .await
        .expect("round 2 in time");
    drop(stopped);

    let r = &after[0];
    assert!(r.descriptor_reachable && !r.passed, "{r:?}");
    assert_eq!(r.error.as_deref(), Some("connection_timeout"), "{r:?}");
    let detail = r.error_detail.as_deref().unwrap_or("");
    assert!(
        detail.contains("(tor's circuits: "),
        "tor's circuits for the onion service were seen: {detail}"
    );
    let stage = r.failure_stage.expect("a failed probe has a stage");
    match stage {
        FailureStage::ConnectTimeout => {}
        FailureStage::RendezvousFailed => assert!(
            detail.contains("the rendezvous circuit ended FAILED"),
            "rendezvous_failed only from a failed rendezvous circuit: {r:?}"
        ),
        other => panic!("stage {other:?}, not connect_timeout or rendezvous_failed: {r:?}"),
    }
    assert_eq!(
        prober.metrics().get(
            "onionwatch_probe_failures",
            &["stalled", &o.stalled_tor, stage.as_str()]
        ),
        Some(1.0)
    );
}

/// One HTTP request through the client tor's SOCKS port with `isolation`:
/// its own rendezvous circuit, joined once the answer comes.
async fn get_through_tor(host: &str, isolation: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let iso = onionwatch_tor::socks::Isolation::new(isolation);
    let mut s = onionwatch_tor::socks::connect(net().client.socks, host, 80, Some(&iso))
        .await
        .expect("a stream to the healthy onion service");
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = Vec::new();
    s.read_to_end(&mut body).await.unwrap();
    assert!(body.starts_with(b"HTTP/1."), "{body:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_probes_circuit_closing_during_an_attempt_is_not_its_evidence() {
    // An earlier probe's joined rendezvous circuit that closes during a
    // later attempt (an onion-service tor killed in between, here closed by
    // the control port) once showed in the later failure as "the rendezvous
    // circuit joined", which kept its stage from being corrected.
    let tor = client_tor().await;
    let host = onions().healthy;
    let id = host.trim_end_matches(".onion").to_owned();

    let earlier = tor.subscribe(&id);
    get_through_tor(&host, "onionwatch-test-earlier").await;
    let control = tor.control().await.unwrap();
    let old = control
        .circuit_status()
        .await
        .unwrap()
        .into_iter()
        .find(|c| {
            c.rend_query.as_deref() == Some(id.as_str())
                && c.purpose.as_deref() == Some("HS_CLIENT_REND")
                && c.other.get("SOCKS_USERNAME").map(String::as_str)
                    == Some("onionwatch-test-earlier")
        })
        .expect("tor names the earlier stream's rendezvous circuit by SOCKS_USERNAME");
    drop(earlier);

    let mut now = tor.subscribe(&id);
    control.close_circuit(old.id).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match now.recv().await.expect("the control connection stays") {
                onionwatch_tor::control::Event::Circ(c)
                    if c.id == old.id && c.status.as_str() == "CLOSED" =>
                {
                    return c
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the earlier circuit's CLOSED event");
    assert!(
        !now.is_attempt_circuit(&closed, "onionwatch-test-now"),
        "an earlier probe's circuit counted: {closed:?}"
    );

    // The attempt's own circuits count.
    get_through_tor(&host, "onionwatch-test-now").await;
    let mut evidence = onionwatch_probe::probe::CircEvidence::default();
    while let Some(e) = now.try_recv() {
        if let onionwatch_tor::control::Event::Circ(c) = e {
            if now.is_attempt_circuit(&c, "onionwatch-test-now") {
                evidence.observe(&c);
            }
        }
    }
    assert!(evidence.joined, "{evidence:?}");
}
