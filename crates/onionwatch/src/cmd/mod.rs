//! One module per subcommand.

pub mod audit;
pub mod endpoint;
pub mod expose;
pub mod logs;
pub mod testnet;
pub mod watch;
