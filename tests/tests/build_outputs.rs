//! `rbuild build` beyond the engine's core: the image config and history against a golden file, the contexts
//! (stdin, git, tarball URL), the outputs (`--output`, `--metadata-file`, `--load`), named contexts and the RUN
//! step flags. On the real binary, as root and (where it matters) as the unprivileged test user.

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

use rbuild_tests::build_fixture::{Builder, builders};
use rbuild_tests::{rbuild_bin, require_tool, workspace_root};

fn inspect_config(b: &Builder, image: &str) -> serde_json::Value {
    let out = b.rb(&["inspect", image]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Config"].clone()
}

/// The golden file's view of an image built on busybox: its config, with the base image's own history entries
/// and diff_ids replaced by a marker (they follow the busybox-static package the test image is made from).
fn config_view(b: &Builder, image: &str) -> serde_json::Value {
    let base = inspect_config(b, "busybox");
    let mut v = inspect_config(b, image);
    for (list, key) in [("history", None), ("rootfs", Some("diff_ids"))] {
        let base_list = match key {
            Some(k) => base[list][k].as_array().unwrap().clone(),
            None => base[list].as_array().unwrap().clone(),
        };
        let target = match key {
            Some(k) => &mut v[list][k],
            None => &mut v[list],
        };
        let items = target.as_array_mut().unwrap();
        assert_eq!(items[..base_list.len()], base_list[..], "the image starts with its base's {list}");
        items.splice(..base_list.len(), [serde_json::json!("<busybox>")]);
    }
    v
}

#[test]
fn image_config_and_history_equal_the_golden_file() {
    let golden_dir = workspace_root().join("tests/golden/config");
    let golden_file = workspace_root().join("tests/golden/config.json");
    for b in builders() {
        let ctx = b.context("golden", &[]);
        fs::create_dir_all(&ctx).unwrap();
        for f in ["Dockerfile", "hello.txt"] {
            fs::copy(golden_dir.join(f), ctx.join(f)).unwrap();
        }
        if b.as_user {
            Command::new("chown").arg("-R").arg(rbuild_tests::TEST_USER).arg(&ctx).status().unwrap();
        }
        let out = b.rb_env(
            &["build", "--progress", "plain", "-t", "golden", ctx.to_str().unwrap()],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let got = config_view(&b, "golden");
        if std::env::var_os("RBUILD_UPDATE_GOLDEN").is_some() && !b.as_user {
            fs::write(&golden_file, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        }
        let want: serde_json::Value = serde_json::from_slice(&fs::read(&golden_file).unwrap()).unwrap();
        assert_eq!(
            got,
            want,
            "as {}: the config differs from {} (RBUILD_UPDATE_GOLDEN=1 rewrites it)",
            if b.as_user { "user" } else { "root" },
            golden_file.display()
        );
        // What the config promises holds in the image.
        assert_eq!(b.run("golden", &["cat /built.txt /app/sub/hello.txt"]), "built 1.0\nhi\n");
        b.assert_clean();
    }
}
