//! What changes a step's cache key and what does not, for every kind of step.

use super::*;

/// Build `first`, let `change` alter the fixture, build `second`; returns the scripts the second build ran.
fn reruns(fx: &Fixture, first: &BuildRequest, change: impl FnOnce(&Fixture), second: &BuildRequest) -> Vec<String> {
    let (executor, fetcher) = (FakeExecutor::new(&fx.store), FakeFetcher::default());
    let worker = fx.worker(&executor, &fetcher);
    let (r, events) = build(&worker, first);
    r.unwrap_or_else(|e| panic!("first build: {e}\n{events:?}"));
    let before = executor.runs();
    change(fx);
    let (r, events) = build(&worker, second);
    r.unwrap_or_else(|e| panic!("second build: {e}\n{events:?}"));
    executor.scripts()[before..].to_vec()
}

fn same(fx: &Fixture, df: &str) -> Vec<String> {
    reruns(fx, &fx.request(df), |_| {}, &fx.request(df))
}

#[test]
fn an_unchanged_build_runs_nothing_the_second_time() {
    let fx = Fixture::new("unchanged");
    fx.file("a.txt", "a");
    let df = "FROM scratch\nRUN write /x 1\nCOPY a.txt /a\nRUN write /y 2\nWORKDIR /w\nENV K=v\n";
    assert_eq!(same(&fx, df), Vec::<String>::new());
}

#[test]
fn a_changed_command_reruns_it_and_every_step_after_it() {
    let fx = Fixture::new("command");
    let a = "FROM scratch\nRUN write /x 1\nRUN write /y 2\nRUN write /z 3\n";
    let b = "FROM scratch\nRUN write /x 1\nRUN write /y 22\nRUN write /z 3\n";
    assert_eq!(reruns(&fx, &fx.request(a), |_| {}, &fx.request(b)), ["write /y 22", "write /z 3"]);
}

#[test]
fn env_and_declared_args_are_in_the_key_undeclared_build_args_are_not() {
    let fx = Fixture::new("args");
    let df = "FROM scratch\nARG V\nRUN write /x 1\n";
    let mut with = fx.request(df);
    with.build_args.insert("V".into(), "1".into());
    assert_eq!(reruns(&fx, &fx.request(df), |_| {}, &with), ["write /x 1"], "a declared ARG's value is in scope");
    let undeclared = "FROM scratch\nRUN write /x 1\n";
    let mut unused = fx.request(undeclared);
    unused.build_args.insert("OTHER".into(), "1".into());
    assert!(reruns(&fx, &fx.request(undeclared), |_| {}, &unused).is_empty(), "an undeclared build arg is not");
    let env_a = "FROM scratch\nENV E=1\nRUN write /x 1\n";
    let env_b = "FROM scratch\nENV E=2\nRUN write /x 1\n";
    assert_eq!(reruns(&fx, &fx.request(env_a), |_| {}, &fx.request(env_b)), ["write /x 1"]);
}

#[test]
fn proxy_build_args_reach_the_step_but_not_its_key() {
    let fx = Fixture::new("proxy");
    let df = "FROM scratch\nRUN write /x 1\n";
    let (executor, fetcher) = (FakeExecutor::new(&fx.store), FakeFetcher::default());
    let worker = fx.worker(&executor, &fetcher);
    let mut req = fx.request(df);
    req.build_args.insert("HTTP_PROXY".into(), "http://proxy:3128".into());
    build(&worker, &req).0.unwrap();
    assert!(executor.requests.lock().unwrap()[0].env.contains(&"HTTP_PROXY=http://proxy:3128".to_string()));
    req.build_args.insert("HTTP_PROXY".into(), "http://other:3128".into());
    let r = build(&worker, &req).0.unwrap();
    assert_eq!((r.executed, r.cached, executor.runs()), (0, 1, 1));
}

#[test]
fn workdir_user_and_network_are_in_the_key() {
    let fx = Fixture::new("settings");
    let base = "FROM scratch\nRUN write /etc/passwd u:x:5:5::/:/bin/sh\n";
    for (a, b, rerun) in [
        ("WORKDIR /a\nRUN write x 1", "WORKDIR /b\nRUN write x 1", "write x 1"),
        ("USER 0\nRUN write /x 1", "USER 5\nRUN write /x 1", "write /x 1"),
        ("RUN write /x 1", "RUN --network=none write /x 1", "write /x 1"),
    ] {
        let (a, b) = (format!("{base}{a}\n"), format!("{base}{b}\n"));
        assert_eq!(reruns(&fx, &fx.request(&a), |_| {}, &fx.request(&b)), [rerun], "{b}");
    }
}

#[test]
fn a_copy_reruns_when_its_files_change_and_not_when_other_files_do() {
    let fx = Fixture::new("copy");
    fx.file("a.txt", "a");
    fx.file("b.txt", "b");
    fx.file(".dockerignore", "ignored.txt\n");
    fx.file("ignored.txt", "i");
    let df = "FROM scratch\nCOPY a.txt /a\nRUN write /after 1\n";
    let req = fx.request(df);
    let change_b = |fx: &Fixture| {
        fx.file("b.txt", "bb");
        fx.file("ignored.txt", "ii");
    };
    assert!(reruns(&fx, &req, change_b, &req).is_empty(), "b.txt and ignored files are not copied");
    assert_eq!(reruns(&fx, &req, |fx| fx.file("a.txt", "aa"), &req), ["write /after 1"]);
}

#[test]
fn a_copy_key_covers_destination_chown_chmod_and_parents() {
    let fx = Fixture::new("copyflags");
    fx.file("a.txt", "a");
    let base = "FROM scratch\nCOPY a.txt /a\nRUN write /after 1\n";
    for other in [
        "FROM scratch\nCOPY a.txt /b\nRUN write /after 1\n",
        "FROM scratch\nCOPY --chown=5:5 a.txt /a\nRUN write /after 1\n",
        "FROM scratch\nCOPY --chmod=600 a.txt /a\nRUN write /after 1\n",
    ] {
        assert_eq!(reruns(&fx, &fx.request(base), |_| {}, &fx.request(other)), ["write /after 1"], "{other}");
    }
}

#[test]
fn a_bind_mounted_context_file_is_keyed_by_its_content() {
    let fx = Fixture::new("bind");
    fx.file("a.txt", "a");
    fx.file("b.txt", "b");
    let req = fx.request("FROM scratch\nRUN --mount=type=bind,source=a.txt,target=/a write /out 1\n");
    assert!(reruns(&fx, &req, |fx| fx.file("b.txt", "bb"), &req).is_empty(), "b.txt is not mounted");
    assert_eq!(reruns(&fx, &req, |fx| fx.file("a.txt", "aa"), &req), ["write /out 1"], "a.txt is");
    let whole = fx.request("FROM scratch\nRUN --mount=target=/ctx write /out 2\n");
    assert_eq!(reruns(&fx, &whole, |fx| fx.file("b.txt", "bbb"), &whole), ["write /out 2"], "the whole context");
    let elsewhere = fx.request("FROM scratch\nRUN --mount=type=bind,source=a.txt,target=/b write /out 1\n");
    assert_eq!(reruns(&fx, &req, |_| {}, &elsewhere), ["write /out 1"], "the target is in the key");
}

#[test]
fn secrets_are_never_in_the_key() {
    let fx = Fixture::new("secret");
    let dir = TestDir::new("secret-files");
    let secret = dir.path().join("s");
    fs::write(&secret, "one").unwrap();
    let mut req = fx.request("FROM scratch\nRUN --mount=type=secret,id=s write /x 1\n");
    req.secrets.insert("s".into(), super::super::SecretSource::File(secret.clone()));
    assert!(reruns(&fx, &req, |_| fs::write(&secret, "two").unwrap(), &req).is_empty());
}

#[test]
fn copy_from_a_stage_follows_that_stage_content() {
    let fx = Fixture::new("from");
    let a = "FROM scratch AS a\nRUN write /f 1\nFROM scratch\nCOPY --from=a /f /f\nRUN write /after 1\n";
    let b = "FROM scratch AS a\nRUN write /f 2\nFROM scratch\nCOPY --from=a /f /f\nRUN write /after 1\n";
    assert_eq!(reruns(&fx, &fx.request(a), |_| {}, &fx.request(b)), ["write /f 2", "write /after 1"]);
    // Stage a re-run (--no-cache-filter) making the same files: the COPY and what follows stay cached.
    let mut again = fx.request(b);
    again.no_cache_filter = vec!["a".into()];
    assert_eq!(reruns(&fx, &fx.request(b), |_| {}, &again), ["write /f 2"]);
}

#[test]
fn a_linked_copy_does_not_depend_on_the_steps_below_it() {
    let fx = Fixture::new("link");
    fx.file("a.txt", "a");
    let a = "FROM scratch\nRUN write /x 1\nCOPY --link a.txt /a\nRUN write /after 1\n";
    let b = "FROM scratch\nRUN write /x 2\nCOPY --link a.txt /a\nRUN write /after 1\n";
    let (executor, fetcher) = (FakeExecutor::new(&fx.store), FakeFetcher::default());
    let worker = fx.worker(&executor, &fetcher);
    build(&worker, &fx.request(a)).0.unwrap();
    let (r, events) = build(&worker, &fx.request(b));
    let r = r.unwrap();
    // RUN /x and RUN /after run again; the COPY --link comes from the cache.
    assert_eq!((r.executed, r.cached), (2, 1), "{events:?}");
    let copy = events.iter().position(|e| e.contains("COPY --link")).unwrap();
    assert_eq!(events[copy + 1], "cached");
}

#[test]
fn no_cache_runs_every_step_and_no_cache_filter_only_the_named_stage() {
    let fx = Fixture::new("nocache");
    let df = "FROM scratch AS a\nRUN write /a 1\nFROM scratch AS b\nCOPY --from=a /a /a\nRUN write /b 1\n";
    let mut no_cache = fx.request(df);
    no_cache.no_cache = true;
    assert_eq!(reruns(&fx, &fx.request(df), |_| {}, &no_cache).len(), 2);
    let mut filtered = fx.request(df);
    filtered.no_cache_filter = vec!["b".into()];
    // Stage a comes from the cache with the same content, so b's COPY is keyed as before; b's steps run anyway.
    assert_eq!(reruns(&fx, &fx.request(df), |_| {}, &filtered), ["write /b 1"]);
}

#[test]
fn heredoc_files_and_urls_are_keyed_by_their_content() {
    let fx = Fixture::new("generated");
    let a = "FROM scratch\nCOPY <<EOF /f\none\nEOF\nRUN write /after 1\n";
    let b = "FROM scratch\nCOPY <<EOF /f\ntwo\nEOF\nRUN write /after 1\n";
    assert_eq!(reruns(&fx, &fx.request(a), |_| {}, &fx.request(b)), ["write /after 1"]);
    assert!(same(&fx, a).is_empty());

    let (executor, fetcher) = (FakeExecutor::new(&fx.store), FakeFetcher::default());
    fetcher.urls.lock().unwrap().insert("http://h/f.txt".into(), "v1".into());
    let worker = fx.worker(&executor, &fetcher);
    let req = fx.request("FROM scratch\nADD http://h/f.txt /f.txt\nRUN write /after 1\n");
    let r = build(&worker, &req).0.unwrap();
    assert_eq!(file_in(&r, "f.txt").as_deref(), Some("v1"));
    let r = build(&worker, &req).0.unwrap();
    assert_eq!((r.executed, r.cached), (0, 2), "the same download is a hit");
    fetcher.urls.lock().unwrap().insert("http://h/f.txt".into(), "v2".into());
    let r = build(&worker, &req).0.unwrap();
    assert_eq!((r.executed, file_in(&r, "f.txt").as_deref()), (2, Some("v2")), "new content is a miss");
}

#[test]
fn a_workdir_that_creates_its_directory_is_keyed_by_its_path() {
    let fx = Fixture::new("workdir");
    let a = "FROM scratch\nWORKDIR /a\nRUN write x 1\n";
    let b = "FROM scratch\nWORKDIR /b\nRUN write x 1\n";
    let (executor, fetcher) = (FakeExecutor::new(&fx.store), FakeFetcher::default());
    let worker = fx.worker(&executor, &fetcher);
    let r = build(&worker, &fx.request(a)).0.unwrap();
    assert_eq!((r.executed, r.snapshots.len()), (2, 2), "WORKDIR made a layer");
    let r = build(&worker, &fx.request(b)).0.unwrap();
    assert_eq!((r.executed, r.cached), (2, 0));
    let r = build(&worker, &fx.request(a)).0.unwrap();
    assert_eq!((r.executed, r.cached), (0, 2));
}

#[test]
fn a_fully_cached_rebuild_is_the_same_image() {
    let mut fx = Fixture::new("same-image");
    fx.image("base:1", &[("etc/base", "b")], json!({}));
    fx.file("a.txt", "a");
    let df = "FROM base:1 AS first\nRUN write /x 1\nFROM first\nCOPY a.txt /a\nENV E=1\nRUN write /y 2\nLABEL l=v\n";
    let (executor, fetcher) = (FakeExecutor::new(&fx.store), FakeFetcher::default());
    let worker = fx.worker(&executor, &fetcher);
    let first = build(&worker, &fx.request(df)).0.unwrap();
    // Times have a resolution of one second: the rebuild happens in a later one.
    std::thread::sleep(Duration::from_millis(1100));
    let again = build(&worker, &fx.request(df)).0.unwrap();
    assert_eq!((again.executed, again.cached), (0, 3));
    assert_eq!(again.manifest_digest, first.manifest_digest, "{}\n{}", first.image.config, again.image.config);
    // A step that runs again makes a new image, stamped with this build's time.
    fx.file("a.txt", "changed");
    let changed = build(&worker, &fx.request(df)).0.unwrap();
    assert_ne!(changed.manifest_digest, first.manifest_digest);
    assert!(changed.image.config["created"].as_str() > first.image.config["created"].as_str());
}
