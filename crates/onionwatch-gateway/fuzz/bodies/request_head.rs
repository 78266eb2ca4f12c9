//! Feed bytes to the gateway as a client connection: the PROXY header,
//! then HTTP/1 request heads (hyper's parser with the gateway's limits, the
//! `Host` check, the header cleaning). The first byte picks the PROXY mode
//! (`require` or `optional`), whether upgrades are allowed and the size of
//! the client's reads (1 to 64 bytes: headers split anywhere). Shared by
//! the `request_head` fuzz target and `tests/fuzz_smoke.rs`.

use std::sync::OnceLock;

use onionwatch_gateway::fuzzing::connection;
use onionwatch_gateway::ProxyProtocol;

pub fn run(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mode = if pick & 1 == 0 {
        ProxyProtocol::Require
    } else {
        ProxyProtocol::Optional
    };
    let allow_upgrade = pick & 2 != 0;
    let chunk = usize::from(pick >> 2) + 1;

    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    });
    if let Ok((header, _heads)) = rt.block_on(connection(rest, mode, chunk, allow_upgrade)) {
        if mode == ProxyProtocol::Require {
            assert!(header.is_some(), "require mode went on without a header");
        }
    }
}
