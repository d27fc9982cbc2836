//! What commands print on stdout: lines, aligned tables and JSON. A closed pipe
//! (`coffer user list | head -1`) ends output quietly instead of failing.

use std::io::Write;

use serde::Serialize;

use crate::crypto::{MemberId, PublicIdentity};
use crate::error::{Error, Result};
use crate::format::MemberRecord;

/// Writes one line to stdout.
pub fn line(text: impl AsRef<str>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", text.as_ref()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::Other(format!("cannot write to stdout: {e}"))),
    }
}

/// Writes `value` as one line of JSON.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string(value)
        .map_err(|e| Error::Other(format!("cannot encode JSON output: {e}")))?;
    line(text)
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 < widths.len() {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                s.push_str(cell);
            }
        }
        s.trim_end().to_string()
    };
    let mut lines = vec![render(&mut headers.iter().copied())];
    for row in rows {
        lines.push(render(&mut row.iter().map(String::as_str)));
    }
    lines.join("\n")
}

/// A member as commands report it (`--json` field names are part of the interface).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct MemberOut {
    pub name: String,
    pub id: String,
    pub admin: bool,
    pub public_key: String,
}

impl MemberOut {
    pub fn new(name: &str, public: &PublicIdentity, admin: bool) -> Self {
        MemberOut {
            name: name.to_string(),
            id: public.member_id().to_hex(),
            admin,
            public_key: public.encode(),
        }
    }
}

impl From<&MemberRecord> for MemberOut {
    fn from(r: &MemberRecord) -> Self {
        MemberOut::new(&r.name, &r.public, r.admin)
    }
}

/// An identity as `keygen` and `pubkey` report it.
#[derive(Serialize, Debug)]
pub struct IdentityOut {
    pub name: String,
    pub id: String,
    pub public_key: String,
    pub file: String,
    pub passphrase_protected: bool,
}

impl IdentityOut {
    pub fn new(
        name: &str,
        public: &PublicIdentity,
        file: &std::path::Path,
        protected: bool,
    ) -> Self {
        IdentityOut {
            name: name.to_string(),
            id: MemberId::to_hex(&public.member_id()),
            public_key: public.encode(),
            file: file.display().to_string(),
            passphrase_protected: protected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["NAME", "ADMIN", "KEY"],
            &[
                vec!["alice".into(), "yes".into(), "k1".into()],
                vec!["bo".into(), "no".into(), "k2".into()],
            ],
        );
        assert_eq!(t, "NAME   ADMIN  KEY\nalice  yes    k1\nbo     no     k2");
    }

    #[test]
    fn member_json_fields() {
        let id = crate::crypto::Identity::from_seed([7; 32]);
        let v = serde_json::to_value(MemberOut::new("alice", id.public(), true)).unwrap();
        assert_eq!(v["name"], "alice");
        assert_eq!(v["admin"], true);
        assert_eq!(v["id"], id.member_id().to_hex());
        assert_eq!(v["public_key"], id.public().encode());
    }
}
