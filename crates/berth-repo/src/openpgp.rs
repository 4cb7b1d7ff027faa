//! The OpenPGP key a repository is signed with, as apt (gpgv) and rpm check it: an
//! ed25519 primary key that certifies and signs, so one small keyring is all a
//! client needs (`signed-by`).
//!
//! Signatures carry the time given to them, not the clock's, and ed25519 signatures
//! are deterministic: the same inputs sign to the same bytes (reproducible repositories).

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, Deserializable, DetachedSignature, KeyType,
    SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey, SubpacketConfig,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, KeyVersion, Password, Timestamp};
use rand_core::OsRng;

use crate::RepoError;

fn key_error(what: impl std::fmt::Display) -> RepoError {
    RepoError::Key {
        what: what.to_string(),
    }
}

/// A repository's secret signing key.
#[derive(Debug, Clone)]
pub struct RepoKey {
    secret: SignedSecretKey,
}

/// The public half, as clients are given it.
#[derive(Debug, Clone)]
pub struct RepoPublicKey {
    public: SignedPublicKey,
}

impl RepoKey {
    /// A new key for `user_id` (`Name <address>`), made at `created` (seconds).
    pub fn generate(user_id: &str, created: u32) -> Result<Self, RepoError> {
        if user_id.trim().is_empty() || user_id.contains(['\n', '\r']) {
            return Err(key_error(format!(
                "`{}` is not a user id: give `Name <address>` on one line",
                user_id.escape_debug()
            )));
        }
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .created_at(Timestamp::from_secs(created))
            .primary_user_id(user_id.to_owned());
        let secret = params
            .build()
            .map_err(key_error)?
            .generate(OsRng)
            .map_err(key_error)?;
        Ok(Self { secret })
    }

    /// The key in an armored secret key block (`berth repo key` writes it).
    pub fn from_armored(text: &str) -> Result<Self, RepoError> {
        let (secret, _) = SignedSecretKey::from_string(text).map_err(|e| {
            key_error(format!(
                "not an OpenPGP secret key made by `berth repo key` ({e})"
            ))
        })?;
        secret
            .verify_bindings()
            .map_err(|e| key_error(format!("the key's own signatures do not verify ({e})")))?;
        if secret.primary_key.version() != KeyVersion::V4 {
            return Err(key_error("only version 4 keys are used (gpgv reads them)"));
        }
        Ok(Self { secret })
    }

    /// The armored secret key block.
    pub fn to_armored(&self) -> Result<String, RepoError> {
        self.secret
            .to_armored_string(ArmorOptions::default())
            .map_err(key_error)
    }

    /// The public key.
    pub fn public(&self) -> RepoPublicKey {
        RepoPublicKey {
            public: SignedPublicKey::from(self.secret.clone()),
        }
    }

    /// The hashed subpackets of a signature made at `at`, and the unhashed issuer. A
    /// signature older than its key does not verify (gpgv: "time conflict"), so one
    /// asked for before the key was made (an old `SOURCE_DATE_EPOCH`) carries the key's
    /// own time instead: still the same every time.
    fn subpackets(&self, at: u32) -> Result<(Vec<Subpacket>, Vec<Subpacket>), RepoError> {
        let key = &self.secret.primary_key;
        let at = at.max(key.created_at().as_secs());
        Ok((
            vec![
                Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::from_secs(
                    at,
                )))
                .map_err(key_error)?,
                Subpacket::regular(SubpacketData::IssuerFingerprint(key.fingerprint()))
                    .map_err(key_error)?,
            ],
            vec![
                Subpacket::regular(SubpacketData::IssuerKeyId(key.legacy_key_id()))
                    .map_err(key_error)?,
            ],
        ))
    }

    /// `text` as a cleartext-signed message (an `InRelease` file).
    pub fn clearsign(&self, text: &str, at: u32) -> Result<String, RepoError> {
        let key = &self.secret.primary_key;
        let (hashed, unhashed) = self.subpackets(at)?;
        let mut config =
            SignatureConfig::from_key(OsRng, key, SignatureType::Text).map_err(key_error)?;
        config.hashed_subpackets = hashed;
        config.unhashed_subpackets = unhashed;
        let message = CleartextSignedMessage::new(text, config, key, &Password::empty())
            .map_err(key_error)?;
        message
            .to_armored_string(ArmorOptions::default())
            .map_err(key_error)
    }

    fn detached(&self, data: &[u8], at: u32) -> Result<DetachedSignature, RepoError> {
        let (hashed, unhashed) = self.subpackets(at)?;
        DetachedSignature::sign_binary_data_with_subpackets(
            OsRng,
            &self.secret.primary_key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            data,
            SubpacketConfig::UserDefined { hashed, unhashed },
        )
        .map_err(key_error)
    }

    /// An armored detached signature of `data` (`Release.gpg`, `repomd.xml.asc`).
    pub fn sign_detached(&self, data: &[u8], at: u32) -> Result<String, RepoError> {
        self.detached(data, at)?
            .to_armored_string(ArmorOptions::default())
            .map_err(key_error)
    }

    /// The same signature as a bare binary packet: what an RPM header carries.
    pub fn sign_detached_binary(&self, data: &[u8], at: u32) -> Result<Vec<u8>, RepoError> {
        self.detached(data, at)?.to_bytes().map_err(key_error)
    }
}

impl RepoPublicKey {
    /// A public key as a binary keyring (`.gpg`) or armored (`.asc`).
    pub fn parse(bytes: &[u8]) -> Result<Self, RepoError> {
        let public = if bytes.starts_with(b"-----BEGIN") {
            let text = std::str::from_utf8(bytes).map_err(key_error)?;
            SignedPublicKey::from_string(text).map(|(k, _)| k)
        } else {
            SignedPublicKey::from_bytes(bytes)
        }
        .map_err(|e| key_error(format!("not an OpenPGP public key ({e})")))?;
        public
            .verify_bindings()
            .map_err(|e| key_error(format!("the key's own signatures do not verify ({e})")))?;
        Ok(Self { public })
    }

    /// The binary keyring apt's `signed-by` takes.
    pub fn keyring(&self) -> Result<Vec<u8>, RepoError> {
        self.public.to_bytes().map_err(key_error)
    }

    /// The armored public key.
    pub fn armored(&self) -> Result<String, RepoError> {
        self.public
            .to_armored_string(ArmorOptions::default())
            .map_err(key_error)
    }

    /// The key's fingerprint, upper-case hex as gpg shows it.
    pub fn fingerprint(&self) -> String {
        hex::encode_upper(self.public.primary_key.fingerprint().as_bytes())
    }

    /// Whether `signature` (armored, detached) is this key's over `data`.
    pub fn verify_detached(&self, data: &[u8], signature: &[u8]) -> Result<(), RepoError> {
        let text = std::str::from_utf8(signature).map_err(|_| RepoError::Signature {
            what: "the signature is not armored text".to_owned(),
        })?;
        let (parsed, _) =
            DetachedSignature::from_string(text).map_err(|e| RepoError::Signature {
                what: format!("not a detached signature ({e})"),
            })?;
        parsed
            .verify(&self.public.primary_key, data)
            .map_err(|e| RepoError::Signature {
                what: format!("not signed by the key {} ({e})", self.fingerprint()),
            })
    }

    /// The text of a cleartext-signed `message` once its signature by this key checks out.
    pub fn verify_clearsigned(&self, message: &str) -> Result<String, RepoError> {
        let (parsed, _) =
            CleartextSignedMessage::from_string(message).map_err(|e| RepoError::Signature {
                what: format!("not a cleartext-signed message ({e})"),
            })?;
        parsed
            .verify(&self.public.primary_key)
            .map_err(|e| RepoError::Signature {
                what: format!("not signed by the key {} ({e})", self.fingerprint()),
            })?;
        // The signed text is canonical (CRLF line ends); the file's lines end in LF.
        Ok(parsed.signed_text().replace("\r\n", "\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_public_key_only_and_are_deterministic() {
        let key = RepoKey::generate("Vendor <repo@example.org>", 1_700_000_000).unwrap();
        let again = RepoKey::from_armored(&key.to_armored().unwrap()).unwrap();
        let public = RepoPublicKey::parse(&key.public().keyring().unwrap()).unwrap();
        let armored = RepoPublicKey::parse(key.public().armored().unwrap().as_bytes()).unwrap();
        assert_eq!(public.fingerprint(), armored.fingerprint());
        let text = "Origin: demo\nSuite: stable\n";
        let signed = again.clearsign(text, 1_700_000_100).unwrap();
        assert_eq!(signed, key.clearsign(text, 1_700_000_100).unwrap());
        assert_eq!(
            public.verify_clearsigned(&signed).unwrap().trim_end(),
            text.trim_end()
        );
        // One changed byte of the text, or another key: refused.
        let tampered = signed.replace("Suite: stable", "Suite: stabIe");
        assert!(public.verify_clearsigned(&tampered).is_err());
        let other = RepoKey::generate("Other <o@example.org>", 1_700_000_000).unwrap();
        assert!(other.public().verify_clearsigned(&signed).is_err());
        assert_eq!(
            key.sign_detached(b"x", 5).unwrap(),
            key.sign_detached(b"x", 5).unwrap()
        );
        // Asked to sign before the key existed: signed at the key's time, and it verifies.
        let early = key.clearsign(text, 5).unwrap();
        assert_eq!(early, key.clearsign(text, 1_700_000_000).unwrap());
        assert!(public.verify_clearsigned(&early).is_ok());
        // The binary form (an RPM header's) is the same signature, and verifies.
        let binary = key.sign_detached_binary(b"header", 5).unwrap();
        assert_eq!(binary, key.sign_detached_binary(b"header", 5).unwrap());
        let parsed = DetachedSignature::from_bytes(&binary[..]).unwrap();
        assert!(parsed.verify(&public.public.primary_key, b"header").is_ok());
        assert!(
            parsed
                .verify(&public.public.primary_key, b"headex")
                .is_err()
        );
        assert!(RepoKey::generate("a\nb", 0).is_err());
        assert!(RepoKey::from_armored("junk").is_err());
    }
}
