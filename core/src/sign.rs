//! Ed25519 (RFC 8032) signatures over a streamed message: [`Verifier`] for the device, [`sign`]
//! and [`public_key`] for the host tools. Feature `ed25519` (the verifier module
//! `ota_ed25519.mpy` and the PyO3 module; the base `ota_native.mpy` is built without it).
//!
//! The arithmetic is `ed25519-compact`'s (no_std, no alloc). A verifier takes the public key
//! and the signature first (Ed25519 hashes the signature's R and the key before the message),
//! then the message in pieces of any size, then [`Verifier::verify`]. It rejects what RFC 8032
//! section 5.1.7 and the strict rules reject: keys that are not a canonical curve point or
//! have a small order, signatures whose S is not below the group order L or whose R is not a
//! canonical point of large order. Every failure is an [`Error`] value; errors latch.
//!
//! ```
//! use ota_core::sign::{public_key, sign, Verifier};
//! use ota_core::Error;
//! let seed = [7u8; 32];
//! let pk = public_key(&seed).unwrap();
//! let sig = sign(&seed, b"manifest bytes").unwrap();
//! let mut v = Verifier::new(&pk, &sig).unwrap();
//! v.update(b"manifest ").unwrap();
//! v.update(b"bytes").unwrap();
//! assert_eq!(v.verify(), Ok(()));
//! let mut v = Verifier::new(&pk, &sig).unwrap();
//! v.update(b"manifest bytes!").unwrap();
//! assert_eq!(v.verify(), Err(Error::SigMismatch));
//! assert_eq!(v.update(b"more"), Err(Error::SigMismatch)); // latched
//! ```

use crate::Error;
use ed25519_compact::{Error as EdError, KeyPair, PublicKey, Seed, Signature, VerifyingState};

/// Bytes of a public key (and of a seed, the private key).
pub const KEY_LEN: usize = 32;
/// Bytes of a signature (R, then S).
pub const SIGNATURE_LEN: usize = 64;

/// The core's error for one of `ed25519-compact`'s.
fn error(e: EdError) -> Error {
    match e {
        EdError::WeakPublicKey => Error::WeakKey,
        EdError::InvalidPublicKey => Error::BadKey,
        EdError::NonCanonical => Error::SigNonCanonical,
        EdError::InvalidSignature => Error::SigBadR,
        EdError::SignatureMismatch => Error::SigMismatch,
        _ => Error::Internal,
    }
}

fn key(k: &[u8]) -> Result<[u8; KEY_LEN], Error> {
    k.try_into().map_err(|_| Error::KeyLength)
}

/// A streaming Ed25519 verification: [`new`](Verifier::new), [`update`](Verifier::update) with
/// the message in pieces, [`verify`](Verifier::verify). About 0.7 KB of state.
#[derive(Clone)]
pub struct Verifier {
    state: VerifyingState,
    /// 0: open; [`DONE`]: verified; else the latched error's code.
    status: u8,
}

/// `status` of a verifier whose signature checked out.
const DONE: u8 = 0xff;

impl Verifier {
    /// A verifier of `signature` (64 bytes) by `public_key` (32 bytes). Errors, in this order:
    /// [`Error::KeyLength`], [`Error::SigLength`], [`Error::SigNonCanonical`] (S >= L),
    /// [`Error::BadKey`], [`Error::WeakKey`] (small order), [`Error::SigBadR`].
    pub fn new(public_key: &[u8], signature: &[u8]) -> Result<Verifier, Error> {
        let pk = PublicKey::new(key(public_key)?);
        let sig: [u8; SIGNATURE_LEN] = signature.try_into().map_err(|_| Error::SigLength)?;
        let state = pk.verify_incremental(&Signature::new(sig)).map_err(error)?;
        Ok(Verifier { state, status: 0 })
    }

    fn check(&self) -> Result<(), Error> {
        match self.status {
            0 => Ok(()),
            DONE => Err(Error::BadArgument),
            e => Err(Error::from_code(e as i32).unwrap_or(Error::Internal)),
        }
    }

    /// Feeds the next bytes of the message. After [`verify`](Verifier::verify): its error, or
    /// [`Error::BadArgument`] when it succeeded (the message is complete).
    pub fn update(&mut self, data: &[u8]) -> Result<(), Error> {
        self.check()?;
        self.state.absorb(data);
        Ok(())
    }

    /// Ok when the signature is valid for the bytes fed, else [`Error::SigMismatch`]. The result
    /// latches: later calls return it again.
    pub fn verify(&mut self) -> Result<(), Error> {
        match self.status {
            0 => {}
            DONE => return Ok(()),
            _ => return self.check(),
        }
        match self.state.verify().map_err(error) {
            Ok(()) => {
                self.status = DONE;
                Ok(())
            }
            Err(e) => Err(e.latch(&mut self.status)),
        }
    }
}

/// The public key of the private key `seed` (32 bytes, RFC 8032's secret key). Host side.
/// [`Error::KeyLength`] for another length; [`Error::BadKey`] for the all-zero seed (refused
/// by `ed25519-compact` as a sign of an unset key).
pub fn public_key(seed: &[u8]) -> Result<[u8; KEY_LEN], Error> {
    let kp = KeyPair::try_from_seed(Seed::new(key(seed)?)).map_err(|_| Error::BadKey)?;
    Ok(*kp.pk)
}

/// The Ed25519 signature of `message` by the private key `seed` (deterministic, RFC 8032).
/// Host side; errors as [`public_key`].
pub fn sign(seed: &[u8], message: &[u8]) -> Result<[u8; SIGNATURE_LEN], Error> {
    let kp = KeyPair::try_from_seed(Seed::new(key(seed)?)).map_err(|_| Error::BadKey)?;
    Ok(*kp.sk.sign(message, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn unhex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(|c| c.is_ascii_hexdigit()).collect();
        s.chunks(2).map(|c| u8::from_str_radix(core::str::from_utf8(c).unwrap(), 16).unwrap()).collect()
    }

    /// RFC 8032 section 7.1: (secret key, public key, message, signature).
    pub(crate) const RFC8032: [(&str, &str, &str, &str); 4] = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
             085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac\
             18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
        (
            "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
            "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589\
             09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
        ),
    ];

    fn verify_whole(pk: &[u8], sig: &[u8], msg: &[u8]) -> Result<(), Error> {
        let mut v = Verifier::new(pk, sig)?;
        v.update(msg)?;
        v.verify()
    }

    #[test]
    fn rfc8032_vectors() {
        for (sk, pk, msg, sig) in RFC8032 {
            let (sk, pk, msg, sig) = (unhex(sk), unhex(pk), unhex(msg), unhex(sig));
            assert_eq!(public_key(&sk).unwrap()[..], pk[..]);
            assert_eq!(sign(&sk, &msg).unwrap()[..], sig[..]);
            assert_eq!(verify_whole(&pk, &sig, &msg), Ok(()));
            // in pieces of every size
            for step in 1..=msg.len().max(1) {
                let mut v = Verifier::new(&pk, &sig).unwrap();
                for c in msg.chunks(step) {
                    v.update(c).unwrap();
                }
                v.update(b"").unwrap();
                assert_eq!(v.verify(), Ok(()));
                assert_eq!(v.verify(), Ok(()), "latched");
                assert_eq!(v.update(b""), Err(Error::BadArgument), "complete");
            }
        }
    }

    #[test]
    fn every_flipped_bit_fails() {
        let seed = [0x42u8; 32];
        let pk = public_key(&seed).unwrap();
        let msg: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        let sig = sign(&seed, &msg).unwrap();
        assert_eq!(verify_whole(&pk, &sig, &msg), Ok(()));
        for bit in 0..msg.len() * 8 {
            let mut m = msg.clone();
            m[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(verify_whole(&pk, &sig, &m), Err(Error::SigMismatch), "message bit {bit}");
        }
        for bit in 0..SIGNATURE_LEN * 8 {
            let mut s = sig;
            s[bit / 8] ^= 1 << (bit % 8);
            assert!(verify_whole(&pk, &s, &msg).is_err(), "signature bit {bit}");
        }
        for bit in 0..KEY_LEN * 8 {
            let mut k = pk;
            k[bit / 8] ^= 1 << (bit % 8);
            assert!(verify_whole(&k, &sig, &msg).is_err(), "key bit {bit}");
        }
    }

    /// The group order L, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    /// a + b over 256-bit little-endian numbers.
    fn add(a: &[u8], b: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let s = a[i] as u16 + b[i] as u16 + carry;
            out[i] = s as u8;
            carry = s >> 8;
        }
        out
    }

    #[test]
    fn s_not_below_l_is_refused() {
        let (sk, pk, msg, sig) = RFC8032[1];
        let (_sk, pk, msg, sig) = (unhex(sk), unhex(pk), unhex(msg), unhex(sig));
        // S + L verifies with a lax checker (the same point); strict Ed25519 refuses it.
        let mut s2 = sig.clone();
        s2[32..].copy_from_slice(&add(&sig[32..], &L));
        assert_eq!(verify_whole(&pk, &s2, &msg), Err(Error::SigNonCanonical));
        let mut s3 = sig.clone();
        s3[32..].copy_from_slice(&L);
        assert_eq!(Verifier::new(&pk, &s3).err(), Some(Error::SigNonCanonical));
        s3[63] = 0xff;
        assert_eq!(Verifier::new(&pk, &s3).err(), Some(Error::SigNonCanonical));
        // L - 1 is canonical: a mismatch, not an encoding error
        s3[32..].copy_from_slice(&L);
        s3[32] -= 1;
        assert_eq!(verify_whole(&pk, &s3, &msg), Err(Error::SigMismatch));
    }

    /// Encodings of the small-order points (order 1, 2, 4, 8), canonical ones.
    pub(crate) const SMALL_ORDER: [&str; 6] = [
        "0100000000000000000000000000000000000000000000000000000000000000", // identity
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
        "0000000000000000000000000000000000000000000000000000000000000000", // order 4
        "0000000000000000000000000000000000000000000000000000000000000080", // order 4
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
    ];

    #[test]
    fn small_order_keys_and_r_are_refused() {
        let (_, pk, msg, sig) = RFC8032[2];
        let (pk, msg, sig) = (unhex(pk), unhex(msg), unhex(sig));
        for k in SMALL_ORDER {
            assert_eq!(Verifier::new(&unhex(k), &sig).err(), Some(Error::WeakKey), "{k}");
            let mut s = sig.clone();
            s[..32].copy_from_slice(&unhex(k));
            assert_eq!(Verifier::new(&pk, &s).err(), Some(Error::SigBadR), "R = {k}");
        }
        // A key that is no curve point, and a non-canonical y (p + 1).
        let mut bad = unhex("0200000000000000000000000000000000000000000000000000000000000000");
        assert_eq!(Verifier::new(&bad, &sig).err(), Some(Error::BadKey));
        bad = unhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        assert_eq!(Verifier::new(&bad, &sig).err(), Some(Error::BadKey));
        assert_eq!(verify_whole(&pk, &sig, &msg), Ok(()));
    }

    #[test]
    fn lengths() {
        let (_, pk, _, sig) = RFC8032[0];
        let (pk, sig) = (unhex(pk), unhex(sig));
        for n in [0, 1, 31, 33, 64] {
            let k = std::vec![1u8; n];
            assert_eq!(Verifier::new(&k, &sig).err(), Some(Error::KeyLength), "{n}");
            assert_eq!(public_key(&k).err(), Some(Error::KeyLength));
            assert_eq!(sign(&k, b"").err(), Some(Error::KeyLength));
        }
        for n in [0, 1, 32, 63, 65, 128] {
            let s = std::vec![1u8; n];
            assert_eq!(Verifier::new(&pk, &s).err(), Some(Error::SigLength), "{n}");
        }
        // the key is checked first
        assert_eq!(Verifier::new(&pk[..31], &sig[..63]).err(), Some(Error::KeyLength));
        assert_eq!(public_key(&[0u8; 32]).err(), Some(Error::BadKey));
        // a truncated message, or one with a byte more, does not verify
        let (sk, pk, msg, sig) = RFC8032[3];
        let (_sk, pk, msg, sig) = (unhex(sk), unhex(pk), unhex(msg), unhex(sig));
        assert_eq!(verify_whole(&pk, &sig, &msg[..msg.len() - 1]), Err(Error::SigMismatch));
        let mut more = msg.clone();
        more.push(0);
        assert_eq!(verify_whole(&pk, &sig, &more), Err(Error::SigMismatch));
        assert_eq!(verify_whole(&pk, &sig, &msg), Ok(()));
    }

    #[test]
    fn random_inputs_never_panic() {
        // Keys and signatures of random bytes (and random lengths around the right ones), and
        // valid keys with random signatures: errors as values, never a panic, never Ok.
        let mut rng = fastrand::Rng::with_seed(8032);
        let good = public_key(&[3u8; 32]).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..3000 {
            let klen = if i % 5 == 0 { rng.usize(0..70) } else { 32 };
            let slen = if i % 7 == 0 { rng.usize(0..70) } else { 64 };
            let key: Vec<u8> = if i % 2 == 0 { good.to_vec() } else { (0..klen).map(|_| rng.u8(..)).collect() };
            let sig: Vec<u8> = (0..slen).map(|_| rng.u8(..)).collect();
            let msg: Vec<u8> = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
            let r = Verifier::new(&key, &sig).and_then(|mut v| {
                for c in msg.chunks(rng.usize(1..50)) {
                    v.update(c)?;
                }
                v.verify()
            });
            let e = r.expect_err("a random signature verified");
            seen.insert(e.code());
        }
        // every refusal was met
        for e in [Error::KeyLength, Error::SigLength, Error::BadKey, Error::SigNonCanonical, Error::SigBadR, Error::SigMismatch] {
            assert!(seen.contains(&e.code()), "{e:?} never met");
        }
    }

    #[test]
    fn big_messages() {
        let seed = [9u8; 32];
        let pk = public_key(&seed).unwrap();
        let msg: Vec<u8> = (0..100_000u32).map(|i| (i ^ (i >> 7)) as u8).collect();
        let sig = sign(&seed, &msg).unwrap();
        let mut v = Verifier::new(&pk, &sig).unwrap();
        for c in msg.chunks(1000) {
            v.update(c).unwrap();
        }
        assert_eq!(v.verify(), Ok(()));
    }
}
