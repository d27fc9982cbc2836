//! `coffer-inspect`: prints the decoded structure of a vault and its files
//! (what docs/FORMAT.md describes), for debugging and for tests that tamper
//! with specific files. It needs no identity and decrypts nothing.
//!
//! Signed records are decoded with `Signed::decode_unverified` and shown as
//! `unverified`. Where the vault lists the signer's key, the `signature` field
//! says whether the signature matches it; that is a debugging hint, not
//! verification (no pinned admin key, no rights, no history): use
//! `coffer verify` for that.
//!
//! Exit codes: 0 ok, 2 bad input (usage, missing file, not a vault, newer
//! format), 4 corrupt record, 5 storage I/O error.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use clap::{Parser, Subcommand};

use coffer::crypto::chunk::NONCE_LEN;
use coffer::crypto::wrap::Wrap;
use coffer::crypto::{hex, Identity, MemberId, PublicIdentity};
use coffer::format::data::{DataHeader, Layout, HEADER_LEN};
use coffer::format::identity::{IdentityFile, IdentitySecret};
use coffer::format::signed::SignedBody;
use coffer::format::{
    self, chunks_root, AccessChange, AccessEntry, ChunkRef, DirDefaults, DirRecord, EpochKeys,
    Journal, Kind, LongName, Manifest, MemberRecord, ResealJournal, Right, Signed, VaultConfig,
};
use coffer::history::log::{Checkpoint, Event, LogEntry, CHECKPOINT, MAX_LOG};
use coffer::store::{read_limited, VaultPaths, DIR_RECORD, LONG_NAME_PREFIX, LONG_NAME_SUFFIX};
use coffer::{Error, Result};

/// Largest log record body (`history::log`: an entry of at most 8192 bytes
/// plus the signed envelope).
const MAX_LOG_RECORD: usize = 8192 + 256;

#[derive(Parser)]
#[command(
    name = "coffer-inspect",
    version,
    about = "Print the decoded on-disk structure of a coffer vault (no identity needed; nothing is decrypted)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Vault config, members, sidecar count, history logs and a tree summary.
    Vault {
        vault: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// A file's sidecar (`meta/<aa>/<id>.meta`) or write journal (`.journal`).
    Sidecar {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The header and chunk slots of a content file under `tree/`.
    Data {
        file: PathBuf,
        /// Also list every slot: offset, stored length, nonce and BLAKE3 hash
        /// (compare with the sidecar's chunk list).
        #[arg(long)]
        slots: bool,
        #[arg(long)]
        json: bool,
    },
    /// For each content file under VAULT/tree: backing path, file id, sidecar path
    /// (tab-separated, or --json).
    Locate {
        vault: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Any coffer record file, recognised by its magic bytes (config, member,
    /// directory record, sidecar, journal, long name, identity, checkpoint).
    Record {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// A member's history log (`log/<member id>.log`).
    Log {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

// ---------------------------------------------------------------------------
// An ordered document: JSON for machines, indented text for people.

enum Node {
    Str(String),
    Num(u64),
    Bool(bool),
    Null,
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
}

impl From<&str> for Node {
    fn from(s: &str) -> Node {
        Node::Str(s.to_string())
    }
}
impl From<String> for Node {
    fn from(s: String) -> Node {
        Node::Str(s)
    }
}
impl From<u64> for Node {
    fn from(n: u64) -> Node {
        Node::Num(n)
    }
}
impl From<u32> for Node {
    fn from(n: u32) -> Node {
        Node::Num(n.into())
    }
}
impl From<u16> for Node {
    fn from(n: u16) -> Node {
        Node::Num(n.into())
    }
}
impl From<u8> for Node {
    fn from(n: u8) -> Node {
        Node::Num(n.into())
    }
}
impl From<usize> for Node {
    fn from(n: usize) -> Node {
        Node::Num(n as u64)
    }
}
impl From<bool> for Node {
    fn from(b: bool) -> Node {
        Node::Bool(b)
    }
}
impl<T: Into<Node>> From<Option<T>> for Node {
    fn from(o: Option<T>) -> Node {
        o.map(Into::into).unwrap_or(Node::Null)
    }
}
impl<T: Into<Node>> From<Vec<T>> for Node {
    fn from(v: Vec<T>) -> Node {
        Node::List(v.into_iter().map(Into::into).collect())
    }
}
impl From<MemberId> for Node {
    fn from(m: MemberId) -> Node {
        Node::Str(m.to_hex())
    }
}

macro_rules! map {
    ($($k:expr => $v:expr),* $(,)?) => {
        Node::Map(vec![$(($k.to_string(), Node::from($v))),*])
    };
}

impl Node {
    fn push(&mut self, key: &str, value: impl Into<Node>) {
        if let Node::Map(m) = self {
            m.push((key.to_string(), value.into()));
        }
    }

    fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Node::Str(s) => Value::String(s.clone()),
            Node::Num(n) => Value::from(*n),
            Node::Bool(b) => Value::Bool(*b),
            Node::Null => Value::Null,
            Node::Map(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            Node::List(l) => Value::Array(l.iter().map(Node::to_json).collect()),
        }
    }

    fn scalar(&self) -> Option<String> {
        match self {
            Node::Str(s) => Some(s.clone()),
            Node::Num(n) => Some(n.to_string()),
            Node::Bool(b) => Some(b.to_string()),
            Node::Null => Some("none".into()),
            Node::List(l)
                if l.iter()
                    .all(|n| n.scalar().is_some() && !matches!(n, Node::List(_))) =>
            {
                Some(format!(
                    "[{}]",
                    l.iter()
                        .filter_map(Node::scalar)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
            _ => None,
        }
    }

    /// A map of scalars prints on one line inside lists (chunks, wraps, ...).
    fn one_line(&self) -> Option<String> {
        let Node::Map(m) = self else { return None };
        let parts: Option<Vec<String>> = m
            .iter()
            .map(|(k, v)| v.scalar().map(|s| format!("{k}={s}")))
            .collect();
        parts.map(|p| p.join(" "))
    }

    fn render(&self, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match self {
            Node::Map(m) => {
                for (k, v) in m {
                    match v.scalar() {
                        Some(s) => out.push_str(&format!("{pad}{k}: {s}\n")),
                        None => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            v.render(indent + 2, out);
                        }
                    }
                }
            }
            Node::List(l) => {
                for item in l {
                    if let Some(line) = item.scalar().or_else(|| item.one_line()) {
                        out.push_str(&format!("{pad}- {line}\n"));
                    } else {
                        let mut inner = String::new();
                        item.render(indent + 2, &mut inner);
                        out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", other.scalar().unwrap_or_default())),
        }
    }
}

fn print(node: &Node, json: bool) {
    if json {
        let text = serde_json::to_string_pretty(&node.to_json()).expect("JSON of plain values");
        emit(&(text + "\n"));
    } else {
        let mut s = String::new();
        node.render(0, &mut s);
        emit(&s);
    }
}

/// Writes to stdout; a reader that went away (`| head`) ends the program quietly.
fn emit(s: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("coffer-inspect: writing the output failed: {e}");
        std::process::exit(5);
    }
}

// ---------------------------------------------------------------------------
// Keys the vault lists, for signature hints and member names.

#[derive(Default)]
struct Keys {
    /// Member id → (name, Ed25519 key), from `members/` (decoded unverified).
    members: HashMap<MemberId, (String, [u8; 32])>,
    available: bool,
}

impl Keys {
    /// Reads the member list of the vault that holds `path`, if any.
    fn near(path: &Path) -> Keys {
        let root = path.ancestors().find(|p| VaultPaths::is_vault(p));
        match root {
            Some(r) => Keys::of_vault(&VaultPaths::new(r)),
            None => Keys::default(),
        }
    }

    fn of_vault(paths: &VaultPaths) -> Keys {
        let mut k = Keys::default();
        let Ok(config) = read_config_unverified(paths) else {
            return k;
        };
        k.available = true;
        k.members.insert(
            config.1.admin.member_id(),
            ("(vault admin)".into(), config.1.admin.ed25519),
        );
        for (_, rec) in read_members(paths) {
            if let Ok(Ok(m)) = rec {
                k.members.insert(
                    m.1.public.member_id(),
                    (m.1.name.clone(), m.1.public.ed25519),
                );
            }
        }
        k
    }

    fn check<T: SignedBody>(&self, s: &Signed<T>) -> &'static str {
        if !self.available {
            return "not checked (not inside a vault)";
        }
        check_with(self.members.get(&s.signer).map(|(_, k)| k), s)
    }

    fn names(&self) -> Node {
        let mut v: Vec<_> = self.members.iter().collect();
        v.sort_by(|a, b| a.1 .0.cmp(&b.1 .0));
        Node::Map(
            v.into_iter()
                .map(|(id, (name, _))| (id.to_hex(), Node::from(name.as_str())))
                .collect(),
        )
    }
}

fn check_with<T: SignedBody>(key: Option<&[u8; 32]>, s: &Signed<T>) -> &'static str {
    match key {
        None => "signer not listed in members/",
        Some(k) if s.verify(k).is_ok() => "ok (matches the signer's listed key)",
        Some(_) => "BAD (does not match the signer's listed key)",
    }
}

/// The envelope of a signed record around its decoded body.
fn signed_node<T: SignedBody>(s: &Signed<T>, signature: &str, body: Node) -> Node {
    map! {
        "unverified" => true,
        "signer" => s.signer,
        "signature" => signature,
        "hash" => hex(&s.hash()),
        "body_len" => s.body.len(),
        "body" => body,
    }
}

fn decode_body<T: SignedBody>(s: &Signed<T>) -> Result<T> {
    s.decode_unverified()
}

// ---------------------------------------------------------------------------
// Records.

fn read_record(path: &Path, kind: Kind) -> Result<Vec<u8>> {
    read_limited(path, kind.max_len + 4, kind.name)
}

fn read_config_unverified(paths: &VaultPaths) -> Result<(Signed<VaultConfig>, VaultConfig)> {
    let bytes = read_record(&paths.config(), format::VAULT_CONFIG)?;
    let signed: Signed<VaultConfig> = format::decode_file(format::VAULT_CONFIG, &bytes)?;
    let config = decode_body(&signed)?;
    Ok((signed, config))
}

type MemberRead = Result<Result<(Signed<MemberRecord>, MemberRecord)>>;

/// Every `members/*.member` file, decoded (outer error: unreadable file).
fn read_members(paths: &VaultPaths) -> Vec<(PathBuf, MemberRead)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(paths.members()) else {
        return out;
    };
    let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    files.sort();
    for p in files {
        if p.extension() != Some(OsStr::new("member")) {
            continue;
        }
        let rec = read_record(&p, format::MEMBER).map(|bytes| {
            let signed: Signed<MemberRecord> = format::decode_file(format::MEMBER, &bytes)?;
            let m = decode_body(&signed)?;
            Ok((signed, m))
        });
        out.push((p, rec));
    }
    out
}

fn public_node(p: &PublicIdentity) -> Node {
    map! {
        "member_id" => p.member_id(),
        "public_key" => p.encode(),
        "x25519" => hex(&p.x25519),
        "ed25519" => hex(&p.ed25519),
    }
}

fn wrap_node(w: &Wrap) -> Node {
    map! {
        "recipient" => w.recipient,
        "ephemeral" => hex(&w.ephemeral),
        "sealed_len" => w.sealed.len(),
    }
}

fn config_node(signed: &Signed<VaultConfig>, c: &VaultConfig) -> Node {
    let body = map! {
        "format_version" => c.format_version,
        "vault_id" => hex(&c.vault_id),
        "created_unix" => c.created_unix,
        "admin" => public_node(&c.admin),
        "chunk_log2" => c.chunk_log2,
        "chunk_size" => 1u64.checked_shl(c.chunk_log2.into()),
    };
    signed_node(signed, check_with(Some(&c.admin.ed25519), signed), body)
}

fn member_node(
    signed: &Signed<MemberRecord>,
    m: &MemberRecord,
    admin_key: Option<&[u8; 32]>,
) -> Node {
    let body = map! {
        "format_version" => m.format_version,
        "vault_id" => hex(&m.vault_id),
        "name" => m.name.as_str(),
        "public" => public_node(&m.public),
        "admin" => m.admin,
        "added_by" => m.added_by,
        "added_unix" => m.added_unix,
        "name_key" => wrap_node(&m.name_key),
    };
    let sig = match admin_key {
        Some(k) => check_with(Some(k), signed),
        None => "not checked (no vault config)",
    };
    signed_node(signed, sig, body)
}

fn right_str(r: Right) -> &'static str {
    match r {
        Right::Read => "read",
        Right::Update => "update",
    }
}

fn change_node(c: &AccessChange) -> Node {
    match c {
        AccessChange::Create { readers, updaters } => map! {
            "kind" => "create",
            "readers" => readers.clone(),
            "updaters" => updaters.clone(),
        },
        AccessChange::Grant { member, right } => map! {
            "kind" => "grant",
            "member" => *member,
            "right" => right_str(*right),
        },
        AccessChange::Revoke {
            member,
            right,
            content_pin,
        } => map! {
            "kind" => "revoke",
            "member" => *member,
            "right" => right_str(*right),
            "content_pin" => hex(content_pin),
        },
        AccessChange::Rotate { epoch } => map! { "kind" => "rotate", "epoch" => *epoch },
    }
}

fn access_node(signed: &Signed<AccessEntry>, keys: &Keys) -> Node {
    let body = match decode_body(signed) {
        Ok(e) => map! {
            "file_id" => hex(&e.file_id),
            "seq" => e.seq,
            "prev" => hex(&e.prev),
            "actor" => e.actor,
            "time_unix" => e.time_unix,
            "change" => change_node(&e.change),
        },
        Err(e) => map! { "error" => e.to_string() },
    };
    signed_node(signed, keys.check(signed), body)
}

fn manifest_node(signed: &Signed<Manifest>, keys: &Keys) -> Result<(Node, Manifest)> {
    let m = decode_body(signed)?;
    let body = map! {
        "file_id" => hex(&m.file_id),
        "version" => m.version,
        "prev" => hex(&m.prev),
        "writer" => m.writer,
        "time_unix" => m.time_unix,
        "size" => m.size,
        "chunk_log2" => m.chunk_log2,
        "chunk_count" => m.chunk_count,
        "chunks_root" => hex(&m.chunks_root),
        "epoch" => m.epoch,
        "key_commits" => m.key_commits.iter().map(|(e, c)| map! { "epoch" => *e, "commitment" => hex(c) }).collect::<Vec<_>>(),
        "access_head" => hex(&m.access_head),
    };
    Ok((signed_node(signed, keys.check(signed), body), m))
}

fn epoch_node(k: &EpochKeys) -> Node {
    map! {
        "epoch" => k.epoch,
        "wraps" => k.wraps.iter().map(wrap_node).collect::<Vec<_>>(),
        "earlier_sealed_len" => k.earlier.as_ref().map(Vec::len),
    }
}

fn chunk_node(index: usize, c: &Option<ChunkRef>) -> Node {
    match c {
        None => map! { "index" => index, "hole" => true },
        Some(c) => map! { "index" => index, "epoch" => c.epoch, "hash" => hex(&c.hash) },
    }
}

/// A sidecar file's layout: 3 (two copies) with which is in force, or whole.
fn copies_node(copies: &Option<format::copies::Copies>) -> Node {
    match copies {
        None => map! { "copies" => false },
        Some(c) => map! {
            "copies" => true,
            "capacity" => c.capacity,
            "copy_in_force" => c.current,
            "sequence" => c.seq,
            "other_copy" => format!("{:?}", c.other).to_lowercase(),
        },
    }
}

fn sidecar_node(
    path: &Path,
    (s, pending, copies): &format::SidecarFile,
    keys: &Keys,
) -> Result<Node> {
    let (manifest, m) = manifest_node(&s.manifest, keys)?;
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".meta"))
        .map(|n| n == hex(&s.file_id));
    let root = chunks_root(&s.chunks);
    Ok(map! {
        "kind" => "file sidecar",
        "path" => path.display().to_string(),
        "format_version" => s.format_version,
        "layout" => copies_node(copies),
        "file_id" => hex(&s.file_id),
        "file_name_matches_id" => named,
        "members" => keys.names(),
        "access" => s.access.iter().map(|a| access_node(a, keys)).collect::<Vec<_>>(),
        "keys" => s.keys.iter().map(epoch_node).collect::<Vec<_>>(),
        "manifest" => manifest,
        "chunks" => s.chunks.iter().enumerate().map(|(i, c)| chunk_node(i, c)).collect::<Vec<_>>(),
        // Overwritten chunks a durable commit carries (version 2 only).
        "pending_chunks" => pending.iter().map(|(i, b)| {
            let hash = blake3::hash(b);
            map! {
                "index" => *i,
                "stored_len" => b.len(),
                "hash" => hex(hash.as_bytes()),
                "matches_chunk_list" => matches!(s.chunks.get(*i as usize), Some(Some(r)) if r.hash == *hash.as_bytes()),
            }
        }).collect::<Vec<_>>(),
        // Consistency of the unverified parts, as a reader would check them.
        "consistency" => map! {
            "chunks_root_matches" => root == m.chunks_root,
            "chunk_count_matches" => m.chunk_count == s.chunks.len() as u64,
            "manifest_file_id_matches" => m.file_id == s.file_id,
            // The manifest names the access state its writer saw; later
            // access entries (grants, revocations) do not need a new manifest.
            "access_head_in_access_list" => s.access.iter().any(|a| a.hash() == m.access_head),
        },
    })
}

fn journal_node(path: &Path, j: &Journal) -> Node {
    map! {
        "kind" => "write journal",
        "path" => path.display().to_string(),
        "format_version" => j.format_version,
        "file_id" => hex(&j.file_id),
        "manifest_hash" => hex(&j.manifest_hash),
        "chunks" => j.chunks.iter().map(|(i, b)| map! {
            "index" => *i,
            "stored_len" => b.len(),
            "hash" => hex(blake3::hash(b).as_bytes()),
        }).collect::<Vec<_>>(),
    }
}

fn reseal_journal_node(path: &Path, j: &ResealJournal) -> Node {
    map! {
        "kind" => "re-encryption journal",
        "path" => path.display().to_string(),
        "format_version" => j.format_version,
        "file_id" => hex(&j.file_id),
        "manifest_hash" => hex(&j.manifest_hash),
        "epoch" => j.epoch,
        "old_keys_sealed_len" => j.old_keys.len(),
        "chunks" => j.chunks.iter().map(|c| map! {
            "index" => c.index,
            "old_epoch" => c.old_epoch,
            "old_nonce" => hex(&c.old_nonce),
            "new_nonce" => hex(&c.new_nonce),
        }).collect::<Vec<_>>(),
    }
}

fn dir_record_node(path: &Path, d: &DirRecord, keys: &Keys) -> Node {
    let defaults = d.defaults.as_ref().map(|s: &Signed<DirDefaults>| {
        let body = match decode_body(s) {
            Ok(dd) => map! {
                "dir_id" => hex(&dd.dir_id),
                "readers" => dd.readers,
                "updaters" => dd.updaters,
            },
            Err(e) => map! { "error" => e.to_string() },
        };
        signed_node(s, keys.check(s), body)
    });
    map! {
        "kind" => "directory record",
        "path" => path.display().to_string(),
        "format_version" => d.format_version,
        "dir_id" => hex(&d.dir_id),
        "defaults" => defaults,
    }
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The `~hash` entry name a long name's encrypted bytes stand for.
fn long_entry_name(encrypted: &[u8]) -> String {
    format!(
        "{LONG_NAME_PREFIX}{}",
        B64.encode(&blake3::hash(encrypted).as_bytes()[..24])
    )
}

fn long_name_node(path: &Path, l: &LongName) -> Node {
    let entry = long_entry_name(&l.encrypted);
    let side = format!(".{entry}{LONG_NAME_SUFFIX}");
    map! {
        "kind" => "long name",
        "path" => path.display().to_string(),
        "format_version" => l.format_version,
        "encrypted_len" => l.encrypted.len(),
        "entry_name" => entry,
        "file_name_matches" => path.file_name().map(|n| n.as_bytes() == side.as_bytes()),
    }
}

fn identity_node(path: &Path, f: &IdentityFile) -> Node {
    // Never print the seed: the public half only.
    let secret = match &f.secret {
        IdentitySecret::Unprotected(seed) => {
            let id = Identity::from_seed(*seed);
            map! { "kind" => "unprotected", "public" => public_node(id.public()) }
        }
        IdentitySecret::Passphrase(seal) => map! {
            "kind" => "passphrase (argon2id + XChaCha20-Poly1305)",
            "m_cost_kib" => seal.m_cost_kib,
            "t_cost" => seal.t_cost,
            "p_cost" => seal.p_cost,
            "salt" => hex(&seal.salt),
            "sealed_len" => seal.sealed_seed.len(),
        },
    };
    map! {
        "kind" => "identity file",
        "path" => path.display().to_string(),
        "format_version" => f.format_version,
        "name" => f.name.as_str(),
        "secret" => secret,
    }
}

fn checkpoint_node(path: &Path, s: &Signed<Checkpoint>, keys: &Keys) -> Node {
    let body = match decode_body(s) {
        Ok(c) => map! {
            "format_version" => c.format_version,
            "vault_id" => hex(&c.vault_id),
            "member" => c.member,
            "len" => c.len,
            "head" => hex(&c.head),
            "time_unix" => c.time_unix,
        },
        Err(e) => map! { "error" => e.to_string() },
    };
    map! {
        "kind" => "log checkpoint",
        "path" => path.display().to_string(),
        "checkpoint" => signed_node(s, keys.check(s), body),
    }
}

/// Decodes any magic-prefixed record file.
fn record_node(path: &Path, keys: &Keys) -> Result<Node> {
    let bytes = read_limited(path, format::JOURNAL.max_len + 4, "record")?;
    let magic: [u8; 4] = bytes
        .get(..4)
        .and_then(|m| m.try_into().ok())
        .ok_or_else(|| Error::corrupt("record", "shorter than its magic bytes"))?;
    let is = |k: Kind| k.magic == magic;
    if is(format::SIDECAR) {
        sidecar_node(path, &format::decode_sidecar_file(&bytes)?, keys)
    } else if is(format::JOURNAL) {
        Ok(journal_node(
            path,
            &format::decode_file(format::JOURNAL, &bytes)?,
        ))
    } else if is(format::RESEAL_JOURNAL) {
        Ok(reseal_journal_node(
            path,
            &format::decode_file(format::RESEAL_JOURNAL, &bytes)?,
        ))
    } else if is(format::VAULT_CONFIG) {
        let signed: Signed<VaultConfig> = format::decode_file(format::VAULT_CONFIG, &bytes)?;
        let c = decode_body(&signed)?;
        let mut n = map! { "kind" => "vault config", "path" => path.display().to_string() };
        n.push("config", config_node(&signed, &c));
        Ok(n)
    } else if is(format::MEMBER) {
        let signed: Signed<MemberRecord> = format::decode_file(format::MEMBER, &bytes)?;
        let m = decode_body(&signed)?;
        let admin = path
            .ancestors()
            .find(|p| VaultPaths::is_vault(p))
            .and_then(|r| read_config_unverified(&VaultPaths::new(r)).ok())
            .map(|(_, c)| c.admin.ed25519);
        let mut n = map! { "kind" => "member record", "path" => path.display().to_string() };
        n.push("member", member_node(&signed, &m, admin.as_ref()));
        Ok(n)
    } else if is(format::DIR) {
        Ok(dir_record_node(
            path,
            &format::decode_file(format::DIR, &bytes)?,
            keys,
        ))
    } else if is(format::LONG_NAME) {
        Ok(long_name_node(
            path,
            &format::decode_file(format::LONG_NAME, &bytes)?,
        ))
    } else if is(format::IDENTITY) {
        Ok(identity_node(
            path,
            &format::decode_file(format::IDENTITY, &bytes)?,
        ))
    } else if is(CHECKPOINT) {
        Ok(checkpoint_node(
            path,
            &format::decode_file(
                CHECKPOINT,
                coffer::history::log::checkpoint_in_force(&bytes)?,
            )?,
            keys,
        ))
    } else if &magic == format::data::MAGIC {
        Err(Error::BadInput(format!(
            "{} is a content file; use `coffer-inspect data`",
            path.display()
        )))
    } else {
        Err(Error::corrupt(
            "record",
            format!("unknown magic bytes {}", hex(&magic)),
        ))
    }
}

// ---------------------------------------------------------------------------
// Logs.

fn event_node(e: &Event) -> Node {
    match e {
        Event::FileCreated { file_id } => {
            map! { "type" => "file_created", "file_id" => hex(file_id) }
        }
        Event::ContentVersion {
            file_id,
            version,
            manifest_hash,
            size,
        } => map! {
            "type" => "content_version",
            "file_id" => hex(file_id),
            "version" => *version,
            "manifest_hash" => hex(manifest_hash),
            "size" => *size,
        },
        Event::AccessChanged {
            file_id,
            entry_hash,
            change,
        } => map! {
            "type" => "access_changed",
            "file_id" => hex(file_id),
            "entry_hash" => hex(entry_hash),
            "change" => change_node(change),
        },
        Event::FileDeleted { file_id } => {
            map! { "type" => "file_deleted", "file_id" => hex(file_id) }
        }
        Event::Linked { id, name } => {
            map! { "type" => "linked", "id" => hex(id), "name_tag" => hex(name) }
        }
        Event::Unlinked { id, name } => {
            map! { "type" => "unlinked", "id" => hex(id), "name_tag" => hex(name) }
        }
        Event::MemberAdded { member, name } => map! {
            "type" => "member_added",
            "member" => *member,
            "name" => name.as_str(),
        },
        Event::ForkResolved { file_id, version } => map! {
            "type" => "fork_resolved",
            "file_id" => hex(file_id),
            "version" => *version,
        },
    }
}

struct LogSummary {
    records: Vec<Node>,
    entries: usize,
    valid_len: usize,
    torn_tail: bool,
}

/// Parses `u32 LE length || postcard(Signed<LogEntry>)` records.
fn parse_log(bytes: &[u8], keys: &Keys) -> Result<LogSummary> {
    use coffer::history::log::{check_log_version, LOG_HEADER_LEN, LOG_MAGIC, LOG_VERSION_COVERED};
    // A log starts with `CFRL` and the log version (u16 LE).
    let mut pos = 0usize;
    let mut covers = false;
    if !bytes.is_empty() {
        if bytes.len() < LOG_HEADER_LEN || bytes[..4] != LOG_MAGIC {
            return Err(Error::corrupt(
                "log",
                "missing the CFRL header (not a coffer history log)",
            ));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        check_log_version(version)?;
        covers = version >= LOG_VERSION_COVERED;
        pos = LOG_HEADER_LEN;
    }
    let mut records = Vec::new();
    let mut torn_tail = false;
    while pos < bytes.len() {
        if bytes.len() - pos < 4 {
            torn_tail = true;
            break;
        }
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        if len > MAX_LOG_RECORD {
            return Err(Error::corrupt(
                "log",
                format!("record at byte {pos} claims {len} bytes"),
            ));
        }
        if bytes.len() - pos - 4 < len {
            torn_tail = true;
            break;
        }
        let signed: Signed<LogEntry> =
            format::from_bytes("log record", MAX_LOG_RECORD, &bytes[pos + 4..pos + 4 + len])
                .map_err(|e| Error::corrupt("log", format!("record at byte {pos}: {e}")))?;
        let body = match decode_body(&signed) {
            Ok(e) => map! {
                "vault_id" => hex(&e.vault_id),
                "member" => e.member,
                "seq" => e.seq,
                "prev" => hex(&e.prev),
                "time_ms" => e.time_ms,
                "event" => event_node(&e.event),
            },
            Err(e) => map! { "error" => e.to_string() },
        };
        let mut rec = map! { "offset" => pos, "len" => len };
        let signature = if covers && signed.signature.is_empty() {
            "none: covered by the next signed entry (its chain leads back through this one)"
        } else {
            keys.check(&signed)
        };
        rec.push("entry", signed_node(&signed, signature, body));
        records.push(rec);
        pos += 4 + len;
    }
    Ok(LogSummary {
        entries: records.len(),
        records,
        valid_len: pos,
        torn_tail,
    })
}

fn cmd_log(path: &Path, json: bool) -> Result<()> {
    let keys = Keys::near(path);
    let bytes = read_limited(path, MAX_LOG, "log")?;
    let log = parse_log(&bytes, &keys)?;
    let node = map! {
        "kind" => "history log",
        "path" => path.display().to_string(),
        "members" => keys.names(),
        "entries" => log.entries,
        "bytes" => bytes.len(),
        "torn_tail" => log.torn_tail,
        "records" => log.records,
    };
    print(&node, json);
    Ok(())
}

// ---------------------------------------------------------------------------
// The tree.

#[derive(Default)]
struct TreeStats {
    directories: u64,
    dir_records_missing: u64,
    files: u64,
    symlinks: u64,
    other: u64,
    long_names: u64,
    side_files: u64,
    stored_bytes: u64,
    /// (backing path, file id or header error)
    content: Vec<(PathBuf, Result<[u8; 16]>)>,
}

fn read_header(path: &Path) -> Result<DataHeader> {
    let f = coffer::store::open_regular_read(path).map_err(|e| io_error(path, e))?;
    let mut h = [0u8; HEADER_LEN as usize];
    let mut got = 0;
    while got < h.len() {
        match f.read_at(&mut h[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    DataHeader::decode(&h[..got])
}

fn walk_tree(dir: &Path, stats: &mut TreeStats) -> Result<()> {
    stats.directories += 1;
    if !dir.join(DIR_RECORD).is_file() {
        stats.dir_records_missing += 1;
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        if coffer::store::is_internal_name(&name) {
            if name.ends_with(LONG_NAME_SUFFIX.as_bytes()) {
                stats.side_files += 1;
            }
            continue;
        }
        if name.starts_with(LONG_NAME_PREFIX.as_bytes()) {
            stats.long_names += 1;
        }
        let m = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
        if m.is_dir() {
            walk_tree(&p, stats)?;
        } else if m.file_type().is_symlink() {
            stats.symlinks += 1;
        } else if m.is_file() {
            stats.files += 1;
            stats.stored_bytes += m.len();
            let id = read_header(&p).map(|h| h.file_id);
            stats.content.push((p, id));
        } else {
            stats.other += 1;
        }
    }
    Ok(())
}

fn open_vault(root: &Path) -> Result<VaultPaths> {
    if !VaultPaths::is_vault(root) {
        return Err(Error::BadInput(format!(
            "{} is not a coffer vault (no {})",
            root.display(),
            coffer::store::CONFIG_FILE
        )));
    }
    Ok(VaultPaths::new(root))
}

/// Sidecar and journal files under `meta/`, by file id.
fn meta_files(paths: &VaultPaths) -> (Vec<[u8; 16]>, Vec<[u8; 16]>, u64) {
    let (mut sidecars, mut journals, mut other) = (Vec::new(), Vec::new(), 0);
    let Ok(rd) = std::fs::read_dir(paths.meta()) else {
        return (sidecars, journals, other);
    };
    for fan in rd.flatten() {
        let Ok(files) = std::fs::read_dir(fan.path()) else {
            other += 1;
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(id) = name
                .strip_suffix(".meta")
                .and_then(coffer::crypto::unhex::<16>)
            {
                sidecars.push(id);
            } else if let Some(id) = name
                .strip_suffix(".journal")
                .and_then(coffer::crypto::unhex::<16>)
            {
                journals.push(id);
            } else {
                other += 1;
            }
        }
    }
    (sidecars, journals, other)
}

fn cmd_vault(root: &Path, json: bool) -> Result<()> {
    let paths = open_vault(root)?;
    let (signed, config) = read_config_unverified(&paths)?;
    let keys = Keys::of_vault(&paths);
    let members: Vec<Node> = read_members(&paths)
        .into_iter()
        .map(|(p, rec)| {
            let file = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match rec {
                Ok(Ok((s, m))) => {
                    let mut n = member_node(&s, &m, Some(&config.admin.ed25519));
                    n.push("file", file.clone());
                    n.push(
                        "file_name_matches_id",
                        file == format!("{}.member", m.public.member_id().to_hex()),
                    );
                    n
                }
                Ok(Err(e)) | Err(e) => map! { "file" => file, "error" => e.to_string() },
            }
        })
        .collect();
    let mut stats = TreeStats::default();
    walk_tree(&paths.tree(), &mut stats)?;
    let root_dir_id = read_record(&paths.tree().join(DIR_RECORD), format::DIR)
        .and_then(|b| format::decode_file::<DirRecord>(format::DIR, &b))
        .map(|d| hex(&d.dir_id));
    let (sidecars, journals, other_meta) = meta_files(&paths);
    let ids: std::collections::HashSet<[u8; 16]> = stats
        .content
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().copied())
        .collect();
    let without_file = sidecars.iter().filter(|id| !ids.contains(*id)).count();
    let without_sidecar = ids.iter().filter(|id| !paths.sidecar(id).is_file()).count();
    let bad_headers = stats.content.iter().filter(|(_, r)| r.is_err()).count();

    let mut logs = Vec::new();
    if let Ok(rd) = std::fs::read_dir(paths.log()) {
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for p in files
            .into_iter()
            .filter(|p| p.extension() == Some(OsStr::new("log")))
        {
            let member = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = coffer::crypto::unhex::<16>(&member)
                .and_then(|id| keys.members.get(&MemberId(id)))
                .map(|(n, _)| n.clone());
            let head = p.with_extension("head");
            let checkpoint = read_record(&head, CHECKPOINT)
                .and_then(|b| {
                    let record = coffer::history::log::checkpoint_in_force(&b)?;
                    format::decode_file::<Signed<Checkpoint>>(CHECKPOINT, record)
                })
                .and_then(|s| decode_body(&s))
                .map(|c| map! { "len" => c.len, "head" => hex(&c.head) });
            let mut n = map! { "member" => member, "name" => name };
            match read_limited(&p, MAX_LOG, "log")
                .and_then(|b| parse_log(&b, &keys).map(|l| (b.len(), l)))
            {
                Ok((len, l)) => {
                    n.push("entries", l.entries);
                    n.push("bytes", len);
                    n.push("torn_tail", l.torn_tail);
                    n.push("valid_bytes", l.valid_len);
                }
                Err(e) => n.push("error", e.to_string()),
            }
            n.push(
                "checkpoint",
                match checkpoint {
                    Ok(c) => c,
                    Err(Error::NotFound(_)) => Node::Null,
                    Err(e) => map! { "error" => e.to_string() },
                },
            );
            logs.push(n);
        }
    }

    let node = map! {
        "kind" => "vault",
        "path" => root.display().to_string(),
        "config" => config_node(&signed, &config),
        "members" => members,
        "sidecars" => sidecars.len(),
        "journals" => journals.len(),
        "other_files_in_meta" => other_meta,
        "tree" => map! {
            "root_dir_id" => root_dir_id.unwrap_or_else(|e| format!("error: {e}")),
            "directories" => stats.directories,
            "directories_without_record" => stats.dir_records_missing,
            "content_files" => stats.files,
            "content_files_with_bad_header" => bad_headers,
            "stored_bytes" => stats.stored_bytes,
            "symlinks" => stats.symlinks,
            "other_entries" => stats.other,
            "long_names" => stats.long_names,
            "long_name_side_files" => stats.side_files,
            "content_files_without_sidecar" => without_sidecar,
            "sidecars_without_content_file" => without_file,
        },
        "logs" => logs,
    };
    print(&node, json);
    Ok(())
}

fn cmd_locate(root: &Path, json: bool) -> Result<()> {
    let paths = open_vault(root)?;
    let mut stats = TreeStats::default();
    walk_tree(&paths.tree(), &mut stats)?;
    let mut failed = None;
    let mut rows = Vec::new();
    for (backing, id) in &stats.content {
        match id {
            Ok(id) => {
                let sidecar = paths.sidecar(id);
                let journal = paths.journal(id);
                if !json {
                    emit(&format!(
                        "{}\t{}\t{}\n",
                        backing.display(),
                        hex(id),
                        sidecar.display()
                    ));
                }
                rows.push(map! {
                    "backing" => backing.display().to_string(),
                    "file_id" => hex(id),
                    "sidecar" => sidecar.display().to_string(),
                    "sidecar_exists" => sidecar.is_file(),
                    "journal" => journal.is_file().then(|| journal.display().to_string()),
                });
            }
            Err(e) => {
                rows.push(
                    map! { "backing" => backing.display().to_string(), "error" => e.to_string() },
                );
                failed.get_or_insert_with(|| {
                    Error::corrupt("content file", format!("{}: {e}", backing.display()))
                });
            }
        }
    }
    if json {
        print(&Node::List(rows), true);
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn cmd_sidecar(path: &Path, json: bool) -> Result<()> {
    let keys = Keys::near(path);
    let bytes = read_limited(path, format::JOURNAL.max_len + 4, "file sidecar")?;
    let node = if bytes.starts_with(&format::SIDECAR.magic) {
        sidecar_node(path, &format::decode_sidecar_file(&bytes)?, &keys)?
    } else if bytes.starts_with(&format::JOURNAL.magic) {
        journal_node(path, &format::decode_file(format::JOURNAL, &bytes)?)
    } else if bytes.starts_with(&format::RESEAL_JOURNAL.magic) {
        reseal_journal_node(path, &format::decode_file(format::RESEAL_JOURNAL, &bytes)?)
    } else {
        return Err(Error::corrupt(
            "file sidecar",
            "wrong magic bytes (neither a sidecar nor a journal)",
        ));
    };
    print(&node, json);
    Ok(())
}

fn cmd_data(path: &Path, slots: bool, json: bool) -> Result<()> {
    let header = read_header(path)?;
    let f = coffer::store::open_regular_read(path).map_err(|e| io_error(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let layout = Layout {
        chunk_log2: header.chunk_log2,
    };
    let plain = layout.plain_len(len);
    let count = layout.chunk_count(plain);
    let sidecar = path
        .ancestors()
        .find(|p| VaultPaths::is_vault(p))
        .map(|r| VaultPaths::new(r).sidecar(&header.file_id));
    let mut node = map! {
        "kind" => "content file",
        "path" => path.display().to_string(),
        "header" => map! {
            "magic" => String::from_utf8_lossy(format::data::MAGIC).into_owned(),
            "format_version" => header.format_version,
            "chunk_log2" => header.chunk_log2,
            "file_id" => hex(&header.file_id),
        },
        "file_len" => len,
        "chunk_size" => layout.chunk_size(),
        "slot_size" => layout.slot_size(),
        "slots" => count,
        "implied_plain_size" => plain,
        // False when the length is not one a commit leaves (a torn or tampered tail).
        "length_is_canonical" => layout.stored_len(plain) == len,
        "sidecar" => sidecar.as_ref().map(|s| s.display().to_string()),
        "sidecar_exists" => sidecar.as_ref().map(|s| s.is_file()),
    };
    if slots {
        let mut list = Vec::new();
        for i in 0..count {
            let want = layout.chunk_plain_len(plain, i) + coffer::crypto::chunk::OVERHEAD;
            let mut buf = vec![0u8; want];
            let off = layout.slot_offset(i);
            f.read_exact_at(&mut buf, off)
                .map_err(|e| Error::io(path, e))?;
            let zero = buf.iter().all(|b| *b == 0);
            list.push(map! {
                "index" => i,
                "offset" => off,
                "stored_len" => want,
                "nonce" => hex(&buf[..NONCE_LEN]),
                "hash" => hex(blake3::hash(&buf).as_bytes()),
                "all_zero" => zero,
            });
        }
        node.push("slot_list", list);
    }
    print(&node, json);
    Ok(())
}

fn cmd_record(path: &Path, json: bool) -> Result<()> {
    let keys = Keys::near(path);
    let node = record_node(path, &keys)?;
    print(&node, json);
    Ok(())
}

/// A missing or unreadable input path is bad input (exit 2), not a storage failure.
fn io_error(path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(format!("{} not found", path.display())),
        std::io::ErrorKind::IsADirectory => {
            Error::BadInput(format!("{} is a directory", path.display()))
        }
        // Asked to inspect a directory or FIFO by name: a usage error here.
        _ if coffer::store::is_not_regular(&e) => {
            Error::BadInput(format!("{} is not a regular file", path.display()))
        }
        _ => Error::io(path, e),
    }
}

fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::IsADirectory => 2,
        Error::Io { source, .. } if source.raw_os_error() == Some(libc::EISDIR) => 2,
        other => other.exit_code() as u8,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Cmd::Vault { vault, json } => cmd_vault(vault, *json),
        Cmd::Sidecar { file, json } => cmd_sidecar(file, *json),
        Cmd::Data { file, slots, json } => cmd_data(file, *slots, *json),
        Cmd::Locate { vault, json } => cmd_locate(vault, *json),
        Cmd::Record { file, json } => cmd_record(file, *json),
        Cmd::Log { file, json } => cmd_log(file, *json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = match &e {
                Error::Io { path, source } if source.raw_os_error() == Some(libc::EISDIR) => {
                    format!("{} is a directory; give a file", path.display())
                }
                other => other.to_string().replace('\n', " "),
            };
            eprintln!("coffer-inspect: {msg}");
            ExitCode::from(exit_code(&e))
        }
    }
}
