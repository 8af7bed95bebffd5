//! What jobs in containers build and how their images are checked, shared by the CI-container tests (the
//! namespace tiers) and the container-isolation tests: a Dockerfile with RUN, COPY, a cache mount, a secret, an
//! opaque directory and a whiteout ([`BASE`]), ownership changes ([`IDS`]: `chown`, `COPY --chown`, `USER`), and
//! [`check_image`], which reads the image a job wrote with the tests' own reader.

use std::path::{Path, PathBuf};

use crate::image_files::ImageFiles;
use crate::{PrivateDockerd, running_as_root, static_rbuild_bin};

/// A private Docker engine with busybox loaded, and the static rbuild to run in its containers; or why not (root is
/// needed, a static binary, an engine that starts), for the test to say it skipped.
pub fn engine_and_static_rbuild() -> Result<(PrivateDockerd, PathBuf), String> {
    if !running_as_root() {
        return Err("starting a Docker engine needs root".into());
    }
    let bin = static_rbuild_bin()
        .ok_or("rbuild is linked dynamically here (scripts/test builds it static; or run scripts/dist)")?;
    let engine =
        PrivateDockerd::try_start().map_err(|why| format!("the private Docker engine did not start: {why}"))?;
    engine.load_layout(&crate::test_image("busybox"), "busybox:latest");
    Ok((engine, bin))
}

pub const BASE: &str = "FROM busybox
RUN mkdir -p /d/sub && echo a > /d/a && echo b > /d/sub/b && echo gone > /gone
RUN rm -rf /d && mkdir /d && echo n > /d/n && rm /gone
RUN test ! -e /d/a && test ! -e /d/sub && test ! -e /gone && echo hidden > /hidden-in-build
RUN --mount=type=cache,target=/cache echo filled > /cache/c && cp /cache/c /from-cache
RUN sleep 600 & echo a step that leaves a process behind ends all the same
RUN --mount=type=secret,id=token grep -q cret-val /run/secrets/token && echo used > /secret-used
COPY f /f
";

pub const IDS: &str =
    "RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group \
&& mkdir -p /owned /home/app && chown 1000:1000 /owned /home/app
COPY --chown=1000:1000 f /owned/f
USER app
RUN id -u > /home/app/uid && touch /owned/by-app
";

/// Every blob of the layout, decompressed where it is gzip, holds no `needle`.
pub fn no_blob_holds(layout: &Path, needle: &[u8]) -> bool {
    use std::io::Read;
    std::fs::read_dir(layout.join("blobs/sha256")).unwrap().flatten().all(|e| {
        let raw = std::fs::read(e.path()).unwrap();
        let mut data = Vec::new();
        if flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut data).is_err() {
            data = raw;
        }
        !data.windows(needle.len()).any(|w| w == needle)
    })
}

pub fn check_image(layout: &Path, ids: bool) -> Result<(), String> {
    let image = ImageFiles::from_layout(layout).map_err(|e| format!("cannot read the image: {e}"))?;
    let content = |p: &str| image.files.get(p).map(|f| String::from_utf8_lossy(&f.content).into_owned());
    for (path, want) in [
        ("/d/n", "n\n"),
        ("/from-cache", "filled\n"),
        ("/hidden-in-build", "hidden\n"),
        ("/secret-used", "used\n"),
        ("/f", "context\n"),
    ] {
        if content(path).as_deref() != Some(want) {
            return Err(format!("{path}: {:?}, expected {want:?}", content(path)));
        }
    }
    for hidden in ["/d/a", "/d/sub", "/d/sub/b", "/gone", "/run/secrets/token"] {
        if image.files.contains_key(hidden) {
            return Err(format!("{hidden} shows through (opaque directory or whiteout lost)"));
        }
    }
    if !no_blob_holds(layout, b"s3cret-value") {
        return Err("the secret's value is in a blob of the image".into());
    }
    if ids {
        let owner = |p: &str| image.files.get(p).map(|f| (f.uid, f.gid));
        for p in ["/owned", "/owned/f", "/owned/by-app"] {
            if owner(p) != Some((1000, 1000)) {
                return Err(format!("{p}: owner {:?}, expected 1000:1000", owner(p)));
            }
        }
        if content("/home/app/uid").as_deref() != Some("1000\n") {
            return Err(format!("USER app ran as {:?}", content("/home/app/uid")));
        }
        if image.config["config"]["User"] != "app" {
            return Err(format!("config User {}", image.config["config"]["User"]));
        }
    }
    Ok(())
}
