//! Split bytes into lines and feed them to the control-port reply parser;
//! parse every completed reply as an event and as PROTOCOLINFO. Shared by
//! the `control_reply` fuzz target and `tests/fuzz_smoke.rs`.

use onionwatch_tor::control::{BootstrapPhase, Circuit, Event, ProtocolInfo, ReplyParser};

pub fn run(data: &[u8]) {
    // Small limits so the size checks are reached too.
    let mut parser = ReplyParser::new(4096, 64 * 1024);
    for line in data.split(|&b| b == b'\n') {
        match parser.push(line) {
            Ok(Some(reply)) => {
                let event = Event::parse(&reply);
                let _ = event.keyword();
                let _ = ProtocolInfo::parse(&reply);
                for l in &reply.lines {
                    let _ = Circuit::parse(&l.text);
                    let _ = BootstrapPhase::parse(&l.text);
                }
            }
            Ok(None) => {}
            // A protocol error ends the connection; start over like a new one.
            Err(_) => parser = ReplyParser::new(4096, 64 * 1024),
        }
    }
}
