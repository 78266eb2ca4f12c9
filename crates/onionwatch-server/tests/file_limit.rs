//! Out of file descriptors (`EMFILE`), the endpoint closes its oldest idle
//! connection and accepts again, so `/metrics` still answers. Its own test
//! binary: it lowers the open-file limit of the whole process.

use std::sync::Arc;
use std::time::Duration;

use onionwatch_metrics::{Collect, Family};
use onionwatch_server::{router, start, ConnectionLimits, EndpointConfig, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

struct Up;
impl Collect for Up {
    fn collect(&self, out: &mut Vec<Family>) {
        let mut f = Family::gauge("onionwatch_fd_test_up", "Test series.");
        f.push(&[], 1.0);
        out.push(f);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_endpoint_closes_idle_connections_and_answers() {
    let registry = Arc::new(Registry::default());
    registry.register(Arc::new(Up));
    let config = EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        // A cap far above the limit set below and a header timeout beyond
        // the test: only the EMFILE handling can free a descriptor.
        connections: ConnectionLimits {
            max_connections: 1000,
            header_timeout_secs: 3600.0,
            ..ConnectionLimits::default()
        },
        ..EndpointConfig::default()
    };
    let server = start(&config, router(registry)).await.unwrap();
    let addr = server.local_addr();
    // The socket of the GET, made while descriptors remain.
    let getter = TcpSocket::new_v4().unwrap();

    let old = nofile();
    let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    set_nofile(libc::rlimit {
        rlim_cur: open_now + 30,
        rlim_max: old.rlim_max,
    })
    .unwrap();
    // Slow clients until this process (clients and server alike) is out of
    // descriptors.
    let mut slow = Vec::new();
    let mut out_of_files = false;
    for _ in 0..200 {
        match TcpStream::connect(addr).await {
            Ok(mut s) => {
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: a")
                    .await
                    .unwrap();
                slow.push(s);
            }
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(24), "EMFILE expected: {e}");
                out_of_files = true;
                break;
            }
        }
    }
    assert!(out_of_files, "the limit was never reached");

    let answer = tokio::time::timeout(Duration::from_secs(60), async {
        let mut s = getter.connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    })
    .await;
    let old_limit = set_nofile(old);
    let answer = answer.expect("/metrics never answered: the endpoint stayed out of descriptors");
    old_limit.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("onionwatch_fd_test_up 1"), "{answer}");
    drop(slow);
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// This process's `RLIMIT_NOFILE`.
fn nofile() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit
}

fn set_nofile(limit: libc::rlimit) -> std::io::Result<()> {
    // SAFETY: setrlimit only reads the struct it is given.
    match unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
