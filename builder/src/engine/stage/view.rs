//! A read-only view of the stage's files, the union of its snapshots (whiteouts and opaque directories applied):
//! what a path is, a directory's image-side attributes, a file's content, and the ids a USER or `--chown` names
//! in the stage's own /etc/passwd and /etc/group.

use super::*;

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

    /// The (uid, gid) the stage's USER resolves to in its own /etc/passwd and /etc/group (`None`: root).
    pub(super) fn user_ids(&self, ins: &Instruction) -> Result<Option<(u32, u32)>> {
        let Some(user) = self.state.config["config"]["User"].as_str().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let text = |f: &str| String::from_utf8_lossy(&self.read_stage_file(f).unwrap_or_default()).into_owned();
        let r = rbuild_runtime::user::resolve_in(&text("etc/passwd"), &text("etc/group"), Some(user))
            .map_err(|m| self.fail(ins, &m))?;
        Ok(Some((r.uid, r.gid)).filter(|ids| *ids != (0, 0)))
    }

    /// A COPY/ADD destination made absolute against the stage's WORKDIR.
    pub(super) fn in_workdir(&self, dest: &str) -> String {
        if dest.starts_with('/') {
            return dest.to_string();
        }
        let workdir = self.state.config["config"]["WorkingDir"].as_str().unwrap_or("/");
        format!("{}/{dest}", workdir.trim_end_matches('/'))
    }

    /// `--chown=USER[:GROUP]`: names are looked up in the stage's own /etc/passwd and /etc/group; a user alone
    /// gives the group of the same number (as Docker documents).
    pub(super) fn resolve_owner(&self, ins: &Instruction, spec: &str) -> Result<(u32, u32)> {
        let spec = self.expand(ins, spec)?;
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u.to_string(), Some(g.to_string())),
            None => (spec.clone(), None),
        };
        let lookup = |file: &str, name: &str, field: usize| -> Result<u32> {
            if let Ok(n) = name.parse::<u32>() {
                return Ok(n);
            }
            let text = self.read_stage_file(file).unwrap_or_default();
            String::from_utf8_lossy(&text)
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.first() == Some(&name))
                .and_then(|f| f.get(field).and_then(|v| v.parse().ok()))
                .ok_or_else(|| self.fail(ins, &format!("--chown={spec}: no {name:?} in the image's /{file}")))
        };
        let uid = lookup("etc/passwd", &user, 2)?;
        let gid = match group {
            Some(g) => lookup("etc/group", &g, 2)?,
            None => uid,
        };
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
