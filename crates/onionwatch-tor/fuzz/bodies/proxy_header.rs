//! Feed bytes to the PROXY v1 header parser, the async header reader and
//! the circuit-id decoder. Shared by the `proxy_header` fuzz target and
//! `tests/fuzz_smoke.rs`.

use std::sync::OnceLock;

use onionwatch_tor::circuit_id::CircuitId;
use onionwatch_tor::proxy::{read_proxy_header, ProxyHeader, MAX_HEADER_LEN};

pub fn run(data: &[u8]) {
    if let Ok(h) = ProxyHeader::parse(data) {
        // Whatever parses must re-encode to something that parses the same.
        let again = ProxyHeader::parse(h.encode().as_bytes()).expect("encode() output parses");
        assert_eq!(again, h);
        let _ = h.circuit_id();
    }
    if let Some(id) = CircuitId::from_addr_bytes(data) {
        assert_eq!(CircuitId::from_ipv6(&id.to_ipv6()), Some(id));
    }

    // The reader never consumes more than one header's worth.
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    });
    let mut r = data;
    let res = rt.block_on(read_proxy_header(&mut r));
    let used = data.len() - r.len();
    assert!(used <= MAX_HEADER_LEN);
    if res.is_ok() {
        assert_eq!(&data[used - 2..used], b"\r\n");
    }
}
