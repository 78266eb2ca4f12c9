//! torrc text for each role, checked with tor 0.4.9: the shortest voting
//! schedule tor accepts (10 s rounds, 2 s vote and distribution delays;
//! shorter values make tor refuse the configuration), every relay voted
//! Guard/Exit/HSDir and Stable. Stable matters: onion-service circuits (and the layer-2
//! vanguards tor picks once, at its first consensus) use Stable relays
//! only, and authorities otherwise give it only to relays whose uptime is
//! at or above the network's median, so freshly started relays lack it for
//! a minute or more and 3 Stable authorities cannot make a 4-hop path.

use std::fmt::Write;
use std::path::Path;

/// One authority as every node must know it.
#[derive(Debug, Clone)]
pub(crate) struct DirAuthorityLine {
    pub nickname: String,
    pub or_port: u16,
    pub dir_port: u16,
    pub v3ident: String,
    pub fingerprint: String,
}

/// Lines every node shares, `DirAuthority` lines included.
pub(crate) fn common(nickname: &str, dir: &Path, authorities: &[DirAuthorityLine]) -> String {
    let d = dir.display();
    let mut s = format!(
        "TestingTorNetwork 1
DataDirectory {d}
RunAsDaemon 0
ShutdownWaitLength 0
PidFile {d}/pid
Log notice file {d}/notice.log
SafeLogging 0
AssumeReachable 1
TestingDirAuthVoteGuard *
TestingDirAuthVoteExit *
TestingDirAuthVoteHSDir *
TestingMinExitFlagThreshold 0
PathsNeededToBuildCircuits 0.67
TestingServerDownloadInitialDelay 0
TestingClientDownloadInitialDelay 0
TestingServerConsensusDownloadInitialDelay 0
TestingClientConsensusDownloadInitialDelay 0
V3AuthNIntervalsValid 2
Nickname {nickname}
"
    );
    for a in authorities {
        let _ = writeln!(
            s,
            "DirAuthority {} orport={} no-v2 v3ident={} 127.0.0.1:{} {}",
            a.nickname, a.or_port, a.v3ident, a.dir_port, a.fingerprint
        );
    }
    s
}

/// A relay (and, with `authority`, a directory authority).
pub(crate) fn relay(or_port: u16, dir_port: u16, authority: bool) -> String {
    let mut s = format!(
        "ORPort 127.0.0.1:{or_port}
Address 127.0.0.1
DirPort 127.0.0.1:{dir_port}
SocksPort 0
ExitPolicy accept 127.0.0.0/8:*
ExitPolicyRejectPrivate 0
"
    );
    if authority {
        s.push_str(
            "AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
TestingV3AuthInitialVotingInterval 5
TestingV3AuthInitialVoteDelay 2
TestingV3AuthInitialDistDelay 2
TestingV3AuthVotingStartOffset 0
V3AuthVotingInterval 10
V3AuthVoteDelay 2
V3AuthDistDelay 2
AuthDirVoteStableGuaranteeMinUptime 0
AuthDirVoteStableGuaranteeMTBF 0
",
        );
    }
    s
}

/// `ControlPort` (TCP port or unix socket path) with cookie authentication.
pub(crate) fn control(endpoint: &str) -> String {
    format!("ControlPort {endpoint}\nCookieAuthentication 1\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_lists_every_authority() {
        let auths = vec![
            DirAuthorityLine {
                nickname: "auth0".into(),
                or_port: 1,
                dir_port: 2,
                v3ident: "A".repeat(40),
                fingerprint: "B".repeat(40),
            };
            3
        ];
        let s = common("n", Path::new("/d"), &auths);
        assert_eq!(s.matches("DirAuthority auth0 orport=1 no-v2").count(), 3);
        assert!(s.contains("DataDirectory /d\n"));
        assert!(relay(1, 2, true).contains("V3AuthVotingInterval 10"));
        assert!(!relay(1, 2, false).contains("Authoritative"));
    }
}
