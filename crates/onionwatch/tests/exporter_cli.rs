//! Exporter conventions as an operator meets them: `--web.config.file`,
//! `/-/healthy` and `/-/ready`, `onionwatch_build_info` and `process_*`,
//! `--log.format`.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onionwatch_test_support::{self as support, Running};

fn status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `GET path` with a basic-auth header (HTTP/1.0, as support::get).
fn get_basic(addr: SocketAddr, path: &str, user_password: &str) -> String {
    use base64_free::encode;
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Basic {}\r\n\r\n",
        encode(user_password.as_bytes())
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Base64 for one header, without a dependency for it.
mod base64_free {
    pub fn encode(bytes: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[test]
fn logs_takes_a_node_exporter_web_config_file_and_logs_json() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(
        &log,
        "127.0.0.1 - - [10/Jan/2024:10:00:00 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"-\"\n",
    )
    .unwrap();
    // node_exporter's format: htpasswd writes $2y$.
    let hash = bcrypt::hash("hunter2", 4)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    let web = dir.path().join("web-config.yml");
    std::fs::write(
        &web,
        format!("basic_auth_users:\n  prometheus: {hash}\nhttp_server_config:\n  http2: true\n"),
    )
    .unwrap();
    let (_child, addr, stderr) = support::start_logs(
        env!("CARGO_BIN_EXE_onionwatch"),
        &[
            "--log.format".as_ref(),
            "json".as_ref(),
            "--web.config.file".as_ref(),
            web.as_os_str(),
            log.as_os_str(),
        ],
    );
    assert_eq!(status(&support::get(addr, "/metrics")), 401);
    assert_eq!(status(&get_basic(addr, "/metrics", "prometheus:nope")), 401);
    let metrics = get_basic(addr, "/metrics", "prometheus:hunter2");
    assert_eq!(status(&metrics), 200, "{metrics}");
    // The binary hands its build's rustc version (always known) to the endpoint.
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        metrics.contains(&format!(
            "\nonionwatch_build_info{{version=\"{version}\",revision=\""
        )),
        "{metrics}"
    );
    let rustc = metrics
        .split("rustc_version=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default();
    assert!(
        rustc.starts_with(|c: char| c.is_ascii_digit()),
        "rustc_version {rustc:?}"
    );
    assert!(
        metrics.contains("\nprocess_resident_memory_bytes "),
        "{metrics}"
    );
    // Probes of service managers need no password.
    assert_eq!(status(&support::get(addr, "/-/healthy")), 200);
    let ready = support::get_until(addr, "/-/ready", &["200 OK"]);
    assert!(ready.contains("200 OK"), "{ready}");

    // Every log line on standard error is a JSON object.
    drop(_child);
    let lines: Vec<String> = stderr.iter().collect();
    let json: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        json.iter()
            .any(|j| j["level"] == "info" && j["msg"].is_string() && j["ts"].is_string()),
        "{lines:?}"
    );
}

#[test]
fn watch_is_ready_only_once_every_target_was_scraped() {
    // Accepts connections (the kernel's backlog) and never answers: the
    // scrape ends with its timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let _child = Running(
        Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .args(["watch", "--interval", "60", "--timeout", "4"])
            .args(["--listen", &listen.to_string()])
            .args([
                "--metrics-port",
                &format!("p={}", silent.local_addr().unwrap()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let healthy = support::get_until(listen, "/-/healthy", &["200 OK"]);
    assert!(healthy.contains("200 OK"), "{healthy}");
    // The scrape is still waiting for its answer.
    let targets = support::get(listen, "/api/v1/targets");
    assert!(targets.contains("\"scrapes\":0"), "{targets}");
    let early = support::get(listen, "/-/ready");
    assert_eq!(status(&early), 503, "{early}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&support::get(listen, "/-/ready")) != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let targets = support::get(listen, "/api/v1/targets");
    assert!(targets.contains("\"scrapes\":1"), "{targets}");
}

#[test]
fn web_config_file_and_the_tls_flags_exclude_each_other() {
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args(["watch", "--metrics-port", "p=127.0.0.1:9"])
        .args(["--web.config.file", "web.yml", "--auth-file", "auth.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "a usage error");
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args(["watch", "--metrics-port", "p=127.0.0.1:9"])
        .args(["--web.config.file", "/nonexistent/web.yml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/web.yml"), "{err}");
}

/// `--help` of a subcommand.
fn help(command: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args([command, "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_serving_command_has_its_own_default_port_listed_in_the_readme() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let gateway = std::fs::read_to_string(root.join("contrib/examples/gateway.yaml")).unwrap();
    let gateway_port = gateway
        .lines()
        .find_map(|l| l.strip_prefix("metrics_listen: 127.0.0.1:"))
        .map(|p| p.split_whitespace().next().unwrap().to_owned())
        .expect("the example gateway serves metrics");
    let ports = [
        ("watch", "9925"),
        ("scrape-gateway", "9926"),
        ("logs", "9927"),
        ("gateway", gateway_port.as_str()),
        ("probe", "9935"),
    ];
    for (command, port) in &ports[..3] {
        let h = help(command);
        assert!(
            h.contains(&format!("default: 127.0.0.1:{port}]")),
            "{command}: {h}"
        );
    }
    assert!(help("probe").contains("default 9935"));
    let mut seen: Vec<&str> = ports.iter().map(|(_, p)| *p).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen.len(),
        ports.len(),
        "a port shared by two commands: {ports:?}"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for (command, port) in ports {
        let label = match command {
            "gateway" => "`gateway` metrics".to_owned(),
            "probe" => "`probe` exporter".to_owned(),
            "watch" => "`watch` (and `demo`)".to_owned(),
            "logs" => "`logs` (following)".to_owned(),
            c => format!("`{c}`"),
        };
        assert!(
            readme.contains(&format!("| {label} | 127.0.0.1:{port} |")),
            "README's port table lacks {command} on {port}"
        );
    }
}
