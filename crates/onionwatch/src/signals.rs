//! SIGINT, SIGTERM and SIGHUP for every long-running command, in one place.
//!
//! A command installs the handlers once, at start ([`Signals::install`], or
//! [`Signals::with_hangup`] if it reloads on SIGHUP: without it SIGHUP keeps
//! its default action and ends the process). Both waits take `&self`, so one
//! `select!` can wait for a stop and a hangup at once. The commands that
//! serve a site (`watch`, `logs`) end with [`serve_until_stopped`].

use std::process::ExitCode;

use anyhow::{Context, Result};
use onionwatch_site::RunningSite;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::Mutex;

/// The signal that asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Stop {
    /// The shell's status for a process ended by this signal (128 + its
    /// number), for commands stopped before they did their job.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Stop::Interrupt => ExitCode::from(130),
            Stop::Terminate => ExitCode::from(143),
        }
    }
}

/// The installed handlers.
#[derive(Debug)]
pub struct Signals {
    interrupt: Mutex<Signal>,
    terminate: Mutex<Signal>,
    hangup: Option<Mutex<Signal>>,
}

fn install(kind: SignalKind, name: &str) -> Result<Mutex<Signal>> {
    let s = signal(kind).with_context(|| format!("install the {name} handler"))?;
    Ok(Mutex::new(s))
}

impl Signals {
    /// Catch SIGINT and SIGTERM.
    pub fn install() -> Result<Signals> {
        Ok(Signals {
            terminate: install(SignalKind::terminate(), "SIGTERM")?,
            interrupt: install(SignalKind::interrupt(), "SIGINT")?,
            hangup: None,
        })
    }

    /// Catch SIGINT, SIGTERM and SIGHUP.
    pub fn with_hangup() -> Result<Signals> {
        let hangup = Some(install(SignalKind::hangup(), "SIGHUP")?);
        Ok(Signals {
            hangup,
            ..Signals::install()?
        })
    }

    /// The next SIGINT or SIGTERM.
    pub async fn stop(&self) -> Stop {
        let (mut int, mut term) = (self.interrupt.lock().await, self.terminate.lock().await);
        tokio::select! {
            _ = int.recv() => Stop::Interrupt,
            _ = term.recv() => Stop::Terminate,
        }
    }

    /// The next SIGHUP (never, unless installed with [`Signals::with_hangup`]).
    pub async fn hangup(&self) {
        match &self.hangup {
            Some(h) => {
                h.lock().await.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// Serve `site` until SIGINT or SIGTERM, reloading its TLS certificate and
/// auth file on each SIGHUP meanwhile, then stop it in order. `signals`
/// come from the start of the command ([`Signals::with_hangup`]): installed
/// only now, a SIGHUP right after the endpoint is announced would still
/// have its default action and end the process.
pub async fn serve_until_stopped(site: RunningSite, signals: Signals) -> Result<ExitCode> {
    loop {
        tokio::select! {
            _ = signals.stop() => break,
            _ = signals.hangup() => {
                match site.server().reload() {
                    // Say what a reload covers: an operator who edited the
                    // YAML and ran `systemctl reload` must not think it applied.
                    // (watch's tree and Onionprobe file reloads log their own line.)
                    Ok(()) => tracing::info!(
                        "SIGHUP: TLS certificate and auth file re-read; other changes to the \
                         configuration need a restart"
                    ),
                    Err(e) => tracing::error!("SIGHUP: {e}"),
                }
            }
        }
    }
    tracing::info!("stopping");
    crate::notify::stopping();
    site.stop().await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_and_a_hangup_are_waited_for_at_once() {
        let signals = Signals::with_hangup().unwrap();
        // SAFETY: raise only sends a signal to this process, whose handlers
        // are installed above.
        unsafe { libc::raise(libc::SIGHUP) };
        tokio::select! {
            _ = signals.hangup() => {}
            stop = signals.stop() => panic!("{stop:?} instead of SIGHUP"),
        }
        unsafe { libc::raise(libc::SIGTERM) };
        let stop = signals.stop().await;
        assert_eq!(stop, Stop::Terminate);
        assert_eq!(stop.exit_code(), ExitCode::from(143));
    }
}
