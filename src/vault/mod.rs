//! A vault opened as one member: config, members, the name key, and the
//! operations that create and open encrypted files and directories.

pub mod bindings;
pub mod file;
pub mod fork;
pub mod names;
pub mod pin;
pub mod resolve;
pub mod seen;
pub mod share;
pub mod verify;
pub mod vouched;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::access::KeyLookup;
use crate::crypto::names::NameCipher;
use crate::crypto::wrap;
use crate::crypto::{Identity, MemberId, PublicIdentity, SecretKey};
use crate::error::{Error, Result};
use crate::format::{self, DirRecord, MemberRecord, Signed, VaultConfig, FORMAT_VERSION};
use crate::store::{atomic_write, read_limited, Durability, VaultPaths, DIR_RECORD};

pub use file::OpenFile;

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// History events a batch holds back at most (see [`Vault::record_all`]).
pub const LOG_BATCH: usize = 4096;

/// Default plaintext chunk size: 64 KiB (see docs/BENCHMARKS.md for the measurement).
pub const DEFAULT_CHUNK_LOG2: u8 = 16;

pub struct Vault {
    pub paths: VaultPaths,
    pub config: VaultConfig,
    pub me: Identity,
    members: RwLock<HashMap<MemberId, MemberRecord>>,
    names: NameCipher,
    pub read_only: bool,
    /// Durable commits may carry small overwrites in the sidecar (FORMAT.md,
    /// "Pending chunks"): set by a mount, whose flusher folds them back; a
    /// command exits before it could, so it keeps the journal.
    pub carry_pending: std::sync::atomic::AtomicBool,
    /// What this machine has seen of each file (rollback and fork detection).
    pub seen: seen::SeenState,
    /// This member's signed history log.
    log: std::sync::Mutex<crate::history::log::LogWriter>,
    /// Entry → id bindings from all members' logs.
    bindings: std::sync::Mutex<bindings::BindingIndex>,
    /// Sidecars verified since they last changed.
    verified: std::sync::Mutex<file::VerifiedCache>,
    /// Signatures this machine checked before, across processes.
    vouched: vouched::VouchedSignatures,
    /// Key wrapping with one ephemeral per recipient (see `WrapSession`).
    pub(crate) wraps: wrap::WrapSession,
    /// X25519 results by ephemeral key, for stanzas wrapped in one session.
    pub(crate) unwraps: wrap::UnwrapCache,
    /// See [`Vault::set_batch`].
    batch: std::sync::atomic::AtomicBool,
    /// History events held back in batch mode (see [`Vault::record_all`]).
    pending_log: std::sync::Mutex<Vec<crate::history::log::Event>>,
    /// Sidecar fan-out directories (by first byte of the file id) this
    /// process made or found: a file's first sidecar needs no `mkdir` then.
    meta_dirs_made: [std::sync::atomic::AtomicU64; 4],
    /// Directory records (and verified defaults) by record path, with the stamp
    /// of the record file they were read at.
    #[allow(clippy::type_complexity)]
    dir_cache: std::sync::Mutex<
        HashMap<
            PathBuf,
            (
                (u64, i64, i64, i64, i64, u64),
                DirRecord,
                Option<format::DirDefaults>,
            ),
        >,
    >,
}

impl KeyLookup for Vault {
    fn ed25519_of(&self, id: &MemberId) -> Option<[u8; 32]> {
        if let Some(m) = self
            .members
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
        {
            return Some(m.public.ed25519);
        }
        // A member added since we loaded: reload once.
        let _ = self.reload_members();
        self.members
            .read()
            .unwrap()
            .get(id)
            .map(|m| m.public.ed25519)
    }

    fn vouched(&self, ed25519: &[u8; 32], domain: &[u8], record: &[u8; 32]) -> bool {
        self.vouched.contains(ed25519, domain, record)
    }

    fn vouch(&self, ed25519: &[u8; 32], domain: &[u8], record: &[u8; 32]) {
        self.vouched.insert(ed25519, domain, record);
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        self.save_state();
    }
}

impl Vault {
    /// Creates a new vault at `root` with `admin` as its first member.
    pub fn init(root: &Path, admin: Identity, admin_name: &str) -> Result<Vault> {
        if root.exists() {
            let mut entries = fs::read_dir(root).map_err(|e| Error::io(root, e))?;
            if entries.next().is_some() {
                return Err(Error::BadInput(format!(
                    "{} is not empty; init needs a new or empty directory",
                    root.display()
                )));
            }
        }
        validate_member_name(admin_name)?;
        let paths = VaultPaths::new(root);
        let config = VaultConfig {
            format_version: FORMAT_VERSION,
            vault_id: crate::crypto::random_bytes(),
            created_unix: now_unix(),
            admin: *admin.public(),
            chunk_log2: DEFAULT_CHUNK_LOG2,
        };
        let name_key = SecretKey::generate();
        let admin_id = admin.member_id();
        for d in [
            paths.root.clone(),
            paths.members(),
            paths.meta(),
            paths.tree(),
            paths.log(),
        ] {
            fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        let vouched = vouched::VouchedSignatures::load(&config.vault_id, &admin);
        let vault = Vault {
            names: NameCipher::new(&name_key),
            paths,
            config: config.clone(),
            me: admin,
            members: RwLock::new(HashMap::new()),
            read_only: false,
            carry_pending: Default::default(),
            seen: seen::SeenState::load(&config.vault_id)?,
            log: std::sync::Mutex::new(crate::history::log::LogWriter::new(
                root.join(crate::store::LOG_DIR),
                config.vault_id,
                admin_id,
            )),
            bindings: Default::default(),
            verified: Default::default(),
            vouched,
            wraps: Default::default(),
            unwraps: Default::default(),
            batch: Default::default(),
            pending_log: Default::default(),
            meta_dirs_made: Default::default(),
            dir_cache: Default::default(),
        };
        vault.write_member(admin_name, vault.me.public(), true, &name_key)?;
        vault.write_dir_record(&vault.paths.tree())?;
        let signed = Signed::sign(&config, &vault.me);
        // The config goes last: a directory without it is not a vault yet.
        atomic_write(
            &vault.paths.config(),
            &format::encode_file(format::VAULT_CONFIG, &signed),
            Durability::Sync,
        )?;
        pin::check_and_update(&config, &vault.me.member_id())?;
        vault.reload_members()?;
        Ok(vault)
    }

    /// Opens an existing vault as `me`.
    pub fn open(root: &Path, me: Identity, read_only: bool) -> Result<Vault> {
        let paths = VaultPaths::new(root);
        if !VaultPaths::is_vault(root) {
            return Err(Error::BadInput(format!(
                "{} is not a coffer vault (no {}); create one with `coffer init`",
                root.display(),
                crate::store::CONFIG_FILE
            )));
        }
        let config = read_config(&paths)?;
        pin::check_and_update(&config, &me.member_id())?;
        let record = read_member(&paths, &config, &me.member_id()).map_err(|e| match e {
            Error::NotFound(_) => Error::AccessDenied(format!(
                "identity {} is not a member of this vault; ask the vault admin to run `coffer user add`",
                me.member_id()
            )),
            other => other,
        })?;
        if record.public != *me.public() {
            return Err(Error::integrity(
                "member record does not match this identity's public key",
            ));
        }
        let seen = seen::SeenState::load(&config.vault_id)?;
        let (paths_log, config_id, me_id) = (paths.log(), config.vault_id, me.member_id());
        let name_key =
            wrap::unwrap(&record.name_key, &me, &config.vault_id, 0).ok_or_else(|| {
                Error::integrity("cannot unwrap the vault name key from this member's record")
            })?;
        let vouched = vouched::VouchedSignatures::load(&config_id, &me);
        let vault = Vault {
            names: NameCipher::new(&name_key),
            paths,
            config,
            me,
            members: RwLock::new(HashMap::new()),
            read_only,
            carry_pending: Default::default(),
            seen,
            log: std::sync::Mutex::new(crate::history::log::LogWriter::new(
                paths_log, config_id, me_id,
            )),
            bindings: Default::default(),
            verified: Default::default(),
            vouched,
            wraps: Default::default(),
            unwraps: Default::default(),
            batch: Default::default(),
            pending_log: Default::default(),
            meta_dirs_made: Default::default(),
            dir_cache: Default::default(),
        };
        vault.reload_members()?;
        Ok(vault)
    }

    /// Batch mode for commands that change many files (`-r`, `migrate`): each
    /// change is written without fsync and [`Vault::sync`] makes all of them
    /// durable at once at the end. Atomicity is unchanged.
    pub fn set_batch(&self, on: bool) {
        self.batch.store(on, std::sync::atomic::Ordering::Relaxed);
        if !on {
            if let Err(e) = self.flush_log() {
                log::warn!("could not append to the history log: {e}");
            }
        }
    }

    /// How access changes and re-encryptions are written.
    pub fn change_durability(&self) -> Durability {
        if self.batch.load(std::sync::atomic::Ordering::Relaxed) {
            Durability::Lazy
        } else {
            Durability::Sync
        }
    }

    /// Flushes everything written to the vault's filesystem to stable storage.
    pub fn sync(&self) -> Result<()> {
        self.flush_log()?;
        crate::store::sync::syncfs(&self.paths.root).map_err(|e| Error::io(&self.paths.root, e))
    }

    /// Appends an event to this member's signed log (nothing on read-only opens).
    pub fn record(&self, event: crate::history::log::Event) -> Result<()> {
        self.record_all(vec![event])
    }

    /// Appends several events in one write. In batch mode events are held
    /// back and appended together (every [`LOG_BATCH`] events and at
    /// [`Vault::sync`]): one write for many files instead of one each. The log
    /// then lags the sidecars, never leads them, which is the state a crash
    /// between a commit and its log append leaves anyway.
    pub fn record_all(&self, events: Vec<crate::history::log::Event>) -> Result<()> {
        if self.read_only || events.is_empty() {
            return Ok(());
        }
        if self.batch.load(std::sync::atomic::Ordering::Relaxed) {
            let mut pending = crate::lock(&self.pending_log);
            pending.extend(events);
            if pending.len() < LOG_BATCH {
                return Ok(());
            }
            let all = std::mem::take(&mut *pending);
            // The log is taken before the pending lock is let go, so batches
            // reach it in order; the other workers go on queueing while this
            // one signs thousands of entries.
            let log = crate::lock(&self.log);
            drop(pending);
            return self.append_with(log, all);
        }
        self.append_now(events)
    }

    /// Appends the events held back in batch mode.
    pub fn flush_log(&self) -> Result<()> {
        let mut pending = crate::lock(&self.pending_log);
        if pending.is_empty() || self.read_only {
            return Ok(());
        }
        let all = std::mem::take(&mut *pending);
        self.append_now(all)
    }

    /// Appends to this member's log now. This machine wrote these entries, so
    /// it has seen them; but only when they extend what it saw (else a fork of
    /// this member's log would be papered over: the refresh checks that case).
    fn append_now(&self, events: Vec<crate::history::log::Event>) -> Result<()> {
        self.append_with(crate::lock(&self.log), events)
    }

    /// [`Vault::append_now`] with the log already taken.
    fn append_with(
        &self,
        mut log: std::sync::MutexGuard<'_, crate::history::log::LogWriter>,
        events: Vec<crate::history::log::Event>,
    ) -> Result<()> {
        let (before, after) = log.append_all(&self.me, events.clone())?;
        // We just signed these: the binding index takes them as they are instead
        // of reading and verifying them back on the next open (lock order: log,
        // then bindings, as nothing takes the log while holding the bindings).
        let me = self.me.member_id();
        let mut idx = crate::lock(&self.bindings);
        if idx.apply_own(me, before, after, &events) {
            let extends_seen = self
                .seen
                .log_seen(&me)
                .is_none_or(|(n, h)| n == before.entries && h == before.head);
            if extends_seen {
                self.seen.observe_log(me, after.entries, after.head);
            }
        } else {
            // Behind (first append of this mount, or another writer of this
            // identity appended): catch up now, so the following appends match.
            // A failure here (a fork or rollback of this member's log) is
            // reported by the next open that checks the history.
            let _ = idx.refresh(self);
        }
        Ok(())
    }

    /// Records that the entry `backing_name` in the directory `parent` now names
    /// the file or directory `id` (or no longer does).
    pub fn record_link(
        &self,
        id: [u8; 16],
        parent: &Path,
        backing_name: &std::ffi::OsStr,
        linked: bool,
    ) -> Result<()> {
        self.record(self.link_event(id, parent, backing_name, linked)?)
    }

    /// The event [`Vault::record_link`] appends, for batching several in one append.
    pub fn link_event(
        &self,
        id: [u8; 16],
        parent: &Path,
        backing_name: &std::ffi::OsStr,
        linked: bool,
    ) -> Result<crate::history::log::Event> {
        let dir_id = self.read_dir_record(parent)?.dir_id;
        let name = crate::history::log::name_tag(
            &dir_id,
            std::os::unix::ffi::OsStrExt::as_bytes(backing_name),
        );
        Ok(if linked {
            crate::history::log::Event::Linked { id, name }
        } else {
            crate::history::log::Event::Unlinked { id, name }
        })
    }

    /// The id a backing entry stands for: a regular file's file id or a
    /// directory's dir id (None for symlinks and special files).
    pub fn entry_id(&self, backing: &Path) -> Option<[u8; 16]> {
        let m = std::fs::symlink_metadata(backing).ok()?;
        if m.is_dir() {
            self.read_dir_record(backing).ok().map(|r| r.dir_id)
        } else if m.is_file() {
            self.read_file_id(backing).ok()
        } else {
            None
        }
    }

    /// Entries this process appended to its member's log since the last
    /// checkpoint (each one a signature other processes check until then).
    pub fn unsigned_log_entries(&self) -> u64 {
        crate::lock(&self.log).unsigned_tail()
    }

    /// Saves this machine's state and checkpoints the log (periodically and at exit).
    pub fn save_state(&self) {
        if let Err(e) = self.flush_log() {
            log::warn!("could not append to the history log: {e}");
        }
        if let Err(e) = self.seen.save() {
            log::warn!("could not save this machine's vault state: {e}");
        }
        if !self.read_only {
            if let Err(e) =
                crate::lock(&self.log).checkpoint(&self.me, crate::store::Durability::Sync)
            {
                log::warn!("could not checkpoint the history log: {e}");
            }
        }
    }

    /// Appends what is queued and checkpoints the log (no state save).
    /// False if either failed (logged).
    pub fn checkpoint_log(&self) -> bool {
        if self.read_only {
            return true;
        }
        if let Err(e) = self.flush_log() {
            log::warn!("could not append to the history log: {e}");
            return false;
        }
        // Lazy: one sync (the log's) per flusher tick of a burst.
        let lazy = crate::store::Durability::Lazy;
        if let Err(e) = crate::lock(&self.log).checkpoint(&self.me, lazy) {
            log::warn!("could not checkpoint the history log: {e}");
            return false;
        }
        true
    }

    pub fn is_admin(&self) -> bool {
        self.me.public() == &self.config.admin
    }

    /// Re-reads `members/`, keeping only records signed by the vault admin.
    pub fn reload_members(&self) -> Result<()> {
        let dir = self.paths.members();
        let mut map = HashMap::new();
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = entry.file_name();
            let Some(id_hex) = name.to_str().and_then(|n| n.strip_suffix(".member")) else {
                continue;
            };
            let Some(id) = crate::crypto::unhex::<16>(id_hex) else {
                continue;
            };
            match read_member(&self.paths, &self.config, &MemberId(id)) {
                Ok(r) => {
                    map.insert(MemberId(id), r);
                }
                Err(e) => log::warn!("ignoring member record {}: {e}", entry.path().display()),
            }
        }
        *self
            .members
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = map;
        Ok(())
    }

    pub fn members(&self) -> Vec<MemberRecord> {
        let mut v: Vec<_> = self
            .members
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Each member's id and signing key: what a history refresh needs, without
    /// cloning whole records on every open.
    pub fn member_keys(&self) -> Vec<(MemberId, [u8; 32])> {
        self.members
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(id, m)| (*id, m.public.ed25519))
            .collect()
    }

    pub fn member(&self, id: &MemberId) -> Option<MemberRecord> {
        self.members
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Finds a member by name or by hex id.
    pub fn find_member(&self, who: &str) -> Result<MemberRecord> {
        let members = self
            .members
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        members
            .values()
            .find(|m| m.name == who || m.public.member_id().to_hex() == who)
            .cloned()
            .ok_or_else(|| Error::BadInput(format!("unknown user '{who}'; see `coffer user list`")))
    }

    /// Adds a member (admin only).
    pub fn add_member(&self, name: &str, public: &PublicIdentity) -> Result<MemberRecord> {
        if !self.is_admin() {
            return Err(Error::AccessDenied(
                "only the vault admin can add members".into(),
            ));
        }
        validate_member_name(name)?;
        if !wrap::is_valid_recipient(&public.x25519) {
            return Err(Error::BadInput(
                "that public key cannot receive keys (low-order X25519 key)".into(),
            ));
        }
        self.reload_members()?;
        {
            let members = self
                .members
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if members.contains_key(&public.member_id()) {
                return Err(Error::BadInput(
                    "that public key is already a member".into(),
                ));
            }
            if members.values().any(|m| m.name == name) {
                return Err(Error::BadInput(format!(
                    "a member named '{name}' already exists"
                )));
            }
        }
        let me_record = self
            .member(&self.me.member_id())
            .ok_or_else(|| Error::Other("own record vanished".into()))?;
        let name_key = wrap::unwrap(&me_record.name_key, &self.me, &self.config.vault_id, 0)
            .ok_or_else(|| Error::integrity("cannot unwrap the vault name key"))?;
        let record = self.write_member(name, public, false, &name_key)?;
        self.reload_members()?;
        self.record(crate::history::log::Event::MemberAdded {
            member: public.member_id(),
            name: name.to_string(),
        })?;
        Ok(record)
    }

    fn write_member(
        &self,
        name: &str,
        public: &PublicIdentity,
        admin: bool,
        name_key: &SecretKey,
    ) -> Result<MemberRecord> {
        let record = MemberRecord {
            format_version: FORMAT_VERSION,
            vault_id: self.config.vault_id,
            name: name.to_string(),
            public: *public,
            admin,
            added_by: self.me.member_id(),
            added_unix: now_unix(),
            name_key: wrap::wrap(name_key, public, &self.config.vault_id, 0)?,
        };
        let signed = Signed::sign(&record, &self.me);
        let path = self.paths.member(&public.member_id().to_hex());
        atomic_write(
            &path,
            &format::encode_file(format::MEMBER, &signed),
            Durability::Sync,
        )?;
        Ok(record)
    }

    pub fn names(&self) -> &NameCipher {
        &self.names
    }

    pub fn chunk_log2(&self) -> u8 {
        self.config.chunk_log2
    }

    pub fn layout(&self) -> format::data::Layout {
        format::data::Layout {
            chunk_log2: self.config.chunk_log2,
        }
    }

    /// Writes a fresh `.coffer-dir` with a random dir id into `dir`.
    pub fn write_dir_record(&self, dir: &Path) -> Result<[u8; 16]> {
        let rec = DirRecord {
            format_version: FORMAT_VERSION,
            dir_id: crate::crypto::random_bytes(),
            defaults: None,
        };
        atomic_write(
            &dir.join(DIR_RECORD),
            &format::encode_file(format::DIR, &rec),
            Durability::Lazy,
        )?;
        Ok(rec.dir_id)
    }

    pub fn read_dir_record(&self, dir: &Path) -> Result<DirRecord> {
        Ok(self.dir_entry(dir)?.0)
    }

    /// The directory record and its verified defaults, cached until the record
    /// file changes (inode, mtime, ctime, length): creates and history records
    /// consult it on every operation.
    pub(super) fn dir_entry(&self, dir: &Path) -> Result<(DirRecord, Option<format::DirDefaults>)> {
        use std::os::unix::fs::MetadataExt;
        let path = dir.join(DIR_RECORD);
        let stamp = std::fs::metadata(&path).ok().map(|m| {
            (
                m.ino(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
                m.len(),
            )
        });
        if let Some(stamp) = stamp {
            if let Some((s, rec, d)) = crate::lock(&self.dir_cache).get(&path) {
                if *s == stamp {
                    return Ok((rec.clone(), d.clone()));
                }
            }
        }
        let bytes = read_limited(&path, format::DIR.max_len + 4, "directory record")?;
        let rec: DirRecord = format::decode_file(format::DIR, &bytes)?;
        format::check_version(rec.format_version)?;
        let defaults = self.verify_defaults(dir, &rec);
        if let Some(stamp) = stamp {
            let mut cache = crate::lock(&self.dir_cache);
            if cache.len() > 16_384 {
                cache.clear();
            }
            cache.insert(path, (stamp, rec.clone(), defaults.clone()));
        }
        Ok((rec, defaults))
    }

    /// The verified default grants of a directory, if any. Defaults signed by
    /// someone who is not a member are ignored (and logged).
    pub fn dir_defaults(&self, dir: &Path) -> Option<format::DirDefaults> {
        self.dir_entry(dir).ok()?.1
    }

    fn verify_defaults(&self, dir: &Path, rec: &DirRecord) -> Option<format::DirDefaults> {
        let signed = rec.defaults.as_ref()?;
        let key = self.ed25519_of(&signed.signer)?;
        match signed.verify(&key) {
            Ok(d) if d.dir_id == rec.dir_id => Some(d),
            Ok(_) => {
                log::error!(
                    "ignoring directory defaults of {}: they belong to another directory",
                    dir.display()
                );
                None
            }
            Err(e) => {
                log::error!("ignoring directory defaults of {}: {e}", dir.display());
                None
            }
        }
    }

    /// Changes a directory's default grants (signed by the acting member).
    pub fn update_dir_defaults(
        &self,
        dir: &Path,
        change: impl FnOnce(&mut format::DirDefaults),
    ) -> Result<()> {
        if self.read_only {
            return Err(Error::AccessDenied("vault is opened read-only".into()));
        }
        let mut rec = self.read_dir_record(dir)?;
        let mut d = self.dir_defaults(dir).unwrap_or(format::DirDefaults {
            dir_id: rec.dir_id,
            readers: vec![],
            updaters: vec![],
        });
        change(&mut d);
        d.readers.sort();
        d.readers.dedup();
        d.updaters.sort();
        d.updaters.dedup();
        rec.defaults = if d.readers.is_empty() && d.updaters.is_empty() {
            None
        } else {
            Some(Signed::sign(&d, &self.me))
        };
        atomic_write(
            &dir.join(DIR_RECORD),
            &format::encode_file(format::DIR, &rec),
            Durability::Sync,
        )
    }

    /// Path of a backing entry inside the tree, for messages.
    pub fn tree_relative<'a>(&self, backing: &'a Path) -> &'a Path {
        backing.strip_prefix(self.paths.tree()).unwrap_or(backing)
    }
}

/// The member-name rule: 1-64 of ASCII letters, digits, `-`, `_`, `.`, `@`.
pub fn is_valid_member_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

fn validate_member_name(name: &str) -> Result<()> {
    if !is_valid_member_name(name) {
        return Err(Error::BadInput(format!(
            "invalid member name '{name}': use 1-64 letters, digits, '-', '_', '.', '@'"
        )));
    }
    Ok(())
}

pub fn read_config(paths: &VaultPaths) -> Result<VaultConfig> {
    let path = paths.config();
    let bytes = read_limited(&path, format::VAULT_CONFIG.max_len + 4, "vault config")?;
    let signed: Signed<VaultConfig> = format::decode_file(format::VAULT_CONFIG, &bytes)?;
    // Peek at the version before verifying so a newer vault gets a clear message.
    if let Ok(unverified) = signed.decode_unverified() {
        format::check_version(unverified.format_version)?;
        let config = signed.verify(&unverified.admin.ed25519)?;
        return Ok(config);
    }
    Err(Error::corrupt("vault config", "cannot decode"))
}

fn read_member(paths: &VaultPaths, config: &VaultConfig, id: &MemberId) -> Result<MemberRecord> {
    let path: PathBuf = paths.member(&id.to_hex());
    let bytes = read_limited(&path, format::MEMBER.max_len + 4, "member record")?;
    let signed: Signed<MemberRecord> = format::decode_file(format::MEMBER, &bytes)?;
    let rec = signed.verify(&config.admin.ed25519)?;
    format::check_version(rec.format_version)?;
    if rec.vault_id != config.vault_id || rec.public.member_id() != *id {
        return Err(Error::integrity(format!(
            "member record {} belongs elsewhere",
            path.display()
        )));
    }
    Ok(rec)
}
