//! The exec notifier: a command (no shell) gets the webhook payload as
//! JSON on standard input; it is killed when it runs longer than the
//! timeout.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::config::NotifierConfig;
use crate::{payload, Group};

pub(crate) struct Exec {
    argv: Vec<String>,
    timeout: Duration,
    external_url: String,
}

impl Exec {
    pub(crate) fn new(c: &NotifierConfig, external_url: String) -> Result<Exec, String> {
        if c.command.is_empty() || c.command[0].is_empty() {
            return Err(
                "command: required for an exec notifier (a list: program and arguments)".into(),
            );
        }
        Ok(Exec {
            argv: c.command.clone(),
            timeout: c.timeout,
            external_url,
        })
    }

    /// The program, for logs (arguments may hold secrets).
    pub(crate) fn program(&self) -> String {
        self.argv[0].clone()
    }

    pub(crate) async fn send(&self, receiver: &str, group: &Group) -> Result<(), String> {
        let input = payload::webhook(group, receiver, &self.external_url).to_string();
        let mut child = tokio::process::Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own process group, so a timeout kills what it started too.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.argv[0]))?;
        let pid = child.id();
        let run = async {
            if let Some(mut stdin) = child.stdin.take() {
                // A command that does not read its input is its business.
                let _ = stdin.write_all(input.as_bytes()).await;
            }
            child.wait().await
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("{} exited with {status}", self.argv[0])),
            Ok(Err(e)) => Err(format!("waiting for {}: {e}", self.argv[0])),
            Err(_) => {
                if let Some(pid) = pid {
                    // SAFETY: kill(2) on the process group we created.
                    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                }
                let _ = child.kill().await;
                Err(format!(
                    "{} still ran after {:?} (timeout): killed",
                    self.argv[0], self.timeout
                ))
            }
        }
    }
}
