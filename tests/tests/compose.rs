//! `rbuild compose` with the real binary: the seed documents' patterns (multi-stage targets, dependent images
//! with and without `additional_contexts`, `build:` + `image:`, `dockerfile: ../x`, `dockerfile_inline`, args
//! as map and list and from `.env`), one graph for the whole project (a shared stage runs once, counted from
//! rawjson events), every build key applied or refused, push to a real registry, `config` against golden files,
//! and clear errors naming the file and the path. Builds run as the unprivileged user and as root.

use std::path::Path;
use std::process::Output;

use rbuild_tests::build_fixture::{Builder, builders};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `rbuild compose ARGS` in `dir`; (success, stdout, stderr).
fn compose(b: &Builder, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut all = vec!["compose"];
    all.extend_from_slice(args);
    let out: Output = b.rb_in(Some(dir), &all, env);
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// How many times a step whose name contains `needle` ran (started and not answered from the cache), from
/// rawjson progress on stderr.
fn runs_of(stderr: &str, needle: &str) -> usize {
    let events: Vec<serde_json::Value> = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let started: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "started" && e["name"].as_str().is_some_and(|n| n.contains(needle)))
        .filter_map(|e| e["step"].as_u64())
        .collect();
    started.iter().filter(|s| !events.iter().any(|e| e["event"] == "cached" && e["step"].as_u64() == Some(**s))).count()
}

const SEED_MULTISTAGE: &str = "FROM busybox as base\nRUN echo openssl > /base-pkg\n\n\
    FROM base as service_a\nRUN echo a > /service\n\nFROM base as service_b\nRUN echo b > /service\n";

#[test]
fn seed_multistage_targets_share_the_base_stage() {
    for b in builders() {
        let dir = b.context(
            "seed-targets",
            &[
                ("Dockerfile", SEED_MULTISTAGE),
                ("compose.yaml", "services:\n  a:\n     build:\n       target: service_a\n  b:\n     build:\n       target: service_b\n"),
            ],
        );
        let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "rawjson"], &[]);
        assert!(ok, "{err}");
        assert_eq!(runs_of(&err, "RUN echo openssl"), 1, "the shared base step ran more than once:\n{err}");
        assert_eq!(b.run("seed-targets-a", &["cat", "/service", "/base-pkg"]), "a\nopenssl\n");
        assert_eq!(b.run("seed-targets-b", &["cat", "/service", "/base-pkg"]), "b\nopenssl\n");
        assert!(
            err.contains("service a: built seed-targets-a sha256:") && err.contains("service b: built seed-targets-b"),
            "{err}"
        );
        // Nothing changed: every service is CACHED.
        let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "plain"], &[]);
        assert!(ok && err.matches("(CACHED)").count() == 2, "{err}");
        b.assert_clean();
    }
}

#[test]
fn four_services_sharing_a_base_run_it_once() {
    let b = Builder::new(rbuild_tests::running_as_root());
    let mut dockerfile = String::from("FROM busybox AS base\nRUN echo shared-setup > /shared && sleep 0.3\n");
    let mut yaml = String::from("services:\n");
    for i in 1..=4 {
        dockerfile.push_str(&format!("FROM base AS s{i}\nRUN echo {i} > /own\n"));
        yaml.push_str(&format!("  s{i}:\n    build:\n      target: s{i}\n"));
    }
    let dir = b.context("four", &[("Dockerfile", &dockerfile), ("compose.yaml", &yaml)]);
    let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "rawjson", "--jobs", "4"], &[]);
    assert!(ok, "{err}");
    assert_eq!(runs_of(&err, "RUN echo shared-setup"), 1, "{err}");
    for i in 1..=4 {
        assert_eq!(b.run(&format!("four-s{i}"), &["cat", "/shared", "/own"]), format!("shared-setup\n{i}\n"));
        assert!(err.contains(&format!("\"name\":\"[s{i} s{i} 2/2] RUN echo {i} > /own\"")), "{err}");
    }
    b.assert_clean();
}

#[test]
fn seed_dependent_images_with_and_without_additional_contexts() {
    for b in builders() {
        let files = |extra: &str| {
            vec![
                ("a.Dockerfile", "FROM busybox\nRUN echo from-a > /a-marker\n".to_string()),
                ("b/b.Dockerfile", "FROM service_a\nRUN cat /a-marker > /b-saw\n".to_string()),
                (
                    "compose.yaml",
                    format!(
                        "services:\n  a:\n     image: service_a\n     build:\n       dockerfile: a.Dockerfile\n  b:\n     image: service_b\n     build:\n       context: b/\n       dockerfile: b.Dockerfile\n{extra}"
                    ),
                ),
            ]
        };
        let declared = files("       additional_contexts:\n         service_a: \"service:a\"\n");
        let declared: Vec<(&str, &str)> = declared.iter().map(|(a, b)| (*a, b.as_str())).collect();
        let dir = b.context("dep-declared", &declared);
        let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "plain"], &[]);
        assert!(ok, "{err}");
        assert_eq!(b.run("service_b", &["cat", "/b-saw"]), "from-a\n");
        // Without additional_contexts rbuild reads the Dockerfile and finds the dependency itself.
        let plain = files("");
        let plain: Vec<(&str, &str)> = plain.iter().map(|(a, b)| (*a, b.as_str())).collect();
        let dir = b.context("dep-found", &plain);
        let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "plain", "--no-cache"], &[]);
        assert!(ok, "{err}");
        assert!(err.contains("note: service b uses service_a, the image of service a: building a first"), "{err}");
        assert_eq!(b.run("service_b", &["cat", "/b-saw"]), "from-a\n");
        // Asking for b alone builds a first.
        let (ok, _, err) = compose(&b, &dir, &["build", "b", "--progress", "plain"], &[]);
        assert!(ok && err.contains("service a: built service_a"), "{err}");
        b.assert_clean();
    }
}

#[test]
fn seed_build_reference_example_tags_images_and_resolves_paths() {
    let b = Builder::new(rbuild_tests::running_as_root());
    let home = b.context("home", &[("custom/Dockerfile", "FROM busybox\nRUN echo custom > /which\n")]);
    let dir = b.context(
        "example",
        &[
            ("webapp/Dockerfile", "FROM busybox\nRUN echo webapp > /which\n"),
            ("backend/main.txt", "backend source\n"),
            ("backend.Dockerfile", "FROM busybox\nCOPY main.txt /main.txt\n"),
            (
                "compose.yaml",
                "services:\n  frontend:\n    image: example/webapp\n    build: ./webapp\n\n  backend:\n    image: example/database\n    build:\n      context: backend\n      dockerfile: ../backend.Dockerfile\n\n  custom:\n    build: ~/custom\n",
            ),
        ],
    );
    let home_s = home.to_str().unwrap();
    let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "plain"], &[("HOME", home_s)]);
    assert!(ok, "{err}");
    assert!(
        err.contains("warning:") && err.contains("services.custom.build.context") && err.contains("not portable"),
        "{err}"
    );
    assert_eq!(b.run("example/webapp", &["cat", "/which"]), "webapp\n");
    assert_eq!(b.run("example/database", &["cat", "/main.txt"]), "backend source\n");
    assert_eq!(b.run("example-custom", &["cat", "/which"]), "custom\n");
    // Pushing skips the service without image:, as Compose does (offline: the others fail to reach a registry).
    let (_, _, err) = compose(&b, &dir, &["push", "custom"], &[("HOME", home_s)]);
    assert!(err.contains("service custom has no image: to push to; skipped"), "{err}");
    b.assert_clean();
}

#[test]
fn dockerfile_inline_and_args_from_map_list_env_and_flags() {
    for b in builders() {
        let dir = b.context(
            "args",
            &[
                (".env", "FROM_DOTENV=dotenv-value\nAPI_URL=http://api.internal\n"),
                (
                    "compose.yaml",
                    "services:\n  inline:\n    build:\n      dockerfile_inline: |\n        FROM busybox\n        ARG GIT_COMMIT\n        ARG VITE_API_URL\n        ARG FROM_SHELL\n        RUN echo \"$$GIT_COMMIT $$VITE_API_URL $$FROM_SHELL\" > /args\n      args:\n        GIT_COMMIT: cdc3b19\n        VITE_API_URL: \"${API_URL:-http://localhost:8080}\"\n        FROM_SHELL:\n  listed:\n    build:\n      dockerfile_inline: |\n        FROM busybox\n        ARG ONE\n        ARG TWO\n        RUN echo \"$${ONE} $${TWO}\" > /args\n      args:\n        - ONE=${FROM_DOTENV}\n        - TWO\n",
                ),
            ],
        );
        let env = [("FROM_SHELL", "shell-value"), ("TWO", "two-from-env")];
        let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "plain"], &env);
        assert!(ok, "{err}");
        assert_eq!(b.run("args-inline", &["cat", "/args"]), "cdc3b19 http://api.internal shell-value\n");
        assert_eq!(b.run("args-listed", &["cat", "/args"]), "dotenv-value two-from-env\n");
        // --build-arg applies to every service and wins.
        let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "plain", "--build-arg", "ONE=flag"], &env);
        assert!(ok, "{err}");
        assert_eq!(b.run("args-listed", &["cat", "/args"]), "flag two-from-env\n");
        b.assert_clean();
    }
}

#[test]
fn every_build_key_is_applied() {
    for b in builders() {
        let sock = b.work.join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        if b.as_user {
            rbuild_tests::give_to_test_user(&sock);
        }
        let dir = b.context(
            "keys",
            &[
                ("token.txt", "file-secret"),
                (
                    "Dockerfile",
                    "FROM busybox AS base\nRUN echo base > /base\n\
                     FROM base AS final\n\
                     RUN --network=none sh -c 'tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d \" \"' > /net\n\
                     RUN grep -wE 'db|db2|v6' /etc/hosts | tr -s ' \\t' ' ' > /hosts\n\
                     RUN df -k /dev/shm | tail -1 | awk '{print $2}' > /shm && ulimit -n > /nofile\n\
                     RUN --mount=type=secret,id=token --mount=type=secret,id=api_key sh -c 'cat /run/secrets/token; echo; cat /run/secrets/api_key; echo' > /secrets-seen-ok\n\
                     RUN --mount=type=ssh sh -c 'test -S $SSH_AUTH_SOCK && echo agent' > /ssh\n\
                     RUN --security=insecure echo insecure-ok > /insecure\n\
                     RUN --network=host echo host-ok > /hostnet\n",
                ),
                (
                    "compose.yaml",
                    "secrets:\n  token:\n    file: ./token.txt\n  api:\n    environment: API_KEY\n\
                     services:\n  web:\n    image: keys/web:1\n    build:\n      context: .\n      target: final\n\
                     \x20     labels:\n        com.example.department: Finance\n        com.example.empty: \"\"\n\
                     \x20     tags: [\"keys/web:extra\"]\n      network: none\n\
                     \x20     extra_hosts:\n        - \"db=10.0.0.5\"\n        - \"db2:10.0.0.6\"\n        - \"v6=[::1]\"\n\
                     \x20     shm_size: '32m'\n      ulimits:\n        nofile:\n          soft: 2048\n          hard: 4096\n\
                     \x20     secrets:\n        - token\n        - source: api\n          target: api_key\n\
                     \x20     ssh: [\"default\"]\n      no_cache_filter: final\n      platforms: [\"linux/amd64\"]\n\
                     \x20     privileged: true\n      entitlements: [network.host]\n      isolation: default\n\
                     \x20     sbom: true\n      provenance: false\n      pull: false\n      no_cache: false\n\
                     \x20     cache_to: [\"type=local,dest=cache-out\"]\n      cache_from: [\"type=local,src=cache-out\"]\n",
                ),
            ],
        );
        let sock_s = sock.to_str().unwrap();
        let env = [("API_KEY", "env-secret"), ("SSH_AUTH_SOCK", sock_s)];
        let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "plain"], &env);
        assert!(ok, "{err}");
        assert!(err.contains("sbom") && !err.contains("provenance attestations"), "{err}");
        let v: serde_json::Value = serde_json::from_slice(&b.rb(&["inspect", "keys/web:extra"]).stdout).unwrap();
        assert_eq!(v["Config"]["config"]["Labels"]["com.example.department"], "Finance");
        assert_eq!(v["Config"]["config"]["Labels"]["com.example.empty"], "");
        let out = b.run(
            "keys/web:1",
            &["cat", "/base", "/net", "/hosts", "/shm", "/nofile", "/secrets-seen-ok", "/ssh", "/insecure", "/hostnet"],
        );
        assert_eq!(
            out,
            "base\nlo\n10.0.0.5 db\n10.0.0.6 db2\n::1 v6\n32768\n2048\nfile-secret\nenv-secret\nagent\ninsecure-ok\nhost-ok\n"
        );
        // The cache went out, and no_cache_filter re-runs the final stage only.
        assert!(dir.join("cache-out/index.json").is_file());
        let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "plain"], &env);
        assert!(ok && err.contains("(7 steps run, 1 cached)"), "{err}");
        b.assert_clean();
    }
}

#[test]
fn unsupported_build_keys_are_refused_clearly() {
    let b = Builder::new(false);
    let cases: [(&str, &str); 7] = [
        (
            "platforms: [\"linux\"]",
            "services.web.build.platforms[0]: invalid platform \"linux\": write os/architecture[/variant]",
        ),
        (
            "isolation: hyperv",
            "services.web.build.isolation: \"hyperv\": isolation modes are a Windows container option",
        ),
        (
            "network: custom_network_1",
            "services.web.build.network: \"custom_network_1\": rbuild has no container networks",
        ),
        (
            "secrets: [missing]",
            "services.web.build.secrets[0]: secret \"missing\" is not defined in the top-level secrets",
        ),
        (
            "dockerfile: Dockerfile\n      dockerfile_inline: \"FROM busybox\"",
            "dockerfile and dockerfile_inline cannot both be set",
        ),
        ("entitlements: [device]", "\"device\": rbuild knows network.host and security.insecure"),
        ("shm_size: huge", "services.web.build.shm_size: \"huge\": expected bytes or a size like 2gb"),
    ];
    for (i, (key, message)) in cases.iter().enumerate() {
        let dir = b.context(
            &format!("refused-{i}"),
            &[
                ("Dockerfile", "FROM busybox\n"),
                ("compose.yaml", &format!("services:\n  web:\n    build:\n      context: .\n      {key}\n")),
            ],
        );
        let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "plain"], &[]);
        assert!(!ok && err.contains(message) && err.contains("compose.yaml"), "{key}: {err}");
    }
}

#[test]
fn cycles_between_services_are_errors_naming_them() {
    let b = Builder::new(false);
    let dir = b.context(
        "cycle",
        &[
            ("a.Dockerfile", "FROM cycle/b\n"),
            ("b.Dockerfile", "FROM cycle/a\n"),
            (
                "compose.yaml",
                "services:\n  a:\n    image: cycle/a\n    build: {dockerfile: a.Dockerfile}\n  b:\n    image: cycle/b\n    build: {dockerfile: b.Dockerfile}\n",
            ),
        ],
    );
    let (ok, _, err) = compose(&b, &dir, &["build"], &[]);
    assert!(!ok && (err.contains("cycle: a -> b -> a") || err.contains("cycle: b -> a -> b")), "{err}");
}

#[test]
fn push_sends_every_image_with_a_name_to_the_registry() {
    use rbuild_tests::registry_fixture::{RegistryAuth, RegistryServer};
    let registry = RegistryServer::start(RegistryAuth::None, false);
    let host = registry.host();
    let b = Builder::new(rbuild_tests::running_as_root());
    let dir = b.context(
        "pushing",
        &[
            ("Dockerfile", "FROM busybox\nRUN echo pushed > /p\n"),
            (
                "compose.yaml",
                &format!("services:\n  web:\n    image: {host}/proj/web:1\n    build: .\n  local:\n    build: .\n"),
            ),
        ],
    );
    let env = [("RBUILD_OFFLINE", "0")];
    let (ok, _, err) = compose(&b, &dir, &["build", "--push", "--progress", "plain"], &env);
    assert!(ok && err.contains("service local has no image: to push to; not pushed"), "{err}");
    let (ok, _, err) = compose(&b, &dir, &["push"], &env);
    assert!(ok && err.contains(&format!("web: pushed {host}/proj/web:1")) && err.contains("0 blobs uploaded"), "{err}");
    let out = std::process::Command::new(rbuild_tests::require_tool("skopeo"))
        .args(["inspect", "--tls-verify=false", &format!("docker://{host}/proj/web:1")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `compose config` with everything that shapes the model: two -f files, .env interpolation, extends from
/// another file, include, profiles, merge keys, strict booleans.
fn config_project(b: &Builder) -> std::path::PathBuf {
    b.context(
        "cfg",
        &[
            (".env", "TAG=1.2\nDEBUG=yes\n"),
            ("base.yaml", "services:\n  common:\n    build:\n      context: ./common\n      args: [\"FROM_BASE=1\"]\n    labels:\n      from.base: \"true\"\n"),
            ("inc/compose.yaml", "services:\n  worker:\n    build: .\n    image: worker:${TAG}\n"),
            (
                "compose.yaml",
                "x-defaults: &defaults\n  restart: \"no\"\n  labels:\n    debug: ${DEBUG}\ninclude:\n  - inc/compose.yaml\nservices:\n  web:\n    <<: *defaults\n    image: web:${TAG:-latest}\n    build:\n      context: ./web\n      args:\n        VERSION: ${TAG}\n  api:\n    extends:\n      file: base.yaml\n      service: common\n    build:\n      target: prod\n  tools:\n    profiles: [debug]\n    image: tools\n",
            ),
            ("compose.override.yaml", "services:\n  web:\n    build:\n      args:\n        EXTRA: \"on\"\n"),
        ],
    )
}

#[test]
fn config_matches_the_golden_model() {
    let b = Builder::empty(false);
    let dir = config_project(&b);
    let (ok, out, err) = compose(&b, &dir, &["config"], &[]);
    assert!(ok, "{err}");
    let got = out.replace(dir.to_str().unwrap(), "<dir>");
    let golden = rbuild_tests::workspace_root().join("tests/golden/compose/config.yaml");
    if std::env::var_os("RBUILD_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &got).unwrap();
    }
    assert_eq!(got, std::fs::read_to_string(&golden).unwrap(), "RBUILD_UPDATE_GOLDEN=1 rewrites the golden file");
    let (ok, out, _) = compose(&b, &dir, &["config", "--services"], &[]);
    assert!(ok && out == "api\nweb\nworker\n", "{out}");
    let (ok, out, _) = compose(&b, &dir, &["--profile", "debug", "config", "--services"], &[]);
    assert!(ok && out == "api\ntools\nweb\nworker\n", "{out}");
    let (ok, out, _) = compose(&b, &dir, &["config", "--services"], &[("COMPOSE_PROFILES", "debug")]);
    assert!(ok && out.contains("tools"), "{out}");
}

/// `compose config` output read back as a compose file gives the same project: `$$` stays `$$`, and a build arg
/// without a value shows the environment's value (as `docker compose config`).
#[test]
fn config_output_round_trips() {
    let b = Builder::empty(false);
    let dir = config_project(&b);
    std::fs::write(
        dir.join("compose.override.yaml"),
        "services:\n  web:\n    build:\n      args:\n        EXTRA: \"on\"\n        PRICE: \"$$5\"\n        FROM_ENV:\n      \
         labels:\n        cost: \"$${HOME}\"\n    command: echo $$HOME\n",
    )
    .unwrap();
    let env = [("FROM_ENV", "from the environment")];
    let (ok, first, err) = compose(&b, &dir, &["config"], &env);
    assert!(ok, "{err}");
    assert!(first.contains("PRICE: $$5") && first.contains("cost: $${HOME}"), "{first}");
    assert!(first.contains("command: echo $$HOME") && first.contains("FROM_ENV: from the environment"), "{first}");
    std::fs::write(dir.join("resolved.yaml"), &first).unwrap();
    let (ok, second, err) = compose(&b, &dir, &["-f", "resolved.yaml", "config"], &env);
    assert!(ok, "{err}");
    assert_eq!(first, second, "the config of the config is the config");
}

#[test]
fn files_names_and_variables_are_found_like_compose() {
    let b = Builder::empty(false);
    let dir = b.context(
        "My_Project.Dir",
        &[
            ("docker-compose.yml", "services:\n  web:\n    image: ${IMAGE:?set IMAGE to the image name}\n"),
            ("other.yaml", "name: from-file\nservices:\n  other:\n    image: o\n"),
            ("sub/deeper/.keep", ""),
        ],
    );
    // Discovery from a subdirectory; the required variable's message.
    let (ok, _, err) = compose(&b, &dir.join("sub/deeper"), &["config"], &[]);
    assert!(
        !ok && err.contains("docker-compose.yml") && err.contains("services.web.image") && err.contains("set IMAGE"),
        "{err}"
    );
    let (ok, out, err) = compose(&b, &dir.join("sub/deeper"), &["config"], &[("IMAGE", "img")]);
    assert!(ok && out.contains("name: my_projectdir") && out.contains("image: img"), "{out}{err}");
    // -p, COMPOSE_PROJECT_NAME, name:, COMPOSE_FILE.
    let (_, out, _) = compose(&b, &dir, &["-p", "Chosen", "config"], &[("IMAGE", "i")]);
    assert!(out.contains("name: chosen"), "{out}");
    let (_, out, _) = compose(&b, &dir, &["config"], &[("IMAGE", "i"), ("COMPOSE_PROJECT_NAME", "fromenv")]);
    assert!(out.contains("name: fromenv"), "{out}");
    let (_, out, _) = compose(&b, &dir, &["config"], &[("COMPOSE_FILE", "other.yaml")]);
    assert!(out.contains("name: from-file") && out.contains("image: o"), "{out}");
    // Several -f files merge in order.
    let (ok, out, err) =
        compose(&b, &dir, &["-f", "docker-compose.yml", "-f", "other.yaml", "config", "--services"], &[("IMAGE", "i")]);
    assert!(ok && out == "other\nweb\n", "{out}{err}");
    let (ok, _, err) = compose(&b, &dir, &["--project-name=-bad", "config"], &[("IMAGE", "i")]);
    assert!(!ok && err.contains("project name \"-bad\" is not valid"), "{err}");
}

#[test]
fn bad_files_fail_naming_the_file_and_the_path() {
    let b = Builder::empty(false);
    let cases: [(&str, &[&str]); 7] = [
        ("services:\n  web:\n    build:\n      contxt: .\n", &["services.web.build", "contxt"]),
        ("services:\n  web:\n    image: a\n    image: b\n", &["duplicate", "line 4"]),
        ("services:\n  web:\n    build:\n      args:\n        A: [1]\n", &["services.web.build.args"]),
        ("services:\n  web:\n    ports: \"80\"\n", &["services.web.ports", "expected a list, got a string"]),
        ("service:\n  web: {}\n", &["service", "unknown top-level key"]),
        ("services:\n  web:\n    pull_policy: sometimes\n", &["services.web.pull_policy", "not a pull policy"]),
        ("services:\n  web:\n    image: \"cost $5\"\n", &["services.web.image", "invalid interpolation"]),
    ];
    for (i, (yaml, needles)) in cases.iter().enumerate() {
        let dir = b.context(&format!("bad-{i}"), &[("compose.yaml", yaml)]);
        let (ok, _, err) = compose(&b, &dir, &["config"], &[]);
        assert!(!ok && err.contains("compose.yaml"), "{yaml}: {err}");
        for n in *needles {
            assert!(err.to_lowercase().contains(&n.to_lowercase()), "{yaml}: missing {n:?} in {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// rbuild's model and the Compose JSON schema give the same verdict on a corpus of valid and invalid files.
#[test]
fn the_model_agrees_with_the_compose_schema() {
    let Some(dir) = rbuild_tests::conformance_dir("the_model_agrees_with_the_compose_schema") else { return };
    let dir = dir.join("compose");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("compose-spec.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let corpus = rbuild_tests::workspace_root().join("tests/compose-corpus");
    let b = Builder::empty(false);
    let mut checked = 0;
    for verdict in ["valid", "invalid"] {
        let mut files: Vec<_> = std::fs::read_dir(corpus.join(verdict)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            let yaml = std::fs::read_to_string(&f).unwrap();
            let project = b.context(&format!("corpus-{verdict}-{checked}"), &[("compose.yaml", &yaml)]);
            let (ours, _, err) = compose(&b, &project, &["config"], &[]);
            // The schema judges the file as written (before interpolation): the corpus has no variables.
            let doc = rbuild_builder::compose::yaml::parse(&yaml).unwrap_or(serde_json::Value::Null);
            let theirs = !doc.is_null() && validator.is_valid(&doc);
            assert_eq!(ours, theirs, "{}: rbuild says {ours} ({err}), the schema says {theirs}", f.display());
            assert_eq!(ours, verdict == "valid", "{}: expected {verdict}: {err}", f.display());
            checked += 1;
        }
    }
    assert!(checked >= 20, "the corpus has {checked} files");
}

/// A git repository served over (dumb) HTTP on loopback, with `Dockerfile` and `sub/file.txt` on `main`.
fn git_repo(b: &Builder) -> (rbuild_tests::FileServer, String) {
    let www = b.work.join("www");
    let src = b.work.join("git-src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("Dockerfile"), "FROM busybox\nCOPY sub/file.txt /from-git\n").unwrap();
    std::fs::write(src.join("sub/file.txt"), "from git\n").unwrap();
    let sh = |dir: &Path, script: &str| {
        let out =
            std::process::Command::new("sh").arg("-c").arg(script).current_dir(dir).env("HOME", dir).output().unwrap();
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
    };
    sh(&src, "git init -q -b main && git add . && git -c user.name=t -c user.email=t@example.com commit -qm init");
    std::fs::create_dir_all(&www).unwrap();
    sh(&www, &format!("git clone -q --bare {} repo.git && cd repo.git && git update-server-info", src.display()));
    let server = rbuild_tests::FileServer::start(&www);
    let url = format!("http://127.0.0.1:{}/repo.git", server.port);
    (server, url)
}

#[test]
fn contexts_from_git_images_and_directories() {
    let b = Builder::new(rbuild_tests::running_as_root());
    let (_server, url) = git_repo(&b);
    let dir = b.context(
        "ctxs",
        &[
            ("extra/note.txt", "from a directory\n"),
            (
                "main.Dockerfile",
                "FROM busybox\nCOPY --from=gitctx sub/file.txt /git.txt\nCOPY --from=dir note.txt /dir.txt\nCOPY --from=img /etc/group /img-group\n",
            ),
            (
                "compose.yaml",
                &format!(
                    "services:\n  fromgit:\n    build: {url}#main\n  extras:\n    build:\n      dockerfile: main.Dockerfile\n      additional_contexts:\n        gitctx: {url}\n        dir: ./extra\n        img: docker-image://busybox\n"
                ),
            ),
        ],
    );
    let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "plain"], &[("RBUILD_OFFLINE", "0")]);
    assert!(ok, "{err}");
    assert_eq!(b.run("ctxs-fromgit", &["cat", "/from-git"]), "from git\n");
    assert_eq!(b.run("ctxs-extras", &["cat", "/git.txt", "/dir.txt"]), "from git\nfrom a directory\n");
    assert!(b.run("ctxs-extras", &["cat", "/img-group"]).contains("nogroup"));
    b.assert_clean();
}

#[test]
fn pull_settings_reach_the_build() {
    use rbuild_tests::registry_fixture::{RegistryAuth, RegistryServer};
    let registry = RegistryServer::start(RegistryAuth::None, false);
    let host = registry.host();
    let b = Builder::new(false);
    let base = format!("{host}/lib/busybox:latest");
    assert!(b.rb(&["tag", "busybox", &base]).status.success());
    assert!(b.rb_env(&["push", &base], &[("RBUILD_OFFLINE", "0")]).status.success());
    let env = [("RBUILD_OFFLINE", "0")];
    // How many manifest requests a build with these service keys makes for its base image.
    let manifest_gets = |name: &str, service_keys: &str, build_keys: &str, flags: &[&str]| -> usize {
        let dir = b.context(
            name,
            &[
                ("Dockerfile", &format!("FROM {base}\nRUN true\n")),
                (
                    "compose.yaml",
                    &format!("services:\n  web:\n{service_keys}    build:\n      context: .\n{build_keys}"),
                ),
            ],
        );
        let before = registry.count("GET", "/manifests/");
        let mut args = vec!["build", "--progress", "plain"];
        args.extend_from_slice(flags);
        let (ok, _, err) = compose(&b, &dir, &args, &env);
        assert!(ok, "{name}: {err}");
        registry.count("GET", "/manifests/") - before
    };
    assert_eq!(manifest_gets("pull-default", "", "", &[]), 0, "the store's copy is used by default");
    assert!(manifest_gets("pull-true", "", "      pull: true\n", &[]) > 0, "pull: true pulls");
    assert!(manifest_gets("pull-always", "    pull_policy: always\n", "", &[]) > 0, "pull_policy: always pulls");
    assert!(manifest_gets("pull-flag", "", "", &["--pull"]) > 0, "--pull pulls");
    assert_eq!(manifest_gets("pull-never", "    pull_policy: never\n", "", &[]), 0, "never does not");
    assert_eq!(manifest_gets("pull-daily", "    pull_policy: daily\n", "", &[]), 0, "daily: the copy is fresh");
    // no_cache: true re-runs the steps every time.
    let dir = b.context(
        "nocache",
        &[
            ("Dockerfile", "FROM busybox\nRUN true\n"),
            ("compose.yaml", "services:\n  web:\n    build:\n      context: .\n      no_cache: true\n"),
        ],
    );
    for _ in 0..2 {
        let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "plain"], &[]);
        assert!(ok && err.contains("(1 steps run, 0 cached)"), "{err}");
    }
}

/// `compose build --load` hands every service's image to a Docker engine, where `docker run` finds it by the
/// name Compose would use.
#[test]
fn load_hands_every_service_image_to_docker() {
    let dockerd = rbuild_tests::PrivateDockerd::start();
    let b = Builder::new(false);
    let dir = b.context(
        "loading",
        &[
            ("Dockerfile", "FROM busybox AS one\nCMD [\"echo\", \"one\"]\nFROM busybox AS two\nCMD [\"echo\", \"two\"]\n"),
            ("compose.yaml", "services:\n  one:\n    build: {target: one}\n  two:\n    image: loaded/two:1\n    build: {target: two}\n"),
        ],
    );
    let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
    let (ok, _, err) = compose(
        &b,
        &dir,
        &["build", "--load", "--progress", "plain"],
        &[("DOCKER_HOST", &dockerd.host()), ("PATH", &path)],
    );
    assert!(ok, "{err}");
    for (image, said) in [("loading-one", "one\n"), ("loaded/two:1", "two\n")] {
        let run = dockerd.docker(&["run", "--rm", image]);
        assert_eq!(text(&run.stdout), said, "{}", text(&run.stderr));
    }
}

/// BuildKit returns the same image for a fully cached build, so a service built FROM another service's image finds
/// its steps cached on a warm rebuild.
#[test]
fn a_warm_rebuild_of_a_service_chain_runs_no_step() {
    for b in builders() {
        let dir = b.context(
            "chain-warm",
            &[
                ("a.Dockerfile", "FROM busybox\nRUN echo from-a > /a-marker\n"),
                ("b.Dockerfile", "FROM chain_a\nRUN cat /a-marker > /b-saw\n"),
                (
                    "compose.yaml",
                    "services:\n  a:\n    image: chain_a\n    build:\n      dockerfile: a.Dockerfile\n  \
                     b:\n    image: chain_b\n    build:\n      dockerfile: b.Dockerfile\n",
                ),
            ],
        );
        let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "plain"], &[]);
        assert!(ok, "{err}");
        let digest = |err: &str, service: &str| -> String {
            let line = err.lines().find(|l| l.starts_with(&format!("service {service}: built"))).unwrap();
            line.split_whitespace().find(|w| w.starts_with("sha256:")).unwrap().to_string()
        };
        let (a1, b1) = (digest(&err, "a"), digest(&err, "b"));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (ok, _, err) = compose(&b, &dir, &["build", "--progress", "plain"], &[]);
        assert!(ok, "{err}");
        assert!(err.contains("service a: built chain_a") && err.contains("(CACHED)"), "{err}");
        assert!(!err.contains("steps run"), "a step ran again: {err}");
        assert_eq!((digest(&err, "a"), digest(&err, "b")), (a1, b1), "the same images again");
        // And `rbuild build` of a fully cached Dockerfile gives the same digest as the build that filled the cache.
        let ctx = b.context("same-digest", &[("Dockerfile", "FROM busybox\nRUN echo x > /x\nENV A=1\n")]);
        let (ok, _, first) = b.build(&ctx, "same", &[]);
        assert!(ok, "{first}");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (ok, _, second) = b.build(&ctx, "same", &[]);
        assert!(ok, "{second}");
        let built = |e: &str| {
            e.lines().find(|l| l.starts_with("built ")).unwrap().split_whitespace().nth(1).unwrap().to_string()
        };
        assert_eq!(built(&first), built(&second));
    }
}
