//! Envelope encryption of the private keys the store keeps (tenant CA keys,
//! policy-signing keys, the installation CA): each value is encrypted with a
//! fresh data key, and the data key with the master key, which lives in a
//! file outside the database. A stolen database or backup alone signs
//! nothing.
//!
//! A sealed value is one line of text, so both backends keep it in the
//! columns they already have:
//! `rampart-sealed:v1:<master key id>:<wrapped data key>:<ciphertext>`
//! (base64, nonce first). The context a value belongs to (`tenant:<id>:ca_key`)
//! is bound in as associated data, so a sealed value copied into another row
//! does not open.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

const PREFIX: &str = "rampart-sealed:v1:";
const NONCE_LEN: usize = 24;

/// One master key (key-encryption key) and its id: the first 8 bytes of the
/// SHA-256 of the key, in hex, stored with every value it seals so the right
/// key is picked while a rotation is under way.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    key: Key,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        MasterKey::from_key(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    fn from_key(key: Key) -> MasterKey {
        let digest = Sha256::digest(key.as_slice());
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        MasterKey { id, key }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Reads a key file: 64 hex characters (surrounding white space is
    /// ignored). A file others can read is refused: the key must be kept
    /// at least as well as the database it protects.
    pub fn read(path: &Path) -> Result<MasterKey> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path)
                .with_context(|| format!("cannot read the master key file {}", path.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                bail!(
                    "the master key file {} is readable by others (mode {:o}); run chmod 600 on it",
                    path.display(),
                    mode & 0o777
                );
            }
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the master key file {}", path.display()))?;
        let text = text.trim();
        let bytes = decode_hex(text)
            .filter(|b| b.len() == 32)
            .with_context(|| {
                format!(
                    "the master key file {} must hold 64 hexadecimal characters",
                    path.display()
                )
            })?;
        Ok(MasterKey::from_key(*Key::from_slice(&bytes)))
    }

    /// Writes the key to a new file with mode 0600; fails if it exists.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .with_context(|| format!("cannot create the master key file {}", path.display()))?;
        let hex: String = self.key.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(file, "{hex}")?;
        file.sync_all()?;
        Ok(())
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// Where a rotation keeps the new key until every value is sealed with it.
pub fn next_key_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

/// The master key that seals new values, and the ones that may still have
/// sealed old values (only while a rotation is under way).
#[derive(Clone, Debug)]
pub struct Keyring {
    primary: MasterKey,
    older: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(primary: MasterKey) -> Keyring {
        Keyring {
            primary,
            older: Vec::new(),
        }
    }

    /// `primary` seals; `older` only opens.
    pub fn rotating(primary: MasterKey, older: MasterKey) -> Keyring {
        Keyring {
            primary,
            older: vec![older],
        }
    }

    /// The key file at `path`, created (0600) on the very first start. A
    /// `<path>.next` left by an interrupted rotation is the primary key then,
    /// and the key at `path` still opens what it had sealed.
    pub fn load_or_create(path: &Path) -> Result<Keyring> {
        let next = next_key_path(path);
        if !path.exists() {
            if next.exists() {
                bail!(
                    "{} is missing but {} exists: an interrupted rotation; rename it to the former",
                    path.display(),
                    next.display()
                );
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let key = MasterKey::generate();
            key.write_new(path)?;
            tracing::info!(path = %path.display(), "created the master key; back it up apart from the database");
            return Ok(Keyring::new(key));
        }
        let current = MasterKey::read(path)?;
        if next.exists() {
            return Ok(Keyring::rotating(MasterKey::read(&next)?, current));
        }
        Ok(Keyring::new(current))
    }

    pub fn primary_id(&self) -> &str {
        &self.primary.id
    }

    /// Encrypts `plain` for `context` under a fresh data key.
    pub fn seal(&self, context: &str, plain: &str) -> Result<String> {
        let data_key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let wrapped = encrypt(&self.primary.key, context.as_bytes(), data_key.as_slice())?;
        let body = encrypt(&data_key, context.as_bytes(), plain.as_bytes())?;
        Ok(format!(
            "{PREFIX}{}:{}:{}",
            self.primary.id,
            B64.encode(wrapped),
            B64.encode(body)
        ))
    }

    /// Decrypts a sealed value of `context`. A value that is not sealed (a
    /// database from before encryption) is returned as it is, so it can be
    /// sealed at the next start.
    pub fn open(&self, context: &str, stored: &str) -> Result<String> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let mut parts = rest.splitn(3, ':');
        let (Some(id), Some(wrapped), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("a sealed value of {context} is malformed");
        };
        let key = std::iter::once(&self.primary)
            .chain(&self.older)
            .find(|k| k.id == id)
            .with_context(|| {
                format!(
                    "{context} is sealed with master key {id}, but the key file holds {}",
                    self.primary.id
                )
            })?;
        let wrapped = B64.decode(wrapped).context("sealed data key")?;
        let body = B64.decode(body).context("sealed value")?;
        let data_key = decrypt(&key.key, context.as_bytes(), &wrapped)
            .with_context(|| format!("the data key of {context} does not open"))?;
        if data_key.len() != 32 {
            bail!("the data key of {context} is malformed");
        }
        let plain = decrypt(Key::from_slice(&data_key), context.as_bytes(), &body)
            .with_context(|| format!("{context} does not open with its data key"))?;
        String::from_utf8(plain).with_context(|| format!("{context} is not text"))
    }

    /// Whether `stored` needs sealing again: not sealed, or sealed with a
    /// key other than the primary one.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split(':').next())
            .is_none_or(|id| id != self.primary.id)
    }
}

fn encrypt(key: &Key, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = XChaCha20Poly1305::new(key)
        .encrypt(&nonce, Payload { msg: plain, aad })
        .map_err(|_| anyhow::anyhow!("encryption failed"))?;
    let mut out = nonce.to_vec();
    out.extend(sealed);
    Ok(out)
}

fn decrypt(key: &Key, aad: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    if data.len() < NONCE_LEN {
        bail!("too short");
    }
    let (nonce, sealed) = data.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key)
        .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
        .map_err(|_| anyhow::anyhow!("authentication failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let ring = Keyring::new(MasterKey::generate());
        let sealed = ring.seal("tenant:t1:ca_key", "PRIVATE").expect("seal");
        assert!(!sealed.contains("PRIVATE"), "{sealed}");
        assert_eq!(
            ring.open("tenant:t1:ca_key", &sealed).expect("open"),
            "PRIVATE"
        );
        assert!(ring.open("tenant:t2:ca_key", &sealed).is_err());
        let other = Keyring::new(MasterKey::generate());
        assert!(other.open("tenant:t1:ca_key", &sealed).is_err());
        // A rotation in progress opens both.
        let next = MasterKey::generate();
        let rotating = Keyring::rotating(next, ring.primary.clone());
        assert!(rotating.needs_reseal(&sealed));
        assert_eq!(
            rotating.open("tenant:t1:ca_key", &sealed).expect("open"),
            "PRIVATE"
        );
        let resealed = rotating.seal("tenant:t1:ca_key", "PRIVATE").expect("seal");
        assert!(!rotating.needs_reseal(&resealed));
        assert!(ring.needs_reseal("plain text"));
        assert_eq!(ring.open("x", "plain text").expect("legacy"), "plain text");
    }

    #[test]
    fn key_files_are_created_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("rampart-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("master.key");
        let ring = Keyring::load_or_create(&path).expect("create");
        let again = Keyring::load_or_create(&path).expect("read");
        assert_eq!(ring.primary_id(), again.primary_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let err = Keyring::load_or_create(&path).expect_err("world-readable");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
