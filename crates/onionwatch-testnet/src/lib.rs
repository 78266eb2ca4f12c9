//! A private Tor network on loopback, for onionwatch's tests, benchmarks and
//! `onionwatch testnet`.
//!
//! [`TestNetwork::start`] runs 3 directory authorities, a few relays, tors
//! hosting onion services (several per tor if asked) and one client tor, all
//! from the system's `tor` with `TestingTorNetwork 1`, all on 127.0.0.1 with
//! random free ports. It returns once the client has bootstrapped and a GET
//! through every onion service has succeeded; dropping the network kills
//! every tor it started (and every tor also watches our pid through
//! `__OwningControllerProcess`, so even a SIGKILLed test leaks nothing for long).
//!
//! [`NetworkConfig::demo`] is `onionwatch demo`'s network; [`NetworkInfo`]
//! prints as `onionwatch testnet up`'s text, and [`TestNetwork::run_until`]
//! keeps a network running until told to stop.
//!
//! Tests of one binary share one network with [`shared_network`]. [`nginx`]
//! runs a real nginx as a backend (PROXY protocol, access log) for tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), onionwatch_testnet::Error> {
//! use onionwatch_testnet::{NetworkConfig, TestNetwork};
//! let net = TestNetwork::start(NetworkConfig::with_onions(2, 1)).await?;
//! for onion in &net.info().onions {
//!     println!("{} via {}", onion.address, net.info().client.socks);
//! }
//! # Ok(()) }
//! ```

mod backend;
mod config;
mod error;
pub mod http;
mod keys;
mod network;
pub mod nginx;
mod node;
mod ports;
pub mod prometheus;
mod shared;
mod torrc;

pub use backend::{Backend, HOLD_PATH};
pub use config::{
    BackendKind, BuiltInResponse, ControlKind, NetworkConfig, PortHook, ServiceConfig,
    ServiceTorConfig,
};
pub use error::{Error, Result};
pub use network::{ClientInfo, NetworkInfo, OnionInfo, TestNetwork};
pub use node::{Role, TorNode};
pub use ports::free_port;
pub use shared::{shared_network, with_shared_network};
