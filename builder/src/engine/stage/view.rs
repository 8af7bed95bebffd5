//! A read-only view of the stage's files, the union of its snapshots (whiteouts and opaque directories applied):
//! what a path is, a directory's image-side attributes, a file's content, and the ids a USER or `--chown` names
//! in the stage's own /etc/passwd and /etc/group.

use super::*;
use crate::context::copy;
use crate::dockerfile::CopySpec;

impl StageBuilder<'_> {
    /// What `rel` is in the stage's filesystem (without following a final symlink): the topmost snapshot that
    /// has it (or a whiteout of it, or an opaque parent hiding it) decides.
    pub(super) fn path_meta(&self, rel: &str) -> Option<fs::Metadata> {
        self.stage_entry(rel).map(|(_, m)| m)
    }

    /// Where `rel` is in the stage's snapshots (the topmost that has it), with its metadata. A symlink on the way
    /// is not followed (it would be followed on the host): such a path is not in the view; resolve it first
    /// ([`Self::resolve_in_stage`]).
    fn stage_entry(&self, rel: &str) -> Option<(PathBuf, fs::Metadata)> {
        self.ensure_files_for_view();
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        for snap in self.state.snapshots.iter().rev() {
            let mut p = snap.clone();
            let mut hidden_below = false;
            for (i, comp) in comps.iter().enumerate() {
                p.push(comp);
                match fs::symlink_metadata(&p) {
                    Ok(m) if crate::layer::overlay_whiteout(&p, &m) => return None,
                    Ok(m) if i + 1 == comps.len() => return Some((p, m)),
                    Ok(m) if m.file_type().is_symlink() => return None,
                    Ok(m) => hidden_below |= m.is_dir() && crate::layer::overlay_opaque(&p),
                    Err(_) if hidden_below => return None,
                    Err(_) => break,
                }
            }
        }
        None
    }

    /// An absolute path of the stage with the symlinks on its way resolved inside the stage's root (the last
    /// component too with `follow_last`), as BuildKit resolves a COPY's destination or a WORKDIR: on a merged-/usr
    /// base (`/bin -> usr/bin`), `/bin/app` is `/usr/bin/app` — a layer with a `bin/` directory would replace the
    /// link and hide every program. `..` stops at the root; after 40 links the rest is taken as it is.
    pub(super) fn resolve_in_stage(&self, abs: &str, follow_last: bool) -> String {
        let mut todo: std::collections::VecDeque<String> =
            abs.split('/').filter(|c| !c.is_empty() && *c != ".").map(str::to_string).collect();
        let mut done: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(comp) = todo.pop_front() {
            if comp == ".." {
                done.pop();
                continue;
            }
            let last = todo.is_empty();
            let here = format!("{}/{comp}", done.join("/"));
            let link = match self.stage_entry(&here) {
                Some((path, m)) if m.file_type().is_symlink() && (follow_last || !last) && links < 40 => {
                    fs::read_link(path).ok()
                }
                _ => None,
            };
            let Some(target) = link else {
                done.push(comp);
                continue;
            };
            links += 1;
            let target = target.to_string_lossy().into_owned();
            if target.starts_with('/') {
                done.clear();
            }
            for c in target.split('/').filter(|c| !c.is_empty() && *c != ".").rev() {
                todo.push_front(c.to_string());
            }
        }
        format!("/{}", done.join("/"))
    }

    pub(super) fn path_exists(&self, rel: &str) -> bool {
        self.path_meta(rel).is_some()
    }

    /// The image-side (mode, uid, gid) of a directory the stage has at `rel`: owners recorded in the
    /// rootless xattr, else the on-disk owner mapped back through the sandbox's id map.
    pub(super) fn stage_dir_attrs(&self, rel: &str) -> Option<(u32, u32, u32)> {
        let meta = self.path_meta(rel).filter(|m| m.is_dir())?;
        use std::os::unix::fs::MetadataExt;
        let path = self.state.snapshots.iter().rev().map(|s| s.join(rel)).find(|p| p.is_dir())?;
        let recorded = xattr::get(&path, crate::layer::tree::ROOTLESS_XATTR)
            .ok()
            .flatten()
            .and_then(|b| crate::layer::rootless_owner::decode(&b));
        let (uid, gid) = self.session.worker.id_map.to_image(meta.uid(), meta.gid());
        let (uid, gid) = match recorded {
            Some((u, g)) => (u.unwrap_or(uid), g.unwrap_or(gid)),
            None => (uid, gid),
        };
        Some((meta.mode() & 0o7777, uid, gid))
    }

    /// The owner of what a file operation makes as the stage's USER (`None`: root), as BuildKit's mkdir for
    /// WORKDIR: `USER 1234` (not in /etc/passwd) makes 1234:1234.
    pub(super) fn user_ids(&self, ins: &Instruction) -> Result<Option<(u32, u32)>> {
        let Some(user) = self.state.config.user() else {
            return Ok(None);
        };
        let ids = self.file_owner(ins, user, "USER")?;
        Ok(Some(ids).filter(|ids| *ids != (0, 0)))
    }

    /// Who a RUN step runs as: the stage's USER resolved in its /etc/passwd and /etc/group exactly as the sandbox
    /// resolves it (a numeric uid without an entry has gid 0; supplementary groups from /etc/group).
    pub(super) fn step_identity(&self) -> Option<rbuild_runtime::user::ResolvedUser> {
        let text = |f: &str| String::from_utf8_lossy(&self.read_stage_file(f).unwrap_or_default()).into_owned();
        rbuild_runtime::user::resolve_in(&text("etc/passwd"), &text("etc/group"), self.state.config.user()).ok()
    }

    /// A COPY/ADD destination made absolute against the stage's WORKDIR.
    pub(super) fn in_workdir(&self, dest: &str) -> String {
        if dest.starts_with('/') {
            return dest.to_string();
        }
        let workdir = self.state.config.workdir();
        format!("{}/{dest}", workdir.trim_end_matches('/'))
    }

    /// A COPY/ADD's `--chown` and `--chmod`, resolved once: the owner's ids from the stage's /etc/passwd and
    /// /etc/group, the mode parsed (octal or symbolic).
    pub(super) fn copy_flags(&self, ins: &Instruction, c: &CopySpec) -> Result<CopyFlags> {
        let owner = c.chown.as_ref().map(|o| self.resolve_owner(ins, o)).transpose()?;
        Ok(CopyFlags { owner, chmod: self.copy_chmod(ins, c)? })
    }

    /// A COPY/ADD's `--chmod` parsed (octal or symbolic); it needs none of the stage's files.
    pub(super) fn copy_chmod(&self, ins: &Instruction, c: &CopySpec) -> Result<Option<copy::ModeSpec>> {
        let Some(m) = &c.chmod else { return Ok(None) };
        let m = self.expand(ins, m)?;
        copy::ModeSpec::parse(&m).map(Some).ok_or_else(|| self.fail(ins, &crate::dockerfile::invalid_chmod(&m)))
    }

    /// `--chown=USER[:GROUP]`: names are looked up in the stage's own /etc/passwd and /etc/group.
    pub(super) fn resolve_owner(&self, ins: &Instruction, spec: &str) -> Result<(u32, u32)> {
        let spec = self.expand(ins, spec)?;
        self.file_owner(ins, &spec, "--chown")
    }

    /// The owner BuildKit's file operations give for `USER[:GROUP]` (a `--chown`, or the USER a WORKDIR is made
    /// as): a user name takes its uid and primary group from /etc/passwd; a uid alone gives the group of the
    /// same number; an empty user (`:group`) is root; a group replaces the user's.
    pub(super) fn file_owner(&self, ins: &Instruction, spec: &str, what: &str) -> Result<(u32, u32)> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let entry = |file: &str, name: &str| -> Result<Vec<String>> {
            let text = self.read_stage_file(file).unwrap_or_default();
            String::from_utf8_lossy(&text)
                .lines()
                .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
                .find(|f| f.first().map(String::as_str) == Some(name))
                .ok_or_else(|| self.fail(ins, &format!("{what}={spec}: no {name:?} in the image's /{file}")))
        };
        let field = |f: &[String], i: usize| f.get(i).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        let (uid, mut gid) = if user.is_empty() {
            (0, 0)
        } else if let Ok(n) = user.parse::<u32>() {
            (n, n)
        } else {
            let f = entry("etc/passwd", user)?;
            (field(&f, 2), field(&f, 3))
        };
        if let Some(g) = group.filter(|g| !g.is_empty()) {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => field(&entry("etc/group", g)?, 2),
            };
        }
        Ok((uid, gid))
    }

    /// A file of the stage's filesystem (the topmost snapshot that has it), following no symlinks.
    pub(super) fn read_stage_file(&self, rel: &str) -> Option<Vec<u8>> {
        let meta = self.path_meta(rel)?;
        if !meta.is_file() {
            return None;
        }
        self.state.snapshots.iter().rev().map(|s| s.join(rel)).find(|p| p.is_file()).and_then(|p| fs::read(p).ok())
    }
}

/// A COPY/ADD's resolved `--chown` (uid, gid) and `--chmod`.
pub(super) struct CopyFlags {
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<copy::ModeSpec>,
}
