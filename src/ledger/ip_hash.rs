//! Keyed hashing of client IP addresses for the ledger's `ip_hash` column.
//!
//! A plain SHA-256 of an IPv4 address is reversible by trying all 2^32 addresses, so the ledger
//! stores HMAC-SHA256 under a server secret instead: the same address hashes the same way across
//! restarts (rows stay comparable), and without the key the hash reveals nothing. The key is 32
//! random bytes kept in a file beside the database, created with mode 0600 on first start.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub struct IpHasher {
    key: [u8; 32],
}

impl IpHasher {
    /// Reads the key from `path` (64 hex characters), creating it when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<IpHasher, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => IpHasher::from_hex(text.trim())
                .ok_or_else(|| format!("{}: expected 64 hex characters", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                write_private(path, hex::encode(key).as_bytes())
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                Ok(IpHasher { key })
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn from_hex(text: &str) -> Option<IpHasher> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text, &mut key).ok()?;
        Some(IpHasher { key })
    }

    /// 128 bits of HMAC-SHA256(key, address), in hex.
    pub fn hash(&self, ip: IpAddr) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        match ip {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// A secret for `purpose`, derived from this process's key file: every process started on
    /// the same data directory derives the same one. The gateway's internal secret (proxy →
    /// sidecar, run worker → proxy) comes from here, so during a zero-downtime upgrade the old
    /// process's run workers and the new process's proxy still recognise each other.
    pub fn derive_secret(&self, purpose: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(b"exoclaw derived secret\0");
        mac.update(purpose.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_keyed_stable_and_not_the_plain_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ip_hash.key");
        let a = IpHasher::load_or_create(&path).unwrap();
        let b = IpHasher::load_or_create(&path).unwrap();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(a.hash(ip), b.hash(ip), "the key persists across restarts");
        assert_eq!(a.hash(ip).len(), 32);
        let other = IpHasher::from_hex(&"00".repeat(32)).unwrap();
        assert_ne!(a.hash(ip), other.hash(ip));
        use sha2::Digest;
        let plain = hex::encode(&sha2::Sha256::digest([203u8, 0, 113, 7])[..16]);
        assert_ne!(a.hash(ip), plain);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
