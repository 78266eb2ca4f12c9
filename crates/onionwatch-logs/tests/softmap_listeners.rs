//! A softmap project as nginx really logs it: one nginx listening on the
//! unix sockets of two tor workers, each sending the same circuit id in
//! its PROXY line. With `$server_addr` in the format the circuits are
//! counted per worker, and the project's count is their sum.
//!
//! Needs `nginx` (apt-get install nginx).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use onionwatch_logs::access::LogFormat;
use onionwatch_logs::analytics::Analytics;
use onionwatch_test_support::poll::wait_for;
use onionwatch_testnet::nginx::{Nginx, NginxConfig};

const FORMAT: &str = r#"$server_addr $proxy_protocol_addr [$time_local] "$request" $status"#;

fn request(socket: &Path, circuit: u32) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // One write: nginx reads the PROXY line from the first bytes it gets.
    let req = format!(
        "PROXY TCP6 fc00:dead:beef:4dad::{:x}:{:x} ::1 {} 443\r\nGET / HTTP/1.0\r\n\r\n",
        circuit >> 16,
        circuit & 0xffff,
        circuit & 0xffff
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn the_same_circuit_id_on_two_workers_counts_twice() {
    let dir = tempfile::tempdir().unwrap();
    let worker = |w: &str| {
        let d = dir.path().join(w);
        std::fs::create_dir(&d).unwrap();
        d.join("port-443.sock")
    };
    let (hs1, hs2) = (worker("hs-1"), worker("hs-2"));
    let nginx = Nginx::start(&NginxConfig {
        server_directives: format!(
            "listen unix:{} proxy_protocol; listen unix:{} proxy_protocol;",
            hs1.display(),
            hs2.display()
        ),
        log_format: Some(FORMAT.into()),
        ..NginxConfig::default()
    })
    .expect("nginx starts (apt-get install nginx)");
    request(&hs1, 48);
    request(&hs2, 48);
    request(&hs2, 49);
    let text = wait_for(Duration::from_secs(10), || {
        let t = std::fs::read_to_string(nginx.access_log()).unwrap_or_default();
        (t.lines().count() >= 3).then_some(t)
    })
    .expect("nginx logs the three requests");

    let format = LogFormat::compile(FORMAT).unwrap();
    let mut a = Analytics::default();
    for line in text.lines() {
        a.record(&format.parse(line.as_bytes()).unwrap());
    }
    let s = a.summary();
    let d = dir.path().display();
    assert_eq!(
        s.unique_circuits_by_listener
            .into_iter()
            .collect::<Vec<_>>(),
        [(format!("unix:{d}/hs-1"), 1), (format!("unix:{d}/hs-2"), 2)],
        "{text}"
    );
    assert_eq!(s.unique_circuits, 3, "{text}");
}
