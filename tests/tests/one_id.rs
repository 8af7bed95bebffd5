//! Builds with ONE id mapped (a user without subordinate ids, the usual CI container user): `chown`, `COPY
//! --chown` and `USER` give the owners the Dockerfile asks for, in layers that list the same paths, modes and
//! owners as the same build with subordinate ids (and as root); id switches in a root step (`su`, apt's `_apt`)
//! are answered; `RBUILD_ONE_ID=root` keeps the old behaviour, where they fail.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use rbuild_tests::identity::{As, Workspace, identities};
use rbuild_tests::{FileServer, test_apt_repo, test_image};

const OWNERS: &str = "FROM busybox\n\
    RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group\n\
    RUN touch /x && chown 1000:1000 /x && mkdir -p /home/app && chown app:app /home/app && chmod 750 /home/app\n\
    COPY --chown=app:app f /home/app/f\n\
    USER app\n\
    RUN id -u > /home/app/uid && id -G > /home/app/groups && touch /home/app/g && mkdir /tmp/t\n\
    USER root\n\
    RUN su app -c 'id -u' > /su-uid && chown -h 1000 /home/app/f && stat -c %u:%g /x /home/app/f > /owners\n";

/// (path, type, mode, uid, gid) of every entry of every layer, layer by layer.
type Listing = Vec<Vec<(String, char, u32, u64, u64)>>;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The layers of the image in an OCI archive, listed.
fn layers_of(archive: &Path) -> Listing {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        files.insert(name, bytes);
    }
    let blob = |digest: &str| &files[&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))];
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let mut out = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let gz = flate2::read::GzDecoder::new(&blob(layer["digest"].as_str().unwrap())[..]);
        let mut entries = Vec::new();
        for e in tar::Archive::new(gz).entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            let kind = match h.entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => 'h',
                _ => '-',
            };
            let path = e.path().unwrap().to_string_lossy().into_owned();
            entries.push((path, kind, h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap()));
        }
        out.push(entries);
    }
    out
}

/// Build `dockerfile` as `who` (busybox loaded into its store first) into an OCI archive; returns the layers and
/// the build's output.
fn build(who: As, dockerfile: &str, env: &[&str]) -> (Listing, String, Workspace) {
    let s = Workspace::new(who, "one-id", &[("Dockerfile", dockerfile), ("f", "copied\n")]);
    let busybox = test_image("busybox");
    s.ok(env, &["load", "-i", busybox.to_str().unwrap(), "--name", "busybox"]);
    let out = s.dir.path().join("image.tar");
    let said = s.ok(env, &["build", "--progress", "plain", "-o", &format!("type=oci,dest={}", out.display()), "."]);
    (layers_of(&out), said, s)
}

fn entry<'a>(layers: &'a Listing, path: &str) -> &'a (String, char, u32, u64, u64) {
    layers
        .iter()
        .rev()
        .flatten()
        .find(|e| e.0.trim_end_matches('/') == path)
        .unwrap_or_else(|| panic!("{path} in no layer"))
}

#[test]
fn chown_copy_chown_and_user_give_the_asked_owners_with_one_id_as_with_subordinate_ids() {
    let mut listings = Vec::new();
    for who in identities() {
        let (layers, said, _s) = build(who, OWNERS, &[]);
        let owner = |p: &str| {
            let e = entry(&layers, p);
            (e.3, e.4)
        };
        for p in ["x", "home/app", "home/app/f", "home/app/uid", "home/app/g", "tmp/t"] {
            assert_eq!(owner(p), (1000, 1000), "{who:?}: {p}\n{said}");
        }
        assert_eq!(entry(&layers, "home/app").2 & 0o7777, 0o750, "{who:?}");
        // /tmp was only copied up by the USER step (a directory made in it): it stays root's, with its sticky bit.
        assert_eq!(owner("tmp"), (0, 0), "{who:?}");
        assert_eq!(entry(&layers, "tmp").2 & 0o7777, 0o1777, "{who:?}");
        listings.push((who, layers));
    }
    if let Some((_, reference)) = listings.iter().find(|(w, _)| *w != As::NoSubuid) {
        let (_, one_id) = listings.iter().find(|(w, _)| *w == As::NoSubuid).unwrap();
        assert_eq!(one_id, reference, "one id and subordinate ids give the same layers");
    }
}

#[test]
fn a_user_step_sees_its_own_id_and_a_root_step_s_id_switches_are_answered() {
    let (_, _, s) = build(As::NoSubuid, OWNERS, &[]);
    s.ok(&[], &["build", "-q", "-t", "owners", "."]);
    let run = |cmd: &str| s.ok(&[], &["run", "--rm", "owners", "sh", "-c", cmd]);
    assert!(run("cat /home/app/uid").starts_with("1000\n"), "id -u in the USER step");
    assert!(run("cat /su-uid").starts_with("1000\n"), "su app in a root step switched (emulated) ids");
    // stat in a root step shows what was chowned (so busybox's `chown -h 1000 f`, which fills in the group from
    // stat, kept the group 1000 COPY --chown gave).
    assert_eq!(run("cat /owners"), "1000:1000\n1000:1000\n", "stat shows the recorded owners");
}

#[test]
fn with_one_id_kept_as_root_ownership_changes_fail_as_before() {
    let s =
        Workspace::new(As::NoSubuid, "one-id-root", &[("Dockerfile", "FROM busybox\nRUN touch /x && chown 1000 /x\n")]);
    let busybox = test_image("busybox");
    s.ok(&[], &["load", "-i", busybox.to_str().unwrap(), "--name", "busybox"]);
    let out = s.rbuild(&["RBUILD_ONE_ID=root"], &["build", "--progress", "plain", "."]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("chown: /x: Invalid argument") && err.contains("only one user id is mapped"), "{err}");
}

/// apt switches to its `_apt` user to download: with one id, a root step's `apt-get update && apt-get install`
/// works on the Debian test image (packages from a loopback repository).
#[test]
fn apt_get_works_in_a_root_step_with_one_id() {
    let repo = FileServer::start(&test_apt_repo(&["attr"]));
    let debian = test_image("debian");
    let dockerfile = format!(
        "FROM debian\n\
         RUN echo 'deb [trusted=yes] http://127.0.0.1:{}/ ./' > /etc/apt/sources.list && rm -f /etc/apt/sources.list.d/* \
         && apt-get update && apt-get install -y --no-install-recommends attr && getfattr --version\n",
        repo.port
    );
    let s = Workspace::new(As::NoSubuid, "one-id-apt", &[("Dockerfile", &dockerfile)]);
    s.ok(&[], &["load", "-i", debian.to_str().unwrap(), "--name", "debian"]);
    let said = s.ok(&[], &["build", "--progress", "plain", "."]);
    assert!(said.contains("getfattr"), "{said}");
    assert!(!said.contains("couldn't be accessed by user '_apt'"), "apt kept its sandbox user: {said}");
    // Without the emulation, apt cannot switch to _apt (what every rootless builder hits with one id).
    let out = s.rbuild(&["RBUILD_ONE_ID=root"], &["build", "--no-cache", "--progress", "plain", "."]);
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("_apt"), "{err}");
}
