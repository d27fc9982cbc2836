//! Access policy: replaying a file's signed access list into who holds which
//! right, and checking that every change was allowed by the signer's rights in
//! the state before it. Rules (docs/ACCESS.md):
//! - the first entry is `Create` by its signer, who holds read and update;
//! - holding read lets you grant read; holding update lets you grant update
//!   (update implies read);
//! - an updater may revoke anyone's rights, the creator's included; anyone may
//!   drop their own; revoking read takes update too;
//! - `Rotate` needs update and moves the epoch forward by one.

use std::collections::{BTreeMap, BTreeSet};

use crate::crypto::MemberId;
use crate::error::{Error, Result};
use crate::format::signed::SignedBody;
use crate::format::{AccessChange, AccessEntry, Right, Signed};

/// Where a member's right came from, for `coffer access`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantInfo {
    pub granted_by: MemberId,
    pub seq: u64,
}

/// The access state after replaying a chain.
#[derive(Clone, Debug)]
pub struct AccessState {
    pub file_id: [u8; 16],
    pub creator: MemberId,
    pub readers: BTreeMap<MemberId, GrantInfo>,
    pub updaters: BTreeMap<MemberId, GrantInfo>,
    pub epoch: u32,
    /// Per member whose update right was revoked: the content version the
    /// revocation vouched for (see `AccessChange::Revoke`).
    pub pinned: BTreeMap<MemberId, [u8; 32]>,
    /// Hash of the newest entry and its sequence number.
    pub head: [u8; 32],
    pub seq: u64,
}

impl AccessState {
    pub fn can_read(&self, m: &MemberId) -> bool {
        self.readers.contains_key(m)
    }

    pub fn can_update(&self, m: &MemberId) -> bool {
        self.updaters.contains_key(m)
    }

    /// Whether content signed by `writer` with manifest hash `manifest` is valid:
    /// the writer holds update now, or a revocation vouched for exactly this version.
    pub fn accepts_content(&self, writer: &MemberId, manifest: &[u8; 32]) -> bool {
        self.can_update(writer) || self.pinned.get(writer) == Some(manifest)
    }

    pub fn reader_ids(&self) -> BTreeSet<MemberId> {
        self.readers.keys().copied().collect()
    }
}

/// Looks up a member's Ed25519 key (from the vault's signed member records).
pub trait KeyLookup {
    fn ed25519_of(&self, id: &MemberId) -> Option<[u8; 32]>;
    /// Whether this machine checked the signature on the record with this hash
    /// (`Signed::hash`) by that key before (see `vault::vouched`).
    fn vouched(&self, _ed25519: &[u8; 32], _domain: &[u8], _record: &[u8; 32]) -> bool {
        false
    }
    /// Notes a signature just checked.
    fn vouch(&self, _ed25519: &[u8; 32], _domain: &[u8], _record: &[u8; 32]) {}
}

/// Checks `signed` against the signer's key, unless this machine checked that
/// exact record before; then decodes it.
pub fn verify_signed<T: SignedBody>(
    signed: &Signed<T>,
    ed25519: &[u8; 32],
    keys: &dyn KeyLookup,
) -> Result<T> {
    let record = signed.hash();
    if keys.vouched(ed25519, T::DOMAIN, &record) {
        return signed.decode_unverified();
    }
    let value = signed.verify(ed25519)?;
    keys.vouch(ed25519, T::DOMAIN, &record);
    Ok(value)
}

/// Verifies and replays the chain; any forged, reordered or unjustified entry
/// is an integrity failure naming the entry.
pub fn replay(
    file_id: &[u8; 16],
    entries: &[Signed<AccessEntry>],
    keys: &dyn KeyLookup,
) -> Result<AccessState> {
    let fail =
        |seq: usize, why: String| Error::integrity(format!("access list entry {seq}: {why}"));
    let first = entries
        .first()
        .ok_or_else(|| Error::integrity("access list is empty"))?;
    let mut state: Option<AccessState> = None;
    let mut prev = [0u8; 32];
    for (i, signed) in entries.iter().enumerate() {
        let key = keys.ed25519_of(&signed.signer).ok_or_else(|| {
            fail(
                i,
                format!("signed by {}, who is not a vault member", signed.signer),
            )
        })?;
        let entry = verify_signed(signed, &key, keys).map_err(|e| fail(i, e.to_string()))?;
        if entry.actor != signed.signer {
            return Err(fail(i, "actor is not the signer".into()));
        }
        if &entry.file_id != file_id {
            return Err(fail(
                i,
                "belongs to another file (swapped access list?)".into(),
            ));
        }
        if entry.seq != i as u64 || entry.prev != prev {
            return Err(fail(
                i,
                "out of order or not chained to the previous entry".into(),
            ));
        }
        step(&mut state, &entry, keys).map_err(|why| fail(i, why))?;
        prev = signed.hash();
        if let Some(s) = state.as_mut() {
            s.head = prev;
            s.seq = entry.seq;
        }
    }
    let _ = first;
    state.ok_or_else(|| Error::integrity("access list has no create entry"))
}

/// Applies one authenticated, chained entry to the state: the policy rules.
fn step(
    state: &mut Option<AccessState>,
    entry: &AccessEntry,
    keys: &dyn KeyLookup,
) -> std::result::Result<(), String> {
    let info = GrantInfo {
        granted_by: entry.actor,
        seq: entry.seq,
    };
    match (state.as_mut(), &entry.change) {
        (None, AccessChange::Create { readers, updaters }) => {
            let mut s = AccessState {
                file_id: entry.file_id,
                creator: entry.actor,
                readers: BTreeMap::new(),
                updaters: BTreeMap::new(),
                epoch: 0,
                pinned: BTreeMap::new(),
                head: [0; 32],
                seq: 0,
            };
            for r in readers
                .iter()
                .chain(updaters.iter())
                .chain(std::iter::once(&entry.actor))
            {
                s.readers.insert(*r, info.clone());
            }
            for u in updaters.iter().chain(std::iter::once(&entry.actor)) {
                s.updaters.insert(*u, info.clone());
            }
            *state = Some(s);
        }
        (None, _) => return Err("the first entry must be the creator's".into()),
        (Some(_), AccessChange::Create { .. }) => return Err("a second create entry".into()),
        (Some(s), AccessChange::Grant { member, right }) => {
            let allowed = match right {
                Right::Read => s.can_read(&entry.actor),
                Right::Update => s.can_update(&entry.actor),
            };
            if !allowed {
                return Err(format!(
                    "{} granted {:?} without holding it",
                    entry.actor, right
                ));
            }
            if keys.ed25519_of(member).is_none() {
                return Err(format!("grant to {member}, who is not a vault member"));
            }
            s.readers.entry(*member).or_insert_with(|| info.clone());
            if *right == Right::Update {
                s.updaters.entry(*member).or_insert_with(|| info.clone());
            }
        }
        (
            Some(s),
            AccessChange::Revoke {
                member,
                right,
                content_pin,
            },
        ) => {
            if !(s.can_update(&entry.actor) || entry.actor == *member) {
                return Err(format!(
                    "{} revoked {member} without the update right",
                    entry.actor
                ));
            }
            if s.updaters.remove(member).is_some() {
                s.pinned.insert(*member, *content_pin);
            }
            if *right == Right::Read {
                s.readers.remove(member);
            }
        }
        (Some(s), AccessChange::Rotate { epoch }) => {
            if !s.can_update(&entry.actor) {
                return Err(format!("{} rotated without the update right", entry.actor));
            }
            if *epoch != s.epoch + 1 {
                return Err(format!("epoch {epoch} does not follow {}", s.epoch));
            }
            s.epoch = *epoch;
        }
    }
    Ok(())
}

/// Signs the next entry of a chain as `actor` and applies it to `state` (the
/// same rules as [`replay`], without verifying the signature just made).
/// Fails, signing nothing that could be stored, if the rules forbid the change.
pub fn sign_next(
    state: &AccessState,
    actor: &crate::crypto::Identity,
    change: AccessChange,
    keys: &dyn KeyLookup,
) -> Result<(Signed<AccessEntry>, AccessState)> {
    let entry = unsigned_next(state, actor, change);
    let mut next = Some(state.clone());
    step(&mut next, &entry, keys)
        .map_err(|why| Error::AccessDenied(format!("access list entry {}: {why}", entry.seq)))?;
    let signed = Signed::sign(&entry, actor);
    let mut next = next.expect("a state stays a state");
    next.head = signed.hash();
    next.seq = entry.seq;
    Ok((signed, next))
}

/// The state right after a `Create` entry we signed ourselves (what `replay`
/// would compute, without verifying our own signature again).
pub fn state_after_create(
    file_id: &[u8; 16],
    entry: &Signed<AccessEntry>,
    readers: &[MemberId],
    updaters: &[MemberId],
    creator: MemberId,
) -> AccessState {
    let info = GrantInfo {
        granted_by: creator,
        seq: 0,
    };
    let mut s = AccessState {
        file_id: *file_id,
        creator,
        readers: BTreeMap::new(),
        updaters: BTreeMap::new(),
        epoch: 0,
        pinned: BTreeMap::new(),
        head: entry.hash(),
        seq: 0,
    };
    for r in readers
        .iter()
        .chain(updaters)
        .chain(std::iter::once(&creator))
    {
        s.readers.insert(*r, info.clone());
    }
    for u in updaters.iter().chain(std::iter::once(&creator)) {
        s.updaters.insert(*u, info.clone());
    }
    s
}

/// Builds the next entry of a chain, signed by `actor`.
pub fn next_entry(
    state: &AccessState,
    actor: &crate::crypto::Identity,
    change: AccessChange,
) -> Signed<AccessEntry> {
    Signed::sign(&unsigned_next(state, actor, change), actor)
}

/// The entry that follows `state` in its chain, made by `actor`.
fn unsigned_next(
    state: &AccessState,
    actor: &crate::crypto::Identity,
    change: AccessChange,
) -> AccessEntry {
    AccessEntry {
        file_id: state.file_id,
        seq: state.seq + 1,
        prev: state.head,
        actor: actor.member_id(),
        time_unix: crate::vault::now_unix(),
        change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Identity;
    use std::collections::HashMap;

    struct Keys(HashMap<MemberId, [u8; 32]>);
    impl KeyLookup for Keys {
        fn ed25519_of(&self, id: &MemberId) -> Option<[u8; 32]> {
            self.0.get(id).copied()
        }
    }

    fn setup() -> (Identity, Identity, Identity, Keys) {
        let (a, b, c) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let keys = Keys(
            [&a, &b, &c]
                .iter()
                .map(|i| (i.member_id(), i.public().ed25519))
                .collect(),
        );
        (a, b, c, keys)
    }

    fn create(by: &Identity) -> Signed<AccessEntry> {
        Signed::sign(
            &AccessEntry {
                file_id: [1; 16],
                seq: 0,
                prev: [0; 32],
                actor: by.member_id(),
                time_unix: 0,
                change: AccessChange::Create {
                    readers: vec![],
                    updaters: vec![],
                },
            },
            by,
        )
    }

    #[test]
    fn state_after_create_matches_replay() {
        let (a, b, c, keys) = setup();
        let entry = Signed::sign(
            &AccessEntry {
                file_id: [1; 16],
                seq: 0,
                prev: [0; 32],
                actor: a.member_id(),
                time_unix: 0,
                change: AccessChange::Create {
                    readers: vec![b.member_id()],
                    updaters: vec![c.member_id()],
                },
            },
            &a,
        );
        let replayed = replay(&[1; 16], std::slice::from_ref(&entry), &keys).unwrap();
        let built = state_after_create(
            &[1; 16],
            &entry,
            &[b.member_id()],
            &[c.member_id()],
            a.member_id(),
        );
        assert_eq!(replayed.readers, built.readers);
        assert_eq!(replayed.updaters, built.updaters);
        assert_eq!(
            (replayed.head, replayed.seq, replayed.epoch),
            (built.head, built.seq, built.epoch)
        );
    }

    #[test]
    fn delegation_rules() {
        let (a, b, c, keys) = setup();
        let mut chain = vec![create(&a)];
        let s = replay(&[1; 16], &chain, &keys).unwrap();
        assert!(s.can_update(&a.member_id()) && !s.can_read(&b.member_id()));
        chain.push(next_entry(
            &s,
            &a,
            AccessChange::Grant {
                member: b.member_id(),
                right: Right::Read,
            },
        ));
        let s = replay(&[1; 16], &chain, &keys).unwrap();
        assert!(s.can_read(&b.member_id()) && !s.can_update(&b.member_id()));
        // A reader passes read on.
        let mut ok = chain.clone();
        ok.push(next_entry(
            &s,
            &b,
            AccessChange::Grant {
                member: c.member_id(),
                right: Right::Read,
            },
        ));
        assert!(replay(&[1; 16], &ok, &keys)
            .unwrap()
            .can_read(&c.member_id()));
        // A reader cannot pass on (or give himself) update.
        let mut bad = chain.clone();
        bad.push(next_entry(
            &s,
            &b,
            AccessChange::Grant {
                member: b.member_id(),
                right: Right::Update,
            },
        ));
        assert!(matches!(
            replay(&[1; 16], &bad, &keys),
            Err(Error::Integrity { .. })
        ));
        // Nor revoke others or rotate.
        let mut bad = chain.clone();
        bad.push(next_entry(
            &s,
            &b,
            AccessChange::Revoke {
                member: a.member_id(),
                right: Right::Read,
                content_pin: [0; 32],
            },
        ));
        assert!(replay(&[1; 16], &bad, &keys).is_err());
        let mut bad = chain.clone();
        bad.push(next_entry(&s, &b, AccessChange::Rotate { epoch: 1 }));
        assert!(replay(&[1; 16], &bad, &keys).is_err());
    }

    #[test]
    fn forged_reordered_or_swapped_entries_fail() {
        let (a, b, _c, keys) = setup();
        let chain = vec![create(&a)];
        let s = replay(&[1; 16], &chain, &keys).unwrap();
        let e1 = next_entry(
            &s,
            &a,
            AccessChange::Grant {
                member: b.member_id(),
                right: Right::Read,
            },
        );
        let mut tampered = e1.clone();
        tampered.body[20] ^= 1;
        assert!(replay(&[1; 16], &[chain[0].clone(), tampered], &keys).is_err());
        assert!(
            replay(&[1; 16], &[e1.clone(), chain[0].clone()], &keys).is_err(),
            "reordered"
        );
        assert!(
            replay(&[2; 16], &chain, &keys).is_err(),
            "other file's list"
        );
        let mut resigned = e1.clone();
        resigned.signer = b.member_id();
        assert!(replay(&[1; 16], &[chain[0].clone(), resigned], &keys).is_err());
    }

    #[test]
    fn updater_may_revoke_creator_and_anyone_drops_own() {
        let (a, b, _c, keys) = setup();
        let mut chain = vec![create(&a)];
        let s = replay(&[1; 16], &chain, &keys).unwrap();
        chain.push(next_entry(
            &s,
            &a,
            AccessChange::Grant {
                member: b.member_id(),
                right: Right::Update,
            },
        ));
        let s = replay(&[1; 16], &chain, &keys).unwrap();
        chain.push(next_entry(
            &s,
            &b,
            AccessChange::Revoke {
                member: a.member_id(),
                right: Right::Read,
                content_pin: [0; 32],
            },
        ));
        let s = replay(&[1; 16], &chain, &keys).unwrap();
        assert!(!s.can_read(&a.member_id()));
        chain.push(next_entry(
            &s,
            &b,
            AccessChange::Revoke {
                member: b.member_id(),
                right: Right::Update,
                content_pin: [0; 32],
            },
        ));
        let s = replay(&[1; 16], &chain, &keys).unwrap();
        assert!(s.can_read(&b.member_id()) && !s.can_update(&b.member_id()));
    }
}
