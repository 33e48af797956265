//! Windows only: reading and writing `HKEY_LOCAL_MACHINE` values with the
//! `winreg` crate. Everything that decides *what* to write is pure code
//! elsewhere (`render.rs`, `ledger.rs`); this is only the I/O.

use std::io;

use winreg::enums::{RegType, HKEY_LOCAL_MACHINE, KEY_QUERY_VALUE, KEY_SET_VALUE};
use winreg::types::FromRegValue;
use winreg::RegKey;

use super::map::RegData;

/// HKLM, with every key placed below `base` (empty: the real keys).
pub struct Hklm {
    base: String,
}

impl Hklm {
    pub fn new(base: &str) -> Hklm {
        Hklm {
            base: base.to_string(),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.base.is_empty() {
            key.to_string()
        } else {
            format!(r"{}\{key}", self.base)
        }
    }

    /// What is at `key\name`; `None` when the key or value is absent.
    pub fn get(&self, key: &str, name: &str) -> io::Result<Option<RegData>> {
        let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
        let k = match hklm.open_subkey_with_flags(self.path(key), KEY_QUERY_VALUE) {
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let raw = match k.get_raw_value(name) {
            Ok(raw) => raw,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(match raw.vtype {
            RegType::REG_DWORD => {
                let bytes: [u8; 4] = raw
                    .bytes
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short REG_DWORD"))?;
                RegData::Dword(u32::from_le_bytes(bytes))
            }
            RegType::REG_SZ | RegType::REG_EXPAND_SZ => RegData::Sz(String::from_reg_value(&raw)?),
            // Another type where Rampart wrote a DWORD or a string: a
            // hand-made change; shown as what it is.
            other => RegData::Sz(format!("<{other:?}>")),
        }))
    }

    pub fn set(&self, key: &str, name: &str, data: &RegData) -> io::Result<()> {
        let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
        let (k, _) = hklm.create_subkey(self.path(key))?;
        match data {
            RegData::Dword(n) => k.set_value(name, n),
            RegData::Sz(s) => k.set_value(name, s),
        }
    }

    /// Deletes `key\name`; an absent value or key is not an error.
    pub fn delete(&self, key: &str, name: &str) -> io::Result<()> {
        let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
        let k = match hklm.open_subkey_with_flags(self.path(key), KEY_SET_VALUE) {
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match k.delete_value(name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
