//! Stages: which are built and in what order, ONBUILD, failures and cancellation, step sharing between builds,
//! what reaches the executor, and what lands in the image.

use super::*;

fn one_build(fx: &Fixture, req: &BuildRequest) -> (Result<BuildResult>, Vec<String>, Vec<String>) {
    let (executor, fetcher) = (FakeExecutor::new(&fx.store), FakeFetcher::default());
    let worker = fx.worker(&executor, &fetcher);
    let (r, events) = build(&worker, req);
    (r, events, executor.scripts())
}

#[test]
fn only_the_stages_the_target_needs_are_built() {
    let fx = Fixture::new("skip");
    let df = "FROM scratch AS a\nRUN write /a 1\nFROM scratch AS unused\nRUN write /u 1\n\
              FROM scratch AS b\nCOPY --from=a /a /a\nRUN write /b 1\n";
    let (r, _, scripts) = one_build(&fx, &fx.request(df));
    r.unwrap();
    assert_eq!(scripts, ["write /a 1", "write /b 1"]);
    let mut target = fx.request(df);
    target.target = Some("unused".into());
    let (r, _, scripts) = one_build(&fx, &target);
    assert_eq!((r.unwrap().executed, scripts), (1, vec!["write /u 1".to_string()]));
}

#[test]
fn a_stage_starts_after_the_stages_it_reads() {
    let fx = Fixture::new("order");
    // c reads a and b; whatever the scheduling, c's step comes after both of theirs.
    let df = "FROM scratch AS a\nRUN write /a 1\nFROM scratch AS b\nRUN write /b 1\n\
              FROM scratch AS c\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nRUN write /c 1\n";
    let (r, _, scripts) = one_build(&fx, &fx.request(df));
    let r = r.unwrap();
    assert_eq!(scripts.last().map(String::as_str), Some("write /c 1"));
    assert_eq!((file_in(&r, "a").as_deref(), file_in(&r, "b").as_deref()), (Some("1"), Some("1")));
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let fx = Fixture::new("parallel");
    // Each stage waits for a flag the other sets: they finish only if both run at once.
    let df = "FROM scratch AS a\nRUN set a; wait-for b; write /a 1\nFROM scratch AS b\nRUN set b; wait-for a; write /b 1\n\
              FROM scratch\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n";
    let started = std::time::Instant::now();
    let (r, _, _) = one_build(&fx, &fx.request(df));
    r.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "the stages waited for each other's flags to time out");
}

#[test]
fn a_failed_step_cancels_the_other_stages_and_reports_its_output() {
    let fx = Fixture::new("cancel");
    let df = "FROM scratch AS bad\nRUN echo something went wrong; set failed; fail 3\n\
              FROM scratch AS slow\nRUN wait-for failed\nRUN write /never 1\nRUN write /never 2\n\
              FROM scratch\nCOPY --from=bad / /\nCOPY --from=slow / /\n";
    let (r, events, scripts) = one_build(&fx, &fx.request(df));
    let message = r.unwrap_err().to_string();
    assert!(message.contains("Dockerfile:2"), "{message}");
    assert!(message.contains("exit code: 3") && message.contains("something went wrong"), "{message}");
    assert!(!scripts.iter().any(|s| s.contains("never")), "the other stage went on: {scripts:?}");
    assert!(events.iter().any(|e| e.starts_with("failed ")), "{events:?}");
}

#[test]
fn onbuild_triggers_of_a_base_stage_and_of_a_base_image_run_first() {
    let mut fx = Fixture::new("onbuild");
    fx.image("base:1", &[("etc/base", "b")], json!({ "OnBuild": ["RUN write /from-image 1"] }));
    let df = "FROM base:1 AS a\nONBUILD RUN write /from-stage 1\nRUN write /a 1\nFROM a\nRUN write /last 1\n";
    let (r, _, scripts) = one_build(&fx, &fx.request(df));
    let r = r.unwrap();
    assert_eq!(scripts, ["write /from-image 1", "write /a 1", "write /from-stage 1", "write /last 1"]);
    assert!(r.image.config["config"]["OnBuild"].is_null(), "triggers are not inherited: {}", r.image.config);
    assert_eq!(file_in(&r, "etc/base").as_deref(), Some("b"));
}

#[test]
fn an_unknown_image_says_how_to_get_it() {
    let fx = Fixture::new("unknown");
    let (r, _, _) = one_build(&fx, &fx.request("FROM scratch AS builder\nFROM buildr\nRUN write /x 1\n"));
    let message = r.unwrap_err().to_string();
    assert!(message.contains("is not in the store"), "{message}");
    assert!(message.contains("did you mean stage \"builder\""), "{message}");
}

#[test]
fn base_images_are_resolved_with_the_pull_policy_of_the_request() {
    let mut fx = Fixture::new("pull");
    fx.image("base:1", &[("f", "1")], json!({}));
    let (executor, fetcher) = (FakeExecutor::new(&fx.store), FakeFetcher::default());
    let images = MapImageSource { images: fx.images.clone(), resolved: Mutex::new(Vec::new()) };
    let resolved = std::sync::Arc::new(images);
    struct Arced(std::sync::Arc<MapImageSource>);
    impl ImageSource for Arced {
        fn resolve(&self, r: &str, p: &Platform, pull: PullPolicy) -> Result<LoadedImage> {
            self.0.resolve(r, p, pull)
        }
    }
    let mut worker = fx.worker(&executor, &fetcher);
    worker.images = Box::new(Arced(resolved.clone()));
    let mut req = fx.request("FROM base:1\nRUN write /x 1\n");
    req.pull = PullPolicy::Always;
    build(&worker, &req).0.unwrap();
    // The planner looks for ONBUILD triggers in what the store has (never pulling); the stage pulls as asked.
    let calls = resolved.resolved.lock().unwrap().clone();
    assert!(calls.contains(&("base:1".to_string(), PullPolicy::Always)), "{calls:?}");
    assert!(calls.iter().all(|(_, p)| matches!(p, PullPolicy::Always | PullPolicy::Never)), "{calls:?}");
    assert_eq!(calls.iter().filter(|(_, p)| *p == PullPolicy::Always).count(), 1, "{calls:?}");
}

#[test]
fn identical_steps_of_concurrent_builds_run_once() {
    let fx = Fixture::new("sharing");
    let (executor, fetcher) = (FakeExecutor::new(&fx.store), FakeFetcher::default());
    let worker = fx.worker(&executor, &fetcher);
    let req = fx.request("FROM scratch\nRUN write /x 1; sleep 300\n");
    let results: Vec<BuildResult> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(|| build(&worker, &req).0.unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(executor.runs(), 1, "three builds, one execution");
    assert_eq!(results.iter().map(|r| r.executed).sum::<usize>(), 1);
    assert!(results.windows(2).all(|w| w[0].image.config["rootfs"] == w[1].image.config["rootfs"]));
}

#[test]
fn the_executor_gets_the_step_resolved() {
    let fx = Fixture::new("request");
    fx.file("src/a.txt", "a");
    let mut req = fx.request(
        "FROM scratch\nRUN write /etc/passwd app:x:7:7::/:/bin/sh\nENV E=1\nWORKDIR /w\nUSER app\n\
         RUN --mount=type=bind,source=src,target=/src --mount=type=cache,target=/cache --network=none write o 1\n",
    );
    req.extra_hosts = vec![("db".into(), "10.0.0.1".into())];
    req.shm_size = 1 << 20;
    let (executor, fetcher) = (FakeExecutor::new(&fx.store), FakeFetcher::default());
    let worker = fx.worker(&executor, &fetcher);
    build(&worker, &req).0.unwrap();
    let requests = executor.requests.lock().unwrap();
    let step = requests.last().unwrap();
    assert_eq!(step.argv, ["/bin/sh", "-c", "write o 1"]);
    assert!(step.env.contains(&"E=1".to_string()), "{:?}", step.env);
    assert_eq!((step.cwd.as_str(), step.user.as_deref()), ("/w", Some("app")));
    assert_eq!(step.network, super::super::Network::None);
    assert_eq!((step.extra_hosts.len(), step.shm_size), (1, 1 << 20));
    let bind = step.mounts.iter().find(|m| m.target.as_deref() == Some("/src")).unwrap();
    assert_eq!(Path::new(bind.source.as_deref().unwrap()), fs::canonicalize(fx.context.join("src")).unwrap());
    assert!(step.mounts.iter().any(|m| m.target.as_deref() == Some("/cache")));
    // The stage's snapshots so far (passwd, and WORKDIR's directory), bottom first.
    assert_eq!(step.lowers.len(), 2);
    assert!(step.lowers[0].join("etc/passwd").is_file());
}

#[test]
fn entitlements_are_checked_before_anything_runs() {
    let fx = Fixture::new("entitlements");
    let (r, _, scripts) = one_build(&fx, &fx.request("FROM scratch\nRUN --network=host write /x 1\n"));
    assert!(r.unwrap_err().to_string().contains("--allow network.host"));
    assert!(scripts.is_empty());
    let mut allowed = fx.request("FROM scratch\nRUN --network=host write /x 1\n");
    allowed.allow.insert("network.host".into());
    assert!(one_build(&fx, &allowed).0.is_ok());
}

#[test]
fn what_a_step_writes_is_its_layer_and_a_run_that_writes_nothing_has_an_empty_one() {
    let fx = Fixture::new("layers");
    let df = "FROM scratch\nRUN write /etc/app.conf on\nRUN true\nRUN write /etc/app.conf off\nENV A=1\n";
    let (r, _, _) = one_build(&fx, &fx.request(df));
    let r = r.unwrap();
    // As BuildKit (testExportedHistory): every RUN has a layer, an empty tar when it changed nothing.
    assert_eq!(r.image.layers.len(), 3);
    assert_eq!(file_in(&r, "etc/app.conf").as_deref(), Some("off"));
    let history = r.image.config["history"].as_array().unwrap();
    let empty: Vec<bool> = history.iter().map(|h| h["empty_layer"].as_bool().unwrap_or(false)).collect();
    assert_eq!(empty, [false, false, false, true]);
}

#[test]
fn heredoc_runs_keep_their_script_and_failures_name_the_line() {
    let fx = Fixture::new("heredoc");
    let df = "FROM scratch\nRUN <<EOF\nwrite /h 1\nEOF\nRUN fail 2\n";
    let (r, _, scripts) = one_build(&fx, &fx.request(df));
    assert_eq!(scripts[0], "write /h 1\n");
    let message = r.unwrap_err().to_string();
    assert!(message.contains("Dockerfile:5") && message.contains("exit code: 2"), "{message}");
}

#[test]
fn the_executor_notes_reach_the_progress() {
    struct Noting<'a>(FakeExecutor<'a>);
    impl Executor for Noting<'_> {
        fn run(&self, req: &ExecRequest, output: OutputSink<'_>, commit: CommitChanges<'_>) -> Result<ExecOutcome> {
            self.0.run(req, output, commit)
        }
        fn describe(&self) -> Option<String> {
            Some("note: steps run over copies".into())
        }
        fn take_notes(&self) -> Vec<String> {
            vec!["note: fell back".into()]
        }
    }
    let fx = Fixture::new("notes");
    let (executor, fetcher) = (FakeExecutor::new(&fx.store), FakeFetcher::default());
    let mut worker = fx.worker(&executor, &fetcher);
    worker.executor = Box::new(Noting(FakeExecutor::new(&fx.store)));
    let (r, events) = build(&worker, &fx.request("FROM scratch\nRUN write /x 1\n"));
    r.unwrap();
    assert_eq!(events.iter().filter(|e| e.as_str() == "note note: steps run over copies").count(), 1);
    assert!(events.iter().any(|e| e == "note note: fell back"));
}

#[test]
fn copies_and_workdirs_follow_the_links_of_a_merged_usr_base() {
    let mut fx = Fixture::new("merged-usr");
    fx.image(
        "debian:12",
        &[("usr/bin/sh", "sh"), ("usr/lib/libc", "c"), ("bin", "-> usr/bin"), ("lib", "-> /usr/lib")],
        json!({}),
    );
    fx.file("app", "app");
    let df =
        "FROM debian:12\nCOPY app /bin/app\nCOPY app /bin\nCOPY app /lib/sub/\nWORKDIR /bin/tools\nRUN write made 1\n";
    let (r, events, scripts) = one_build(&fx, &fx.request(df));
    let r = r.unwrap_or_else(|e| panic!("{e}\n{events:?}"));
    assert_eq!(file_in(&r, "usr/bin/app").as_deref(), Some("app"));
    assert_eq!(file_in(&r, "usr/lib/sub/app").as_deref(), Some("app"));
    // No layer above the base has a `bin` or `lib` of its own, which would hide the links.
    for snap in &r.snapshots[1..] {
        for top in ["bin", "lib"] {
            assert!(fs::symlink_metadata(snap.join(top)).is_err(), "{top} in {}", snap.display());
        }
    }
    assert_eq!(scripts, ["write made 1"]);
    let step = fx_last_request_cwd(&fx, df);
    assert_eq!(step, "/bin/tools", "WORKDIR keeps the path as written");
    assert!(r.snapshots.iter().any(|s| s.join("usr/bin/tools").is_dir()));
}

/// The working directory the last step of a build of `df` ran in.
fn fx_last_request_cwd(fx: &Fixture, df: &str) -> String {
    let (executor, fetcher) = (FakeExecutor::new(&fx.store), FakeFetcher::default());
    let worker = fx.worker(&executor, &fetcher);
    let mut req = fx.request(df);
    req.no_cache = true;
    build(&worker, &req).0.unwrap();
    executor.requests.lock().unwrap().last().unwrap().cwd.clone()
}
