//! The webhook notifier against a loopback receiver: the payload, auth,
//! routing, retries, the bounded queue, and config checks.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;
use onionwatch_notify::Notifiers;
use onionwatch_test_support::recorder::read_request;
use onionwatch_test_support::{dead_addr, Recorder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_posts_the_alertmanager_payload() {
    let rx = Recorder::start(0);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "T0K3N\n").unwrap();
    let c = config(&format!(
        "type: webhook\nname: hook\nurl: {}\nbearer_token: {{file: {}}}\nheaders: {{X-Team: ops}}\nexternal_url: http://dash.example/\n",
        rx.url("/hook?x=1"),
        token.display()
    ));
    let n = Notifiers::start(vec![c]).unwrap();
    assert!(!n.is_empty());
    n.notify(group(
        "{name=\"shop\"}",
        vec![
            alert("OnionServiceUnreachable", "critical", None),
            alert("DescriptorUnavailable", "warning", Some(60)),
        ],
    ));
    let r = rx.next();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hook?x=1");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("authorization"), Some("Bearer T0K3N"));
    assert_eq!(r.header("x-team"), Some("ops"));
    let p = r.json();
    assert_eq!(p["version"], "4");
    assert_eq!(p["groupKey"], "{name=\"shop\"}");
    assert_eq!(p["status"], "firing");
    assert_eq!(p["receiver"], "hook");
    assert_eq!(p["externalURL"], "http://dash.example/");
    assert_eq!(p["groupLabels"], serde_json::json!({"name": "shop"}));
    assert_eq!(
        p["commonLabels"],
        serde_json::json!({"name": "shop", "project": "news"})
    );
    assert_eq!(p["commonAnnotations"], serde_json::json!({}));
    let a = &p["alerts"];
    assert_eq!(a.as_array().unwrap().len(), 2);
    assert_eq!(a[0]["status"], "firing");
    assert_eq!(a[0]["labels"]["alertname"], "OnionServiceUnreachable");
    assert_eq!(
        a[0]["annotations"]["summary"],
        "OnionServiceUnreachable on shop"
    );
    assert_eq!(a[0]["startsAt"], "2024-05-01T12:00:00.000Z");
    assert_eq!(a[0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(a[0]["generatorURL"], "http://dash.example/");
    assert_eq!(a[0]["fingerprint"].as_str().unwrap().len(), 16);
    assert_ne!(a[0]["fingerprint"], a[1]["fingerprint"]);
    assert_eq!(a[1]["status"], "resolved");
    assert_eq!(a[1]["endsAt"], "2024-05-01T12:01:00.000Z");
    wait_counts(&n, "hook", (1, 0, 0));
    let m = metrics(&n);
    assert!(
        m.contains("onionwatch_notifications_total{notifier=\"hook\",result=\"success\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("onionwatch_notification_queue_length{notifier=\"hook\"} 0\n"),
        "{m}"
    );

    // A group whose alerts all resolved says so.
    n.notify(group(
        "{name=\"shop\"}",
        vec![alert("OnionServiceUnreachable", "critical", Some(120))],
    ));
    assert_eq!(rx.next().json()["status"], "resolved");
    n.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_sends_each_notifier_its_alerts() {
    let pager = Recorder::start(0);
    let chat = Recorder::start(0);
    let quiet = Recorder::start(0);
    let n = Notifiers::start(vec![
        config(&format!(
            "type: webhook\nname: pager\nurl: {}\nmatch: {{severity: critical}}\nsend_resolved: false\n",
            pager.url("/")
        )),
        config(&format!(
            "type: webhook\nname: chat\nurl: {}\nmatch_re: {{alertname: 'Descriptor.*|Cert.*'}}\n",
            chat.url("/")
        )),
        config(&format!(
            "type: webhook\nname: quiet\nurl: {}\nmatch: {{team: nobody}}\n",
            quiet.url("/")
        )),
    ])
    .unwrap();
    n.notify(group(
        "g1",
        vec![
            alert("OnionServiceUnreachable", "critical", None),
            alert("DescriptorUnavailable", "warning", None),
        ],
    ));
    let p = pager.next().json();
    assert_eq!(p["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(p["alerts"][0]["labels"]["severity"], "critical");
    let c = chat.next().json();
    assert_eq!(c["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(
        c["alerts"][0]["labels"]["alertname"],
        "DescriptorUnavailable"
    );

    // Resolved: the pager (send_resolved: false) is not told, chat is.
    n.notify(group(
        "g1",
        vec![
            alert("OnionServiceUnreachable", "critical", Some(60)),
            alert("DescriptorUnavailable", "warning", Some(60)),
        ],
    ));
    assert_eq!(chat.next().json()["status"], "resolved");
    n.shutdown(Duration::from_secs(5)).await;
    assert_eq!(n.counts("pager"), Some((1, 0, 0)));
    assert_eq!(n.counts("quiet"), Some((0, 0, 0)));
    assert_eq!(pager.answered(), 1);
    assert_eq!(quiet.answered(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_until_it_answers() {
    let rx = Recorder::start(2);
    let n = Notifiers::start(vec![config(&format!(
        "type: webhook\nname: hook\nurl: {}\nretry_initial: 10ms\n",
        rx.url("/")
    ))])
    .unwrap();
    n.notify(group(
        "g",
        vec![alert("OnionServiceUnreachable", "critical", None)],
    ));
    assert_eq!(rx.next().json()["groupKey"], "g");
    wait_counts(&n, "hook", (1, 2, 0));
    assert_eq!(rx.answered(), 3);
    let m = metrics(&n);
    assert!(
        m.contains("onionwatch_notifications_total{notifier=\"hook\",result=\"failure\"} 2\n"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_the_notification_once_it_listens() {
    let dead = dead_addr();
    let n = Notifiers::start(vec![config(&format!(
        "type: webhook\nname: hook\nurl: http://{}/\nretry_initial: 10ms\nretry_max: 50ms\nmax_attempts: 1000\n",
        dead.addr
    ))])
    .unwrap();
    n.notify(group(
        "g",
        vec![alert("OnionServiceUnreachable", "critical", None)],
    ));
    let failed = onionwatch_test_support::wait_for(Duration::from_secs(30), || {
        (n.counts("hook").unwrap().1 >= 2).then_some(())
    });
    assert!(failed.is_some(), "{:?}", n.counts("hook"));
    let addr = dead.addr;
    drop(dead);
    let rx = Recorder::on(TcpListener::bind(addr).unwrap(), 0);
    assert_eq!(rx.next().json()["groupKey"], "g");
    let delivered = onionwatch_test_support::wait_for(Duration::from_secs(30), || {
        (n.counts("hook").unwrap().0 == 1).then_some(())
    });
    assert!(delivered.is_some());
    let (_, failure, dropped) = n.counts("hook").unwrap();
    assert_eq!(dropped, 0);
    assert!(failure >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_the_oldest_notification() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let n = Notifiers::start(vec![config(&format!(
        "type: webhook\nname: hook\nurl: http://{}/\nqueue_size: 2\n",
        listener.local_addr().unwrap()
    ))])
    .unwrap();
    let g = |k: &str| group(k, vec![alert("OnionServiceUnreachable", "critical", None)]);
    n.notify(g("g1"));
    // g1 is being delivered (its request arrived) while g2..g4 queue.
    let (held, _) = listener.accept().unwrap();
    let first = read_request(&held).unwrap();
    assert_eq!(first.json()["groupKey"], "g1");
    n.notify(g("g2"));
    n.notify(g("g3"));
    n.notify(g("g4"));
    assert_eq!(n.counts("hook"), Some((0, 0, 1)));
    let m = metrics(&n);
    assert!(
        m.contains("onionwatch_notification_queue_length{notifier=\"hook\"} 2\n"),
        "{m}"
    );
    assert!(
        m.contains("onionwatch_notifications_total{notifier=\"hook\",result=\"dropped\"} 1\n"),
        "{m}"
    );
    use std::io::Write;
    (&held)
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    drop(held);
    let rx = Recorder::on(listener, 0);
    assert_eq!(rx.next().json()["groupKey"], "g3");
    assert_eq!(rx.next().json()["groupKey"], "g4");
    wait_counts(&n, "hook", (3, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_what_is_queued() {
    let rx = Recorder::start(0);
    let n = Notifiers::start(vec![Notifiers::webhook(&rx.url("/")).unwrap()]).unwrap();
    for k in ["a", "b", "c"] {
        n.notify(group(
            k,
            vec![alert("OnionServiceUnreachable", "critical", None)],
        ));
    }
    n.shutdown(Duration::from_secs(30)).await;
    assert_eq!(n.counts("webhook-0"), Some((3, 0, 0)));
    let keys: Vec<String> = (0..3)
        .map(|_| rx.next().json()["groupKey"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["a", "b", "c"]);
}

#[tokio::test]
async fn shutdown_gives_up_on_a_receiver_that_stays_down() {
    let dead = dead_addr();
    let n = Notifiers::start(vec![config(&format!(
        "type: webhook\nname: hook\nurl: http://{}/\nretry_initial: 1h\n",
        dead.addr
    ))])
    .unwrap();
    n.notify(group(
        "g",
        vec![alert("OnionServiceUnreachable", "critical", None)],
    ));
    n.notify(group(
        "h",
        vec![alert("OnionServiceUnreachable", "critical", None)],
    ));
    // Bounded by `within`, not by the hour of backoff.
    n.shutdown(Duration::from_millis(200)).await;
    let (success, failure, dropped) = n.counts("hook").unwrap();
    assert_eq!((success, dropped), (0, 2));
    assert!(failure >= 1);
}

#[tokio::test]
async fn bad_configs_are_refused_with_the_reason() {
    let err = |yaml: &str| {
        Notifiers::start(vec![config(yaml)])
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    assert!(err("type: webhook\n").contains("url: required"));
    assert!(err("type: webhook\nurl: ftp://x/\n").contains("http or https"));
    let e = err("type: exec\ncommand: [true]\nurl: http://x/\n");
    assert!(e.contains("url not used by a exec notifier"), "{e}");
    let e = err("type: webhook\nurl: http://x/\nmatch_re: {a: '('}\n");
    assert!(e.contains("match_re.a"), "{e}");
    let e = err("type: webhook\nurl: http://x/\nbearer_token: {file: /nonexistent/t}\n");
    assert!(e.contains("/nonexistent/t"), "{e}");
    let e = err("type: webhook\nurl: http://x/\nbearer_token: {env: OW_TEST_UNSET_VARIABLE}\n");
    assert!(e.contains("OW_TEST_UNSET_VARIABLE is not set"), "{e}");
    let e = err("type: ntfy\nurl: http://x/\npriority: loud\n");
    assert!(e.contains("priority"), "{e}");
    let e = Notifiers::start(vec![
        config("type: webhook\nname: a\nurl: http://x/\n"),
        config("type: webhook\nname: a\nurl: http://y/\n"),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("two notifiers"), "{e}");
    // A URL with a token: the error shows its scheme and host only.
    let e = Notifiers::webhook("gopher://hooks.example.org/T0K3N")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gopher://hooks.example.org") && !e.contains("T0K3N"),
        "{e}"
    );
    // Unknown keys are refused at parse time.
    let parsed: Result<onionwatch_notify::NotifierConfig, _> =
        serde_saphyr::from_str("type: webhook\nurl: http://x/\nretries: 3\n");
    assert!(parsed.unwrap_err().to_string().contains("retries"));
}
