//! One network per test binary.
//!
//! Starting a network costs ~7 tor processes and 15–30 s, so the tests of one
//! binary share it. `#[tokio::test]` gives each test its own runtime, which
//! would stop the built-in backends when the first test ends; the shared
//! network therefore lives on a runtime thread of its own, and an `atexit`
//! hook kills its tors when the test binary exits (statics are never dropped).

use std::sync::{Mutex, OnceLock};

use crate::{NetworkConfig, NetworkInfo, TestNetwork};

static INFO: OnceLock<Result<NetworkInfo, String>> = OnceLock::new();
static NETWORK: Mutex<Option<TestNetwork>> = Mutex::new(None);

extern "C" fn kill_shared_network() {
    let net = match NETWORK.lock() {
        Ok(mut g) => g.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    drop(net);
}

/// The network shared by every test of this process, started on first use
/// with `config()`. Later calls return the same network whatever their
/// `config` (the first caller's wins), so give every call the same config.
///
/// # Panics
/// If the network cannot start: every test using it fails with the reason.
pub fn shared_network(config: impl FnOnce() -> NetworkConfig) -> &'static NetworkInfo {
    let info = INFO.get_or_init(|| {
        let config = config();
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("shared-testnet".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(format!("cannot build a runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    match TestNetwork::start(config).await {
                        Ok(net) => {
                            let info = net.info().clone();
                            *NETWORK.lock().unwrap_or_else(|e| e.into_inner()) = Some(net);
                            // SAFETY: registering a plain extern "C" fn with no captured state.
                            unsafe { libc::atexit(kill_shared_network) };
                            let _ = tx.send(Ok(info));
                            // Keep serving the built-in backends until the process exits.
                            std::future::pending::<()>().await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                });
            });
        match spawned {
            Ok(_) => rx
                .recv()
                .unwrap_or_else(|_| Err("the shared network thread died".into())),
            Err(e) => Err(format!("cannot spawn the shared network thread: {e}")),
        }
    });
    match info {
        Ok(info) => info,
        Err(e) => panic!("the shared test network did not start: {e}"),
    }
}

/// Run `f` on the shared network with exclusive access (e.g. to restart a node).
///
/// Returns `None` if the shared network was never started.
pub fn with_shared_network<T>(f: impl FnOnce(&mut TestNetwork) -> T) -> Option<T> {
    let mut guard = NETWORK.lock().unwrap_or_else(|e| e.into_inner());
    guard.as_mut().map(f)
}
