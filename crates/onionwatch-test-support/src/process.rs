//! Child processes of tests (the `onionwatch` binary).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::poll::wait_for;

/// Stops the command if the test fails half-way: SIGINT (it then kills its
/// tors), and SIGKILL if it is still there after 10 s.
#[derive(Debug)]
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
            let exited = wait_for(Duration::from_secs(10), || {
                (!matches!(self.0.try_wait(), Ok(None))).then_some(())
            });
            if exited.is_none() {
                let _ = self.0.kill();
            }
            let _ = self.0.wait();
        }
    }
}

/// Wait for `child` to exit (30 s at most, then kill it and fail).
#[track_caller]
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    match wait_for(Duration::from_secs(30), || child.try_wait().unwrap()) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            panic!("the command did not exit within 30 s");
        }
    }
}

/// Start `BIN logs --listen 127.0.0.1:0 ARGS` and return it with the address
/// it announced on standard error (`serving http://ADDR/metrics`) and the
/// standard-error lines that follow. Standard error is drained to its end,
/// read or not, so the child never blocks on a full pipe.
#[track_caller]
pub fn start_logs<S: AsRef<OsStr>>(
    bin: &str,
    args: &[S],
) -> (Running, SocketAddr, mpsc::Receiver<String>) {
    let mut child = Command::new(bin)
        .args(["logs", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => match l.split("serving http://").nth(1) {
                Some(rest) => {
                    let addr = rest.trim_end_matches("/metrics").parse().unwrap();
                    return (running, addr, rx);
                }
                None => lines.push(l),
            },
            Err(e) => panic!("onionwatch logs printed no address ({e}): {lines:?}"),
        }
    }
}

/// Whether this process runs as root (`/proc/self` belongs to the
/// effective user).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Run the test `name` of this test binary again as user `nobody` (uid
/// and gid 65534) with `group` as its only supplementary group (numeric
/// ids need not exist) and `env` set, and return what it printed. The
/// binary is copied into `dir` first (which `nobody` must be able to
/// enter), whatever the target directory's modes. `None`, after a
/// message, when not root outside CI; CI runs the tests as root, so
/// there it fails.
pub fn rerun_as_nobody(
    dir: &std::path::Path,
    name: &str,
    group: Option<u32>,
    env: &[(&str, &OsStr)],
) -> Option<String> {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the tests as root: this test needs it to switch to nobody"
        );
        eprintln!("SKIPPED: switching to user nobody needs root; run the tests as root to check reading another user's files");
        return None;
    }
    let exe = dir.join(format!("{name}-test-binary"));
    if !exe.exists() {
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    }
    // Another test thread forking while the copy was open for writing
    // leaves a child holding it until that child execs: exec then fails
    // with ETXTBSY ("Text file busy"), a kernel race, so try again.
    let mut attempts = 0;
    let out = loop {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534"]);
        match group {
            Some(g) => cmd.arg(format!("--groups={g}")),
            None => cmd.arg("--clear-groups"),
        };
        let out = cmd
            .arg("--")
            .arg(&exe)
            .args([
                "--exact",
                name,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .envs(env.iter().copied())
            .output()
            .expect("setpriv runs (util-linux)");
        attempts += 1;
        let busy = String::from_utf8_lossy(&out.stderr).contains("Text file busy");
        if !busy || attempts == 20 {
            break out;
        }
        std::thread::yield_now();
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

/// The lines of a [`rerun_as_nobody`] output that hold `prefix`, from it
/// on (libtest writes `test … ` in front of the first one).
pub fn lines_from(out: &str, prefix: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.find(prefix).map(|i| l[i..].to_owned()))
        .collect()
}

/// Whether `tool` is installed; outside CI a test without it is skipped
/// (with a note), in CI (`CI` set) it must be there.
pub fn have(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(
        found || std::env::var_os("CI").is_none(),
        "{tool} is missing (scripts/install-deps installs it)"
    );
    if !found {
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

/// Pids of the `tor` processes whose parent is `parent`.
pub fn tor_children(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid …"
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
        if comm.ends_with("(tor") && ppid == Some(parent) {
            pids.push(pid);
        }
    }
    pids
}
