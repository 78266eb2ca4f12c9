//! A real v3 descriptor (from the private test network, as tor's control
//! port hands it over: without a final newline) decrypts and validates.

use onionwatch_probe::descriptor::analyse;
use onionwatch_tor::onion::OnionAddress;

const ADDRESS: &str = "2q2q7on27m6uv63hctvy65lgol624yxjchjhqveaf6vpqdvvw7gddtad.onion";
const DESCRIPTOR: &str = include_str!(
    "fixtures/testnet-descriptor-2q2q7on27m6uv63hctvy65lgol624yxjchjhqveaf6vpqdvvw7gddtad.txt"
);

#[test]
fn a_descriptor_without_its_final_newline_validates() {
    assert!(
        !DESCRIPTOR.ends_with('\n'),
        "the fixture is as tor sends it"
    );
    let address: OnionAddress = ADDRESS.parse().unwrap();
    let info = analyse(DESCRIPTOR, &address.identity_key(), None).unwrap();
    assert_eq!(info.error, None, "{info:?}");
    assert!(info.validated, "{info:?}");
    assert_eq!(info.introduction_points, Some(3));
    assert_eq!(info.lifetime_seconds, 10_800);
    // With the newline it is the same document.
    let with = analyse(&format!("{DESCRIPTOR}\n"), &address.identity_key(), None).unwrap();
    assert!(with.validated && with.error.is_none(), "{with:?}");
}
