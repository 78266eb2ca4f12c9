//! One module per subcommand.

pub mod expose;
pub mod logs;
pub mod testnet;
