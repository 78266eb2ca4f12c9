//! One module per subcommand.

pub mod testnet;
