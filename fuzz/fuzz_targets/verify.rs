//! Any key, signature and message (fed in fuzzed pieces) to the Ed25519 verifier: Ok or Err only,
//! never a panic; and a signature made for the message by a fuzzed key always verifies while any
//! changed byte of it does not.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ota_core::sign::{public_key, sign, Verifier};

fuzz_target!(|data: &[u8]| {
    let [mode, c, rest @ ..] = data else { return };
    let chunk = usize::from(*c).max(1);
    if mode & 1 == 0 {
        // hostile inputs: key and signature of any length (up to 70 bytes each), then the message
        let (klen, slen) = (usize::from(mode >> 1) % 71, usize::from(*c) % 71);
        if rest.len() < klen + slen {
            return;
        }
        let (key, rest) = rest.split_at(klen);
        let (sig, msg) = rest.split_at(slen);
        if let Ok(mut v) = Verifier::new(key, sig) {
            for c in msg.chunks(chunk) {
                let _ = v.update(c);
            }
            let _ = v.verify();
        }
    } else if rest.len() >= 32 {
        // a real signature by a fuzzed seed: verifies; with one byte of the message changed: not
        let (seed, msg) = rest.split_at(32);
        let (Ok(pk), Ok(sig)) = (public_key(seed), sign(seed, msg)) else { return };
        let mut v = Verifier::new(&pk, &sig).expect("own signature parses");
        for c in msg.chunks(chunk) {
            v.update(c).unwrap();
        }
        assert!(v.verify().is_ok(), "own signature must verify");
        if !msg.is_empty() {
            let mut m = msg.to_vec();
            m[usize::from(mode >> 1) % msg.len()] ^= 1 << (mode >> 5); // one bit of one byte
            let mut v = Verifier::new(&pk, &sig).unwrap();
            v.update(&m).unwrap();
            assert!(v.verify().is_err(), "changed message must not verify");
        }
    }
});
