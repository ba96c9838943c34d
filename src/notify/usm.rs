//! SNMPv3 User-based Security Model pieces (RFC 3414, RFC 3826, RFC 7860):
//! password to key, key localization, HMAC authentication, AES-128-CFB
//! privacy. The PDUs themselves are encoded by rasn-snmp.

use crate::config::AuthProto;
use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Mac, SimpleHmac};
use sha1::Digest;

fn digest(proto: AuthProto, parts: &[&[u8]]) -> Vec<u8> {
    fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut h = D::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().to_vec()
    }
    match proto {
        AuthProto::Sha => run::<sha1::Sha1>(parts),
        AuthProto::Sha256 => run::<sha2::Sha256>(parts),
        AuthProto::Sha512 => run::<sha2::Sha512>(parts),
    }
}

/// Length of the truncated MAC in msgAuthenticationParameters.
pub fn auth_len(proto: AuthProto) -> usize {
    match proto {
        AuthProto::Sha => 12,
        AuthProto::Sha256 => 24,
        AuthProto::Sha512 => 48,
    }
}

/// RFC 3414 A.2: hash one megabyte of the repeated password.
pub fn password_to_key(proto: AuthProto, password: &[u8]) -> Vec<u8> {
    fn run<D: Digest>(password: &[u8]) -> Vec<u8> {
        let mut h = D::new();
        let mut block = [0u8; 64];
        let mut idx = 0usize;
        for _ in 0..(1_048_576 / 64) {
            for b in block.iter_mut() {
                *b = password[idx % password.len()];
                idx += 1;
            }
            h.update(block);
        }
        h.finalize().to_vec()
    }
    match proto {
        AuthProto::Sha => run::<sha1::Sha1>(password),
        AuthProto::Sha256 => run::<sha2::Sha256>(password),
        AuthProto::Sha512 => run::<sha2::Sha512>(password),
    }
}

/// RFC 3414 A.2: the key localized to one engine: H(Ku | engineID | Ku).
pub fn localize(proto: AuthProto, ku: &[u8], engine_id: &[u8]) -> Vec<u8> {
    digest(proto, &[ku, engine_id, ku])
}

/// The truncated HMAC of a whole message.
pub fn mac(proto: AuthProto, key: &[u8], msg: &[u8]) -> Vec<u8> {
    fn run<D: Digest + hmac::digest::core_api::BlockSizeUser>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut m =
            <SimpleHmac<D> as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
        Mac::update(&mut m, msg);
        m.finalize().into_bytes().to_vec()
    }
    let full = match proto {
        AuthProto::Sha => run::<sha1::Sha1>(key, msg),
        AuthProto::Sha256 => run::<sha2::Sha256>(key, msg),
        AuthProto::Sha512 => run::<sha2::Sha512>(key, msg),
    };
    full[..auth_len(proto)].to_vec()
}

fn iv(boots: u32, time: u32, salt: &[u8; 8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&boots.to_be_bytes());
    iv[4..8].copy_from_slice(&time.to_be_bytes());
    iv[8..].copy_from_slice(salt);
    iv
}

/// RFC 3826: AES-128 in CFB mode; the key is the first 16 bytes of the
/// localized privacy key.
pub fn aes_encrypt(key: &[u8], boots: u32, time: u32, salt: &[u8; 8], data: &[u8]) -> Vec<u8> {
    let mut buf = data.to_vec();
    cfb_mode::Encryptor::<aes::Aes128>::new(key[..16].into(), &iv(boots, time, salt).into())
        .encrypt(&mut buf);
    buf
}

pub fn aes_decrypt(key: &[u8], boots: u32, time: u32, salt: &[u8; 8], data: &[u8]) -> Vec<u8> {
    let mut buf = data.to_vec();
    cfb_mode::Decryptor::<aes::Aes128>::new(key[..16].into(), &iv(boots, time, salt).into())
        .decrypt(&mut buf);
    buf
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    // Bytes, not string slices: a non-ASCII character must be an error,
    // never a slice through the middle of a character.
    let s = s.trim().trim_start_matches("0x").as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    s.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3414 A.3.2: "maplesyrup", SHA, engine 00..02.
    #[test]
    fn rfc3414_sha_test_vector() {
        let ku = password_to_key(AuthProto::Sha, b"maplesyrup");
        assert_eq!(hex(&ku), "9fb5cc0381497b3793528939ff788d5d79145211");
        let engine = unhex("000000000000000000000002").unwrap();
        assert_eq!(
            hex(&localize(AuthProto::Sha, &ku, &engine)),
            "6695febc9288e36282235fc7151f128497b38f3f"
        );
    }

    #[test]
    fn aes_round_trip() {
        let key = [7u8; 20];
        let salt = [1, 2, 3, 4, 5, 6, 7, 8];
        let enc = aes_encrypt(&key, 3, 99, &salt, b"scoped pdu bytes");
        assert_ne!(enc, b"scoped pdu bytes");
        assert_eq!(aes_decrypt(&key, 3, 99, &salt, &enc), b"scoped pdu bytes");
    }
}
