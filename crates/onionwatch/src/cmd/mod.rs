//! One module per subcommand.

pub mod alerting;
pub mod audit;
pub mod completions;
pub mod demo;
pub mod endpoint;
pub mod expose;
pub mod gateway;
pub mod logs;
pub mod probe;
pub mod secret;
pub mod testnet;
pub mod watch;
