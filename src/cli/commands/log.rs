//! `coffer log VAULT [PATH] [--json]`

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::Result;
use crate::history::log::Event;

use super::super::{output, Context};
use super::Run;

#[derive(clap::Args, Debug)]
#[command(
    about = "Show the verified history of a vault or a file",
    long_about = "Print who created, wrote, granted, revoked, rotated and deleted what, and when, \
from every member's signed, hash-chained log (each checked before it is shown). With PATH \
(relative to the vault root, or inside a mount of it): only that file's history."
)]
pub struct Args {
    /// The vault.
    pub vault: PathBuf,
    /// Only the history of this file.
    pub path: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(super::utc(1_795_837_062), "2026-11-28 03:37:42");
    }
}

#[derive(Serialize)]
struct LogLine {
    time_ms: u64,
    member: String,
    seq: u64,
    event: String,
    file_id: Option<String>,
    path: Option<String>,
    detail: String,
}

fn describe(
    e: &Event,
    name_of: &dyn Fn(&crate::crypto::MemberId) -> String,
) -> (&'static str, Option<[u8; 16]>, String) {
    use crate::format::{AccessChange, Right};
    let r = |r: &Right| if *r == Right::Read { "read" } else { "update" };
    match e {
        Event::FileCreated { file_id } => ("create", Some(*file_id), String::new()),
        Event::ContentVersion {
            file_id,
            version,
            size,
            ..
        } => (
            "write",
            Some(*file_id),
            format!("version {version}, {size} bytes"),
        ),
        Event::AccessChanged {
            file_id, change, ..
        } => match change {
            AccessChange::Create { .. } => ("access", Some(*file_id), "created".into()),
            AccessChange::Grant { member, right } => (
                "grant",
                Some(*file_id),
                format!("{} to {}", r(right), name_of(member)),
            ),
            AccessChange::Revoke { member, right, .. } => {
                let what = if *right == Right::Read {
                    "read and update"
                } else {
                    "update"
                };
                (
                    "revoke",
                    Some(*file_id),
                    format!("{what} of {}", name_of(member)),
                )
            }
            AccessChange::Rotate { epoch } => {
                ("rotate", Some(*file_id), format!("to key epoch {epoch}"))
            }
        },
        Event::FileDeleted { file_id } => ("delete", Some(*file_id), String::new()),
        Event::MemberAdded { member, name } => ("member", None, format!("added {name} ({member})")),
        Event::Linked { id, .. } => ("link", Some(*id), "name bound".into()),
        Event::Unlinked { id, .. } => ("unlink", Some(*id), "name removed".into()),
        Event::ForkResolved { file_id, version } => (
            "fork-resolved",
            Some(*file_id),
            format!("kept version {version}"),
        ),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) from Unix seconds (Howard Hinnant's civil_from_days).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Run for Args {
    fn run(self, ctx: &Context) -> Result<()> {
        let (vault, _) = ctx.open_vault(&self.vault, true)?;
        // Current paths by id, for readable output (names are visible to members).
        let (entries, _) = vault.walk_tree();
        let mut path_of: HashMap<[u8; 16], String> = HashMap::new();
        for e in &entries {
            if let Some(id) = vault.entry_id(&e.backing) {
                path_of.insert(id, e.plain.display().to_string());
            }
        }
        let only: Option<[u8; 16]> = match &self.path {
            Some(p) => {
                let rel = match crate::vault::resolve::locate_in_mount(p) {
                    Ok((_, rel)) => rel,
                    Err(_) => p
                        .components()
                        .filter(|c| !matches!(c, std::path::Component::RootDir))
                        .collect(),
                };
                let backing = vault.backing_path(&rel)?;
                vault.entry_id(&backing)
            }
            None => None,
        };
        let name_of = |id: &crate::crypto::MemberId| {
            vault
                .member(id)
                .map(|m| m.name)
                .unwrap_or_else(|| id.to_hex())
        };
        let mut lines = Vec::new();
        for m in vault.members() {
            let log = vault.member_log_checked(&m)?;
            for entry in log.entries {
                let (kind, file, detail) = describe(&entry.event, &name_of);
                if only.is_some() && file != only {
                    continue;
                }
                if matches!(kind, "link" | "unlink") && only.is_none() {
                    continue;
                }
                lines.push(LogLine {
                    time_ms: entry.time_ms,
                    member: m.name.clone(),
                    seq: entry.seq,
                    event: kind.to_string(),
                    file_id: file.map(|f| crate::crypto::hex(&f)),
                    path: file.and_then(|f| path_of.get(&f).cloned()),
                    detail,
                });
            }
        }
        lines.sort_by(|a, b| (a.time_ms, &a.member, a.seq).cmp(&(b.time_ms, &b.member, b.seq)));
        vault.save_state();
        if ctx.json {
            return output::json(&lines);
        }
        for l in &lines {
            let what = l
                .path
                .clone()
                .or_else(|| l.file_id.clone().map(|f| format!("(deleted file {f})")))
                .unwrap_or_default();
            output::line(
                format!(
                    "{}  {:<8} {:<7} {} {}",
                    utc(l.time_ms / 1000),
                    l.member,
                    l.event,
                    what,
                    l.detail
                )
                .trim_end(),
            )?;
        }
        Ok(())
    }
}
