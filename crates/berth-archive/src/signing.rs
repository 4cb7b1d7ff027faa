//! The archive signing key: an ed25519 key pair whose secret half signs every archive's
//! index, and whose public half is what [`crate::verify`] and [`crate::extract`] trust.
//!
//! Anyone who can write to a backup target can write an archive, and age encryption
//! proves nothing about who wrote one (its recipient is public): the signature is what
//! tells an archive made by this instance (or by whoever holds its exported key file)
//! from a crafted one.
//!
//! Text forms, one line each:
//! - secret key: `BERTH-SIGNING-KEY-1` followed by the 32-byte seed in lowercase hex;
//! - public key: `ed25519:` followed by the 32-byte key in lowercase hex.
//!
//! A key file ([`parse_key_file`]) holds `#` comments, at most one age identity (the
//! backup key) and at most one signing key, so one exported file restores both.
//! Nothing here ever puts a secret key into an error or into `Debug` output.

use std::fmt;

use ed25519_dalek::Signer;

use crate::error::ArchiveError;
use crate::secrets::Identity;

pub use crate::secrets::SIGNING_KEY_PREFIX;

/// The prefix of a public signing key's text form.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";

/// What an archive's signature covers, as its format defines it: the format's context,
/// then (format 3) the length of the compressed data before the index (8 bytes, little
/// endian) and its SHA-256, then the index JSON byte for byte. The context keeps a
/// signature over an index from ever being valid for anything else, including an index of
/// another format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signed<'a> {
    /// The format's context, which starts the signed message.
    pub context: &'static [u8],
    /// The compressed bytes before the index frame, in the formats whose signature covers
    /// them (format 3; `None` for format 2).
    pub data: Option<DataDigest>,
    /// The index (manifest) JSON, exactly as stored.
    pub json: &'a [u8],
}

/// The length and SHA-256 of an archive's compressed data, exactly as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataDigest {
    /// How many bytes come before the index frame.
    pub len: u64,
    /// Their SHA-256.
    pub sha256: [u8; 32],
}

/// The secret key that signs archives. Its `Debug` output shows only its public key.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A new random key, from the operating system's random source.
    pub fn generate() -> Result<Self, ArchiveError> {
        let mut seed = [0u8; 32];
        let mut filled = 0;
        while filled < seed.len() {
            match rustix::rand::getrandom(
                &mut seed[filled..],
                rustix::rand::GetRandomFlags::empty(),
            ) {
                Ok(n) => filled += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    return Err(ArchiveError::InvalidKey {
                        reason: format!("no random bytes for a new signing key: {e}"),
                    });
                }
            }
        }
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// The public half, which verifies this key's signatures.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The secret key's text form (`BERTH-SIGNING-KEY-1…`): handle it as a secret.
    pub fn to_secret_text(&self) -> String {
        format!("{SIGNING_KEY_PREFIX}{}", hex::encode(self.0.to_bytes()))
    }

    /// Parses the secret key's text form.
    pub fn from_secret_text(text: &str) -> Result<Self, ArchiveError> {
        let invalid = |reason: &str| ArchiveError::InvalidKey {
            reason: reason.to_owned(),
        };
        let hex_part = text
            .trim()
            .strip_prefix(SIGNING_KEY_PREFIX)
            .ok_or_else(|| invalid(&format!("a signing key starts with `{SIGNING_KEY_PREFIX}`")))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut seed).map_err(|_| {
            invalid("the signing key is not 64 hexadecimal digits after its prefix")
        })?;
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// The signature over `document` for the purpose `context` (a fixed, NUL-ended
    /// label of the format, e.g. `b"berth release channel v1\0"`): a signature made for
    /// one purpose never verifies for another, nor as an archive's.
    pub fn sign_document(&self, context: &'static [u8], document: &[u8]) -> [u8; 64] {
        self.sign_index(Signed {
            context,
            data: None,
            json: document,
        })
    }

    /// The signature over an index and the data it follows.
    pub(crate) fn sign_index(&self, signed: Signed<'_>) -> [u8; 64] {
        self.0.sign(&signed_message(signed)).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// A public signing key: an archive signed by its secret half is trusted.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// Parses the text form (`ed25519:` and 64 hex digits).
    pub fn parse(text: &str) -> Result<Self, ArchiveError> {
        let invalid = |reason: &str| ArchiveError::InvalidKey {
            reason: reason.to_owned(),
        };
        let hex_part = text.trim().strip_prefix(PUBLIC_KEY_PREFIX).ok_or_else(|| {
            invalid(&format!(
                "a public signing key starts with `{PUBLIC_KEY_PREFIX}`"
            ))
        })?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| {
            invalid("a public signing key is 64 hexadecimal digits after `ed25519:`")
        })?;
        Self::from_bytes(&bytes).ok_or_else(|| invalid("not a valid ed25519 public key"))
    }

    /// The raw 32 bytes, as stored in an archive's index frame.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The key from its raw 32 bytes, if they are a valid ed25519 point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .ok()
            .filter(|k| !k.is_weak())
            .map(Self)
    }

    /// Whether `signature` is this key's [`SigningKey::sign_document`] over `document`
    /// for `context`.
    pub fn verifies_document(
        &self,
        context: &'static [u8],
        document: &[u8],
        signature: &[u8; 64],
    ) -> bool {
        self.verifies_index(
            Signed {
                context,
                data: None,
                json: document,
            },
            signature,
        )
    }

    /// Whether `signature` is this key's signature over an index and the data it follows.
    pub(crate) fn verifies_index(&self, signed: Signed<'_>, signature: &[u8; 64]) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        // Strict: no malleable or small-order signatures.
        self.0
            .verify_strict(&signed_message(signed), &signature)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_KEY_PREFIX}{}", hex::encode(self.0.to_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

fn signed_message(signed: Signed<'_>) -> Vec<u8> {
    let mut message = Vec::with_capacity(signed.context.len() + 8 + 32 + signed.json.len());
    message.extend_from_slice(signed.context);
    if let Some(data) = signed.data {
        message.extend_from_slice(&data.len.to_le_bytes());
        message.extend_from_slice(&data.sha256);
    }
    message.extend_from_slice(signed.json);
    message
}

/// The text of a signing key file: `# created:` and `# signing public key:` comments, then
/// the secret key.
pub fn signing_key_file_text(key: &SigningKey, created: jiff::Timestamp) -> String {
    format!(
        "# created: {}\n# signing public key: {}\n{}\n",
        created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        key.public_key(),
        key.to_secret_text()
    )
}

/// A new key file holding both keys, as `berth backup key --export` writes one: a new
/// backup key (age identity) and a new signing key. What a deployment without a host's
/// instance (`berth k8s render`) signs and encrypts its archives with.
///
/// # Errors
/// The system's random source fails.
pub fn new_key_file_text(created: jiff::Timestamp) -> Result<String, ArchiveError> {
    let (identity, recipient) = crate::secrets::generate_identity();
    let signing = SigningKey::generate()?;
    Ok(format!(
        "{}{}",
        crate::secrets::identity_file_text(&identity, &recipient, created)
            .trim_end()
            .to_owned()
            + "\n",
        signing_key_file_text(&signing, created)
    ))
}

/// What a key file holds: the backup key (age identity) and the signing key, each if
/// present.
#[derive(Debug, Default)]
pub struct KeyFile {
    /// The age identity that decrypts archives' secrets.
    pub identity: Option<Identity>,
    /// The key that signs archives; its public half is what verification trusts.
    pub signing: Option<SigningKey>,
}

/// Parses a key file: `#` comments, blank lines, at most one `AGE-SECRET-KEY-1…` line and
/// at most one `BERTH-SIGNING-KEY-1…` line.
///
/// The age part is checked as [`crate::secrets::parse_identity`] does (including its
/// `# public key:` comment); a `# signing public key:` comment must match the signing key.
pub fn parse_key_file(text: &str) -> Result<KeyFile, ArchiveError> {
    let invalid = |reason: String| ArchiveError::InvalidKey { reason };
    let mut signing = None;
    let mut stated_public = None;
    let mut age_lines = String::new();
    let mut has_age = false;
    for line in text.lines().map(str::trim) {
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(key) = comment.trim().strip_prefix("signing public key:") {
                stated_public = Some(key.trim().to_owned());
            } else {
                age_lines.push_str(line);
                age_lines.push('\n');
            }
        } else if line.starts_with(SIGNING_KEY_PREFIX) {
            if signing.is_some() {
                return Err(invalid(
                    "more than one signing key, but a key file holds at most one".to_owned(),
                ));
            }
            signing = Some(SigningKey::from_secret_text(line)?);
        } else if !line.is_empty() {
            has_age = true;
            age_lines.push_str(line);
            age_lines.push('\n');
        }
    }
    if let (Some(stated), Some(key)) = (&stated_public, &signing) {
        let actual = key.public_key().to_string();
        if *stated != actual {
            return Err(invalid(format!(
                "its `# signing public key: {stated}` comment does not match the signing key, \
                 whose public key is {actual}"
            )));
        }
    }
    let identity = if has_age {
        Some(crate::secrets::parse_identity(&age_lines)?)
    } else {
        None
    };
    if identity.is_none() && signing.is_none() {
        return Err(invalid(format!(
            "no key found (expected a line starting with `AGE-SECRET-KEY-1` or `{SIGNING_KEY_PREFIX}`)"
        )));
    }
    Ok(KeyFile { identity, signing })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_secret_text(&key.to_secret_text()).unwrap();
        assert_eq!(key.public_key(), again.public_key());
        let public = key.public_key().to_string();
        assert!(public.starts_with("ed25519:") && public.len() == 8 + 64);
        assert_eq!(PublicKey::parse(&public).unwrap(), key.public_key());
        // Debug never shows the secret.
        assert!(!format!("{key:?}").contains(&key.to_secret_text()[19..]));
    }

    #[test]
    fn a_new_key_file_holds_both_keys_and_parses() {
        let text = new_key_file_text(jiff::Timestamp::UNIX_EPOCH).unwrap();
        let parsed = parse_key_file(&text).unwrap();
        assert!(parsed.identity.is_some() && parsed.signing.is_some());
        assert_ne!(text, new_key_file_text(jiff::Timestamp::UNIX_EPOCH).unwrap());
    }

    #[test]
    fn signatures_bind_key_context_index_and_data() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let data = DataDigest {
            len: 100,
            sha256: [7; 32],
        };
        let signed = Signed {
            context: b"v3\0",
            data: Some(data),
            json: b"{}",
        };
        let sig = key.sign_index(signed);
        assert!(key.public_key().verifies_index(signed, &sig));
        assert!(!other.public_key().verifies_index(signed, &sig));
        for changed in [
            Signed {
                json: b"{ }",
                ..signed
            },
            Signed {
                data: Some(DataDigest { len: 101, ..data }),
                ..signed
            },
            Signed {
                data: Some(DataDigest {
                    sha256: [8; 32],
                    ..data
                }),
                ..signed
            },
            Signed {
                context: b"v2\0",
                ..signed
            },
            Signed {
                data: None,
                ..signed
            },
        ] {
            assert!(!key.public_key().verifies_index(changed, &sig));
        }
    }

    #[test]
    fn key_files() {
        let key = SigningKey::generate().unwrap();
        let (identity, recipient) = crate::secrets::generate_identity();
        let now = jiff::Timestamp::now();
        let both = format!(
            "{}{}",
            crate::secrets::identity_file_text(&identity, &recipient, now),
            signing_key_file_text(&key, now)
        );
        let parsed = parse_key_file(&both).unwrap();
        assert_eq!(parsed.identity.unwrap().recipient(), recipient);
        assert_eq!(parsed.signing.unwrap().public_key(), key.public_key());
        // The age parser still reads a combined file.
        assert_eq!(
            crate::secrets::parse_identity(&both).unwrap().recipient(),
            recipient
        );

        let age_only = crate::secrets::identity_file_text(&identity, &recipient, now);
        assert!(parse_key_file(&age_only).unwrap().signing.is_none());

        let edited = signing_key_file_text(&key, now).replace(
            &key.public_key().to_string(),
            &SigningKey::generate().unwrap().public_key().to_string(),
        );
        assert!(parse_key_file(&edited).is_err());
        assert!(parse_key_file("# nothing\n").is_err());
        assert!(parse_key_file("BERTH-SIGNING-KEY-1zz\n").is_err());
    }
}
