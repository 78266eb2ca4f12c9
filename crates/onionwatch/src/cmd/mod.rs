//! One module per subcommand.

pub mod expose;
pub mod testnet;
