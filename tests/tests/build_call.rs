//! `rbuild build --call outline|targets|subrequests.describe` on the real binary: BuildKit's own outline and
//! targets tests (frontend/dockerfile/dockerfile_outline_test.go, dockerfile_targets_test.go), ported line for line
//! on the JSON rbuild prints (`,format=json` is BuildKit's `result.json`), plus the tables docker buildx prints.

use rbuild_tests::{TempDir, run_rbuild};
use serde_json::Value;

fn call(dockerfile: &str, extra: &[&str]) -> (Value, String) {
    let dir = TempDir::new("call");
    dir.write("Dockerfile", dockerfile);
    let ctx = dir.path().to_str().expect("utf-8 temp path").to_string();
    let run = |json: bool| {
        let mut args: Vec<&str> = vec!["build"];
        args.extend_from_slice(extra);
        if json {
            let i = args.iter().position(|a| *a == "--call").unwrap() + 1;
            let with_json = format!("{},format=json", args[i]);
            let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            a[i] = with_json;
            a.push(ctx.clone());
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            run_rbuild(&a, None, None)
        } else {
            args.push(&ctx);
            run_rbuild(&args, None, None)
        }
    };
    let out = run(true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let text = run(false);
    assert!(text.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    (json, String::from_utf8_lossy(&text.stdout).into_owned())
}

fn line(v: &Value) -> u64 {
    v["location"]["ranges"][0]["start"]["line"].as_u64().expect("a location line")
}

fn source(v: &Value) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.decode(v["sources"][0].as_str().unwrap()).unwrap();
    String::from_utf8(b).unwrap()
}

const OUTLINE_ARGS: &str = r#"
ARG inherited=box
ARG inherited2=box2
ARG unused=abc${inherited2}
# sfx is a suffix
ARG sfx="usy${inherited}"

FROM b${sfx} AS first
# this is not assigned to anything
ARG FOO=123
# BAR is a number
ARG BAR=456
RUN true

FROM alpine${unused} AS second
ARG BAZ
RUN true

FROM scratch AS third
ARG ABC=a
# check=skip=all
ARG password
# alternate_password will show up in the outline
# check=skip=all
ARG alternate_password

# target defines build target
FROM third AS target
COPY --from=first /etc/passwd /

FROM second
"#;

/// BuildKit testOutlineArgs: the target's name and description, and the 7 args it and the stages it needs use
/// (globals only when a needed FROM line refers to them, directly or through another arg), with values (a
/// --build-arg wins), descriptions and lines.
#[test]
fn outline_lists_the_args_the_target_uses() {
    let (o, text) = call(OUTLINE_ARGS, &["--call", "outline", "--build-arg", "BAR=678", "--target", "target"]);
    assert_eq!(o["name"], "target");
    assert_eq!(o["description"], "defines build target");
    assert_eq!(source(&o), OUTLINE_ARGS);
    let args = o["args"].as_array().unwrap();
    let got: Vec<(&str, &str, &str, u64)> = args
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap(),
                a["value"].as_str().unwrap_or(""),
                a["description"].as_str().unwrap_or(""),
                line(a),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("inherited", "box", "", 2),
            ("sfx", "usybox", "is a suffix", 6),
            ("FOO", "123", "", 10),
            ("BAR", "678", "is a number", 12),
            ("ABC", "a", "", 20),
            ("password", "", "", 22),
            ("alternate_password", "", "will show up in the outline", 25),
        ]
    );
    // docker buildx's table.
    assert!(text.starts_with("TARGET:      target\nDESCRIPTION: defines build target\n\nBUILD ARG "), "{text}");
    assert!(text.contains("\nsfx                  usybox   is a suffix\n"), "{text}");
}

const OUTLINE_SECRETS: &str = r#"
FROM busybox AS first
RUN --mount=type=secret,target=/etc/passwd,required=true --mount=type=ssh true

FROM alpine AS second
RUN --mount=type=secret,id=unused --mount=type=ssh,id=ssh2 true

FROM scratch AS third
ARG BAR
RUN --mount=type=secret,id=second${BAR} true

FROM third AS target
COPY --from=first /foo /
RUN --mount=type=ssh,id=ssh3,required true

FROM second
"#;

/// BuildKit testOutlineSecrets: only the secrets and SSH agents of the stages the target needs, named (a secret
/// without an id by its target's file name; ids expanded), required or not, with their lines.
#[test]
fn outline_lists_the_secrets_and_ssh_agents_the_target_needs() {
    let (o, text) = call(OUTLINE_SECRETS, &["--call", "outline", "--build-arg", "BAR=678", "--target", "target"]);
    let mounts = |key: &str| -> Vec<(String, bool, u64)> {
        o[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_string(), s["required"].as_bool().unwrap_or(false), line(s)))
            .collect()
    };
    assert_eq!(mounts("secrets"), [("passwd".to_string(), true, 3), ("second678".to_string(), false, 10)]);
    assert_eq!(mounts("ssh"), [("default".to_string(), false, 3), ("ssh3".to_string(), true, 14)]);
    assert!(text.contains("SECRET      REQUIRED\npasswd      true\nsecond678   \n"), "{text}");
}

/// BuildKit testOutlineRecursiveArgs: args defined from themselves and each other, globally and in the stage.
#[test]
fn outline_resolves_args_defined_from_each_other() {
    let df = "\nARG FOO=123\nARG ABC=abc\nARG DEF=def\nARG FOO=${FOO}${ABC}\nARG BAR=${FOO}456\nARG FOO=${FOO}456${BAR}\n\
              FROM scratch\nARG FOO\nARG INFOO=123\nARG INBAR=${INFOO}456\nARG INFOO=${INFOO}456${INBAR}\n";
    let (o, _) = call(df, &["--call", "outline"]);
    let got: Vec<(&str, &str)> = o["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("ABC", "abc"),
            ("BAR", "123abc456"),
            ("FOO", "123abc456123abc456"),
            ("INBAR", "123456"),
            ("INFOO", "123456123456"),
        ]
    );
}

/// BuildKit testOutlineDescribeDefinition and testTargetsDescribeDefinition: the calls are described as rpc
/// subrequests with a version.
#[test]
fn subrequests_describe_lists_outline_and_targets() {
    let (v, _) = call("FROM scratch\nCOPY Dockerfile Dockerfile\n", &["--call", "subrequests.describe"]);
    for name in ["frontend.outline", "frontend.targets"] {
        let r = v.as_array().unwrap().iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("{name}: {v}"));
        assert_eq!(r["type"], "rpc");
        assert!(!r["version"].as_str().unwrap().is_empty());
    }
}

/// BuildKit testTargetsList: every stage in order with its base, description, line, and the default (last) one.
#[test]
fn targets_lists_every_stage() {
    let df = "\n# build defines stage for compiling the binary\nFROM alpine AS build\nRUN true\n\nFROM busybox as second\n\
              RUN false\n\nFROM alpine\nRUN false\n\n# binary returns the compiled binary\nFROM second AS binary\n";
    let (v, text) = call(df, &["--call", "targets"]);
    assert_eq!(source(&v), df);
    let got: Vec<(&str, &str, &str, bool, u64)> = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or(""),
                t["base"].as_str().unwrap_or(""),
                t["description"].as_str().unwrap_or(""),
                t["default"].as_bool().unwrap_or(false),
                line(t),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("build", "alpine", "defines stage for compiling the binary", false, 3),
            ("second", "busybox", "", false, 6),
            ("", "alpine", "", false, 9),
            ("binary", "second", "returns the compiled binary", true, 13),
        ]
    );
    assert_eq!(
        text,
        "TARGET           DESCRIPTION\nbuild            defines stage for compiling the binary\nsecond           \n\
         \x20                \nbinary (default) returns the compiled binary\n",
        "an unnamed stage is an empty, padded cell (Go's tabwriter)"
    );
}

/// An unknown method or option is refused with what there is.
#[test]
fn an_unknown_call_is_refused() {
    let dir = TempDir::new("call-bad");
    dir.write("Dockerfile", "FROM scratch\n");
    let out = run_rbuild(&["build", "--call", "lint2", dir.path().to_str().unwrap()], None, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("unknown method \"lint2\"") && err.contains("outline"), "{err}");
}
