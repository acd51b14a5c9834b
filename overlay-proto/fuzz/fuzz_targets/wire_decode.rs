//! Every decoder on arbitrary bytes: no panic, and whatever decodes re-encodes to the same
//! bytes (one value, one encoding).
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay_proto::consts::{MAC_LEN, TRANSPORT_HEADER_LEN};
use overlay_proto::wire::{
    CookieReply, HandshakePacket, HandshakeRepr, Inner, MessageType, TransportHeader, VxlanHeader,
    VXLAN_HEADER_LEN,
};

fuzz_target!(|data: &[u8]| {
    let kind = MessageType::of(data);
    if let Ok(h) = TransportHeader::parse(data) {
        assert_eq!(kind, Ok(MessageType::Transport));
        let mut b = [0u8; TRANSPORT_HEADER_LEN];
        h.emit(&mut b);
        assert_eq!(&b[..], &data[..TRANSPORT_HEADER_LEN]);
    }
    if let Ok(p) = HandshakePacket::new_checked(data) {
        let repr = HandshakeRepr::parse(&p);
        assert_eq!(Ok(repr.kind), kind);
        let _ = (p.pattern(), p.sender_index(), p.receiver_index(), p.mac2_input());
        let mut b = vec![0xa5u8; repr.buffer_len()];
        assert_eq!(repr.emit(&mut b), Ok(data.len()));
        assert_eq!(&b[..data.len() - 2 * MAC_LEN], p.mac1_input());
        assert!(b[data.len() - 2 * MAC_LEN..].iter().all(|&x| x == 0));
        let mut q = HandshakePacket::new_checked(&mut b[..]).unwrap();
        q.set_mac1(&p.mac1());
        q.set_mac2(&p.mac2());
        assert_eq!(&b[..], data);
    }
    if let Ok(c) = CookieReply::parse(data) {
        assert_eq!(&c.emit()[..], data);
    }
    if let Ok(i) = Inner::parse(data) {
        let mut b = vec![0xa5u8; i.buffer_len()];
        assert_eq!(i.emit(&mut b), Ok(data.len()));
        assert_eq!(&b[..], data);
    }
    if let Ok(h) = VxlanHeader::parse(data) {
        let mut b = [0u8; VXLAN_HEADER_LEN];
        h.emit(&mut b);
        assert_eq!(VxlanHeader::parse(&b), Ok(h));
        assert_eq!(b[4..7], data[4..7]);
    }
});
