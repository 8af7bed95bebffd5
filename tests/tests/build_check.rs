//! `rbuild build --check` and `rbuild debug parse` on the real binary: valid Dockerfiles pass, and every kind of
//! bad input fails with the file, line (and column where it helps), the source line and what to do.

use rbuild_tests::{TempDir, run_rbuild};

struct Checked {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn check(dockerfile: &str, extra: &[&str]) -> Checked {
    let dir = TempDir::new("check");
    dir.write("Dockerfile", dockerfile);
    let ctx = dir.path().to_str().expect("utf-8 temp path").to_string();
    let mut args = vec!["build", "--check"];
    args.extend_from_slice(extra);
    args.push(&ctx);
    let out = run_rbuild(&args, None, None);
    Checked {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_fails(dockerfile: &str, line: usize, needles: &[&str]) {
    let r = check(dockerfile, &[]);
    assert!(!r.ok, "accepted:\n{dockerfile}\nstdout: {}", r.stdout);
    assert!(r.stderr.contains(&format!("Dockerfile:{line}:")), "no line {line} in: {}", r.stderr);
    for n in needles {
        assert!(r.stderr.contains(n), "missing {n:?} in:\n{}", r.stderr);
    }
}

const EVERY_INSTRUCTION: &str = r#"# syntax=docker/dockerfile:1
# check=skip=MaintainerDeprecated,LegacyKeyValueFormat;error=true
ARG BASE=busybox
FROM --platform=$BUILDPLATFORM ${BASE} AS build
LABEL org.opencontainers.image.title="demo" version=1
MAINTAINER someone@example.com
ENV A=1 B="two words"
ENV LEGACY value with spaces
ARG X Y=2
WORKDIR /src
COPY --chown=1000:1000 --chmod=0644 --link --exclude=*.tmp a.txt b/ ./
ADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 https://example.invalid/x /x
RUN --mount=type=cache,target=/root/.cache,sharing=locked --network=none echo hi
RUN <<EOF
echo from a heredoc
EOF
COPY <<-EOT /etc/conf
	key=value
	EOT
USER 1000:1000
EXPOSE 80 53/udp 8000-8010/tcp
VOLUME ["/data"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --start-interval=1s --retries=3 CMD wget -q localhost
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo child
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "echo ok"]

FROM build AS final
COPY --from=build --parents /src/./a.txt /out/
"#;

#[test]
fn every_instruction_passes() {
    let r = check(EVERY_INSTRUCTION, &[]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("OK (2 stages, 24 instructions)"), "{}", r.stdout);
    let r = check(EVERY_INSTRUCTION, &["--target", "build"]);
    assert!(r.ok, "{}", r.stderr);
}

#[test]
fn unknown_instruction_names_line_and_suggests() {
    assert_fails("FROM busybox\n\nRUNN echo\n", 3, &["unknown instruction: RUNN (did you mean RUN?)", "3 | RUNN echo"]);
}

#[test]
fn unknown_flag_lists_the_valid_ones_with_a_column() {
    assert_fails(
        "FROM busybox\nCOPY --form=x a b\n",
        2,
        &[
            "Dockerfile:2:6: unknown flag: --form for COPY",
            "did you mean from?",
            "--chmod, --chown, --exclude",
            "^^^^^^",
        ],
    );
    assert_fails("FROM busybox\nWORKDIR --x=1 /a\n", 2, &["unknown flag: --x for WORKDIR (it takes no flags)"]);
}

#[test]
fn malformed_flags_fail() {
    assert_fails("FROM busybox\nCOPY --chown a b\n", 2, &["missing a value on flag: chown"]);
    assert_fails("FROM busybox\nCOPY --link=maybe a b\n", 2, &["expecting boolean value for flag link, not: maybe"]);
    assert_fails("FROM busybox\nCOPY --from=a --from=b a b\n", 2, &["duplicate flag specified: from"]);
    assert_fails("FROM busybox\nCOPY --chmod=999 a b\n", 2, &["invalid chmod parameter: '999'"]);
    assert_fails("FROM busybox\nRUN --mount=type=cache echo\n", 2, &["has no target"]);
    assert_fails("FROM busybox\nRUN --mount=type=nfs,target=/x echo\n", 2, &["unsupported mount type"]);
    assert_fails("FROM busybox\nRUN --network=bridge echo\n", 2, &["unsupported network mode"]);
    assert_fails("FROM busybox\nHEALTHCHECK --interval=5 CMD true\n", 2, &["invalid --interval", "missing unit"]);
    assert_fails("FROM busybox\nHEALTHCHECK --retries=-1 CMD true\n", 2, &["--retries cannot be negative"]);
}

#[test]
fn healthcheck_forms() {
    assert_fails("FROM busybox\nHEALTHCHECK CMD\n", 2, &["Missing command after HEALTHCHECK CMD"]);
    assert_fails("FROM busybox\nHEALTHCHECK\n", 2, &["HEALTHCHECK requires at least one argument"]);
    assert_fails("FROM busybox\nHEALTHCHECK NONE x\n", 2, &["HEALTHCHECK NONE takes no arguments"]);
    assert_fails(
        "FROM busybox\nHEALTHCHECK CONNECT TCP 7000\n",
        2,
        &["Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)"],
    );
    assert!(check("FROM busybox\nHEALTHCHECK NONE\n", &[]).ok);
}

#[test]
fn argument_counts_and_forms() {
    assert_fails("FROM a b\n", 1, &["FROM requires either one or three arguments"]);
    assert_fails("FROM a AS 1st\n", 1, &["invalid name for build stage: \"1st\""]);
    // As BuildKit (testDuplicateStageName): a repeated stage name is a warning, not an error.
    let dup = check("FROM a AS x\nFROM b AS x\n", &[]);
    let said = format!("{}{}", dup.stdout, dup.stderr);
    assert!(dup.ok && said.contains("Duplicate stage name \"x\", stage names should be unique"), "{said}");
    assert_fails(
        "FROM a\nCOPY onlyone\n",
        2,
        &["COPY requires at least two arguments", "Destination could not be determined"],
    );
    assert_fails("FROM a\nUSER\n", 2, &["USER requires exactly one argument"]);
    assert_fails("FROM a\nSHELL /bin/sh -c\n", 2, &["SHELL requires the arguments to be in JSON form"]);
    assert_fails("FROM a\nEXPOSE http\n", 2, &["invalid containerPort: http"]);
    assert_fails("FROM a\nONBUILD ONBUILD RUN x\n", 2, &["Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"]);
    assert_fails("FROM a\nONBUILD FROM b\n", 2, &["FROM isn't allowed as an ONBUILD trigger"]);
    assert_fails("FROM a\nCOPY a <<EOF\nx\nEOF\n", 2, &["COPY cannot accept a heredoc as a destination"]);
    assert_fails("FROM a\nENV =x\n", 2, &["ENV names can not be blank"]);
}

#[test]
fn stage_structure() {
    assert_fails("ARG A\nCOPY a b\nFROM x\n", 2, &["COPY before the first FROM", "hint: only ARG may come before"]);
    assert_fails("ARG A\nARG B\n", 2, &["dockerfile contains no stages to build"]);
    let r = check("FROM busybox AS one\n", &["--target", "two"]);
    assert!(!r.ok && r.stderr.contains("target stage \"two\" could not be found") && r.stderr.contains("one"));
}

#[test]
fn parser_errors_name_the_line() {
    assert_fails("FROM a\nENV PATH\n", 2, &["ENV must have two arguments", "2 | ENV PATH", "hint:"]);
    assert_fails("FROM a\nCMD [\"a\", [\"b\"]]\n", 2, &["arrays must be comprised of strings only"]);
    assert_fails("FROM a\nRUN <<EOF\necho\n", 2, &["unterminated heredoc"]);
    assert_fails("# escape=x\nFROM a\n", 1, &["invalid escape token 'x' does not match ` or \\"]);
    let r = check("# only a comment\n", &[]);
    assert!(!r.ok && r.stderr.contains("file with no instructions"), "{}", r.stderr);
}

#[test]
fn bad_dockerignore_fails_the_check() {
    let dir = TempDir::new("check-ignore");
    dir.write("Dockerfile", "FROM busybox\n");
    dir.write(".dockerignore", "ok\n[oops\n");
    let out = run_rbuild(&["build", "--check", dir.path().to_str().unwrap()], None, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(".dockerignore:2: invalid .dockerignore pattern \"[oops\""), "{stderr}");
}

#[test]
fn dockerfile_from_stdin_and_missing_file() {
    let dir = TempDir::new("check-stdin");
    let ctx = dir.path().to_str().unwrap();
    let out = run_rbuild(&["build", "--check", "-f", "-", ctx], Some(b"FROM busybox\nRUN true\n"), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("-: OK (1 stage, 2 instructions)"));
    let out = run_rbuild(&["build", "--check", "-f", "-", ctx], Some(b"FROM busybox\nRUN\n"), None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("-:2:1: RUN requires at least one argument"));
    let out = run_rbuild(&["build", "--check", ctx], None, None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read Dockerfile"));
}

#[test]
fn building_from_an_absent_base_image_says_how_to_get_it() {
    let dir = TempDir::new("build");
    dir.write("Dockerfile", "FROM busybox\n");
    let store = dir.path().join("store");
    let out = run_rbuild(
        &["--root", store.to_str().unwrap(), "--offline", "build", dir.path().to_str().unwrap()],
        None,
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Dockerfile:1") && err.contains("offline mode") && err.contains("busybox"), "{err}");
    assert!(err.contains("rbuild load -i"), "{err}");
}

#[test]
fn debug_parse_prints_heredocs_and_fails_on_bad_input() {
    let dir = TempDir::new("parse");
    let f = dir.write("Dockerfile", "FROM a\nRUN 3<<EOF cat\nhi $X\nEOF\n");
    let out = run_rbuild(&["debug", "parse", f.to_str().unwrap()], None, None);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "(from \"a\")\n(run \"3<<EOF cat\" (heredoc [\"fd=3\"] \"EOF\" \"hi $X\\n\"))\n"
    );
    let bad = dir.write("Bad", "FROM a\nENV X\n");
    let out = run_rbuild(&["debug", "parse", bad.to_str().unwrap()], None, None);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Bad:2: ENV must have two arguments"));
    // The parser layer alone does not validate flags or instruction names.
    let lenient = dir.write("Lenient", "FROM a\nCOPY --bogus x y\nFOO bar\n");
    let out = run_rbuild(&["debug", "parse", lenient.to_str().unwrap()], None, None);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "(from \"a\")\n(copy [\"--bogus\"] \"x\" \"y\")\n(foo \"\")\n");
}

#[test]
fn project_dockerfiles_pass_the_check() {
    let root = rbuild_tests::workspace_root();
    let mut dirs = vec![root.join("examples/hello")];
    let mut workloads: Vec<_> =
        std::fs::read_dir(root.join("bench/workloads")).unwrap().map(|e| e.unwrap().path()).collect();
    workloads.sort();
    assert_eq!(workloads.len(), 9, "the nine benchmark workloads");
    // compose-chain is a Compose project: each service's directory has its Dockerfile (app3 a second, for v1).
    let mut files = Vec::new();
    for dir in workloads {
        if dir.ends_with("compose-chain") {
            for service in ["base", "app1", "app2", "app3", "ind1", "ind2"] {
                dirs.push(dir.join(service));
            }
            files.push((dir.join("app3/Dockerfile.v1"), dir.join("app3")));
        } else {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        let out = run_rbuild(&["build", "--check", dir.to_str().unwrap()], None, None);
        assert!(out.status.success(), "{}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    }
    for (file, dir) in files {
        let out = run_rbuild(&["build", "--check", "-f", file.to_str().unwrap(), dir.to_str().unwrap()], None, None);
        assert!(out.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    }
}
