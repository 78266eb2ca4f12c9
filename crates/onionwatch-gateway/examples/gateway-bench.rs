//! Load tool for `scripts/bench-gateway.sh` (loopback only, bounded in time).
//!
//! ```text
//! gateway-bench upstream --listen 127.0.0.1:PORT   # the echo upstream
//! gateway-bench load --target 127.0.0.1:PORT [--proxy] [--conns 32] [--duration 10] [--warmup 2]
//! gateway-bench check --target 127.0.0.1:PORT [--proxy]   # one request, print the body
//! gateway-bench wait 127.0.0.1:PORT                        # until it accepts (max 20 s)
//! gateway-bench free-port
//! ```
//!
//! `load` opens `--conns` keep-alive connections; with `--proxy` each first
//! sends a PROXY v1 line with its own circuit id (1..=conns), as tor does.
//! Each connection then sends `GET /` requests back to back until the
//! deadline, timing each from the write to the end of the response. It
//! prints requests/s and latency percentiles over the measured period
//! (after `--warmup`), and how many requests were answered in all.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use onionwatch_gateway::{ConfigError, ListenAddr};
use onionwatch_test_support::{EchoAddr, EchoServer};
use onionwatch_tor::circuit_id::CircuitId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Opts {
    target: Option<SocketAddr>,
    listen: Option<String>,
    proxy: bool,
    conns: usize,
    duration: f64,
    warmup: f64,
    threads: usize,
}

fn usage() -> ExitCode {
    eprintln!("usage: gateway-bench upstream --listen ADDR | load --target ADDR [--proxy] [--conns K] [--duration S] [--warmup S] | check --target ADDR [--proxy] | wait ADDR | free-port   (--threads N for the runtime)");
    ExitCode::from(2)
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        target: None,
        listen: None,
        proxy: false,
        conns: 32,
        duration: 10.0,
        warmup: 2.0,
        threads: 1,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--target" => o.target = Some(value()?.parse().map_err(|e| format!("--target: {e}"))?),
            "--listen" => o.listen = Some(value()?),
            "--proxy" => o.proxy = true,
            "--conns" => o.conns = value()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "--duration" => {
                o.duration = value()?.parse().map_err(|e| format!("--duration: {e}"))?
            }
            "--warmup" => o.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--threads" => o.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if let Some(t) = o.target {
        // Load only ever goes to this machine.
        if !t.ip().is_loopback() {
            return Err(format!("{t} is not a loopback address"));
        }
    }
    if !(o.duration > 0.0 && o.duration <= 120.0) || o.conns == 0 || o.conns > 1024 {
        return Err("--duration must be in (0, 120] and --conns in 1..=1024".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        return usage();
    };
    if cmd == "free-port" {
        println!("{}", onionwatch_test_support::free_port());
        return ExitCode::SUCCESS;
    }
    if cmd == "wait" {
        let Some(addr) = args.get(1).and_then(|a| a.parse::<SocketAddr>().ok()) else {
            return usage();
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(addr).is_ok() {
                return ExitCode::SUCCESS;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("error: nothing accepts connections on {addr} after 20 s");
        return ExitCode::FAILURE;
    }
    let opts = match parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return usage();
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads.max(1))
        .enable_all()
        .build()
        .expect("a runtime");
    let result = rt.block_on(async {
        match cmd.as_str() {
            "upstream" => upstream(&opts).await,
            "load" => load(&opts).await,
            "check" => check(&opts).await,
            _ => Err("unknown command".into()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn upstream(o: &Opts) -> Result<(), String> {
    let listen = o.listen.as_deref().ok_or("--listen is required")?;
    let addr = match listen.parse().map_err(|e: ConfigError| e.to_string())? {
        ListenAddr::Tcp(a) => EchoAddr::Tcp(a),
        ListenAddr::Unix(p) => EchoAddr::Unix(p),
    };
    let echo = EchoServer::start(&addr, false)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("echo upstream on {}", echo.addr());
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    Ok(())
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench.onion\r\nUser-Agent: gateway-bench\r\n\r\n";

/// A keep-alive connection that reads whole responses.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(target: SocketAddr, proxy: Option<u32>) -> std::io::Result<Conn> {
        let mut stream = TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        if let Some(id) = proxy {
            let line = format!(
                "PROXY TCP6 {} ::1 {} 80\r\n",
                CircuitId(id).to_tor_string(),
                id & 0xffff
            );
            stream.write_all(line.as_bytes()).await?;
        }
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Send one request; the status and body of its response.
    async fn request(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        self.stream.write_all(REQUEST).await?;
        let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed mid-response");
        let head_end = loop {
            if let Some(p) = memchr_crlf2(&self.buf) {
                break p;
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(eof());
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| eof())?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(eof)?;
        let len = head
            .split("\r\n")
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .ok_or_else(|| std::io::Error::other("the benchmark needs Content-Length responses"))?;
        let total = head_end + 4 + len;
        while self.buf.len() < total {
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(eof());
            }
        }
        let body = self.buf[head_end + 4..total].to_vec();
        self.buf.drain(..total);
        Ok((status, body))
    }
}

fn memchr_crlf2(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n")
}

async fn check(o: &Opts) -> Result<(), String> {
    let target = o.target.ok_or("--target is required")?;
    let mut c = Conn::open(target, o.proxy.then_some(48))
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    let (status, body) = c.request().await.map_err(|e| e.to_string())?;
    println!("HTTP {status}\n{}", String::from_utf8_lossy(&body));
    Ok(())
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    /// Every answered request, warm-up included (for CPU per request).
    answered: u64,
    non_200: u64,
    errors: u64,
    reconnects: u64,
}

async fn load(o: &Opts) -> Result<(), String> {
    let target = o.target.ok_or("--target is required")?;
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(o.warmup);
    let end = measure_from + Duration::from_secs_f64(o.duration);
    let mut tasks = Vec::new();
    for i in 0..o.conns {
        let proxy = o.proxy.then_some(i as u32 + 1);
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let mut conn = None;
            while Instant::now() < end {
                if conn.is_none() {
                    match Conn::open(target, proxy).await {
                        Ok(c) => conn = Some(c),
                        Err(_) => {
                            t.errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let c = conn.as_mut().expect("connected above");
                let sent = Instant::now();
                match c.request().await {
                    Ok((status, _)) => {
                        t.answered += 1;
                        let done = Instant::now();
                        if sent >= measure_from && done <= end {
                            t.latencies_us
                                .push(u32::try_from((done - sent).as_micros()).unwrap_or(u32::MAX));
                            if status != 200 {
                                t.non_200 += 1;
                            }
                        }
                    }
                    Err(_) => {
                        // The server closed the connection: open another.
                        conn = None;
                        t.reconnects += 1;
                    }
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.map_err(|e| e.to_string())?;
        all.latencies_us.extend(t.latencies_us);
        all.answered += t.answered;
        all.non_200 += t.non_200;
        all.errors += t.errors;
        all.reconnects += t.reconnects;
    }
    let mut l = all.latencies_us;
    if l.is_empty() {
        return Err(format!("no request completed against {target}"));
    }
    l.sort_unstable();
    let pct = |p: f64| l[((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1];
    let rps = l.len() as f64 / o.duration;
    println!(
        "target={target} proxy={} conns={} duration={}s requests={} rps={:.0} p50={}us p99={}us max={}us non200={} errors={} reconnects={} answered={}",
        o.proxy,
        o.conns,
        o.duration,
        l.len(),
        rps,
        pct(0.50),
        pct(0.99),
        l[l.len() - 1],
        all.non_200,
        all.errors,
        all.reconnects,
        all.answered
    );
    Ok(())
}
