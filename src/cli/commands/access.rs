//! `coffer access PATH [--json]`

use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};

use super::super::target::{self, VaultOpt};
use super::super::{output, Context};
use super::Run;

#[derive(clap::Args, Debug)]
#[command(
    about = "Show who holds which right on a file",
    long_about = "Show the verified access list of PATH: each member's rights, who granted them, \
the creator, the key epoch and the content version. Revoking a member does not revoke the \
members they granted."
)]
pub struct Args {
    /// A file inside a mounted vault (or relative to --vault).
    pub path: PathBuf,
    #[command(flatten)]
    pub vault: VaultOpt,
}

#[derive(Serialize)]
struct MemberRights {
    name: String,
    id: String,
    read: bool,
    update: bool,
    granted_by: String,
}

#[derive(Serialize)]
struct AccessOut {
    path: String,
    file_id: String,
    creator: String,
    epoch: u32,
    version: u64,
    writer: String,
    members: Vec<MemberRights>,
}

impl Run for Args {
    fn run(self, ctx: &Context) -> Result<()> {
        let t = target::resolve(ctx, &self.path, &self.vault, true)?;
        if !t.entry.is_file {
            return Err(Error::BadInput(format!(
                "{} is not a regular file",
                t.entry.plain.display()
            )));
        }
        let shown = t.entry.plain.display().to_string();
        let (st, manifest) = t.vault.file_access(&t.entry.backing, &shown)?;
        let name_of = |id: &crate::crypto::MemberId| {
            t.vault
                .member(id)
                .map(|m| m.name)
                .unwrap_or_else(|| id.to_hex())
        };
        let mut members = Vec::new();
        for (id, info) in &st.readers {
            members.push(MemberRights {
                name: name_of(id),
                id: id.to_hex(),
                read: true,
                update: st.updaters.contains_key(id),
                granted_by: if info.seq == 0 {
                    "(creator)".into()
                } else {
                    name_of(&info.granted_by)
                },
            });
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let out = AccessOut {
            path: shown,
            file_id: crate::crypto::hex(&st.file_id),
            creator: name_of(&st.creator),
            epoch: st.epoch,
            version: manifest.version,
            writer: name_of(&manifest.writer),
            members,
        };
        if ctx.json {
            return output::json(&out);
        }
        output::line(format!(
            "{}  (created by {}, key epoch {}, version {} written by {})",
            out.path, out.creator, out.epoch, out.version, out.writer
        ))?;
        let rows: Vec<Vec<String>> = out
            .members
            .iter()
            .map(|m| {
                vec![
                    m.name.clone(),
                    if m.update {
                        "read, update".into()
                    } else {
                        "read".into()
                    },
                    m.granted_by.clone(),
                ]
            })
            .collect();
        output::line(output::table(&["MEMBER", "RIGHTS", "GRANTED BY"], &rows))
    }
}
