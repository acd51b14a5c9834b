//! Certificate decoding and verification on arbitrary bytes: no panic; a decoded certificate
//! has exactly one encoding; only the fixture's own certificates verify against its CA.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay_proto::cert::{CaCert, NodeCert};
use overlay_proto_fuzz::{fixture, WALL_CLOCK};

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if let Ok(c) = NodeCert::decode(data) {
        assert_eq!(c.encode(), data);
        if c.verify(&f.ca, WALL_CLOCK).is_ok() {
            assert!(c == f.cert || c == f.peer_cert, "a certificate the CA never signed verified");
        }
        let _ = c.may_source("10.42.1.1".parse().unwrap());
    }
    if let Ok(ca) = CaCert::decode(data) {
        assert_eq!(ca.encode(), data);
        let _ = ca.verify(WALL_CLOCK);
    }
});
