//! `rbuild info`: what this host allows a sandbox and which one builds will use — the facts the kernel gives
//! (seccomp, capabilities, user-namespace switches, cgroup version, container), what the probe found (namespaces,
//! a fresh /proc, pivot_root), the isolation tier with what it gives up, or why no RUN step can run here; and how
//! each common platform's RUN steps would run (natively, emulated, or not at all).

use std::process::ExitCode;

use rbuild_builder::sandbox::container::guard;
use rbuild_builder::sandbox::isolation::{self, Detection};
use rbuild_builder::store::Store;

pub fn info(store: &Store, userns_choice: Option<&str>) -> anyhow::Result<ExitCode> {
    let userns = rbuild_runtime::userns::detect_with(userns_choice)?;
    let runtime = rbuild_runtime::Runtime::current()?;
    let choice = super::isolation();
    let detection = isolation::detect(store, &runtime, userns, choice);
    print!("{}", render(store, &detection));
    // Container isolation where it is asked for (always, or where no namespace sandbox can run).
    let container = match choice {
        isolation::IsolationChoice::Container => Some(guard::check_may_run()),
        isolation::IsolationChoice::AutoContainer if detection.tier.is_err() => Some(guard::check_may_run()),
        _ => None,
    };
    let runs = match container {
        None => detection.tier.is_ok(),
        Some(Ok(mark)) => {
            println!("{:<20} container: steps run in this container's own root ({mark}), no namespaces", "isolation");
            true
        }
        Some(Err(e)) => {
            println!("{:<20} none: {e}", "isolation");
            false
        }
    };
    Ok(if runs { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn render(store: &Store, d: &Detection) -> String {
    let f = &d.facts;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<20} {v}\n"));
    line("rbuild", env!("CARGO_PKG_VERSION").to_string());
    line("store", store.root().display().to_string());
    let (snapshotter, forced) = rbuild_builder::sandbox::snapshotter::choose(store)
        .map(|(s, f)| (s.name().to_string(), f))
        .unwrap_or_else(|e| (e.to_string(), false));
    line("snapshotter", format!("{snapshotter}{}", if forced { " (RBUILD_SNAPSHOTTER)" } else { "" }));
    line("user", format!("uid {}{}", nix::unistd::geteuid().as_raw(), if f.real_root { " (real root)" } else { "" }));
    line("container", f.container.clone().unwrap_or_else(|| "none found".into()));
    line(
        "seccomp",
        match f.seccomp {
            0 => "none".to_string(),
            1 => "strict".to_string(),
            _ => "filter (a container runtime's profile, or a program's own)".to_string(),
        },
    );
    line("CAP_SYS_ADMIN", yes(f.cap_sys_admin).into());
    line("cgroup", format!("v{}", f.cgroup_version));
    line("/proc masked", yes(f.masked_proc).into());
    line(
        "binfmt_misc",
        match &f.binfmt {
            None => "not mounted here".into(),
            Some(h) if h.is_empty() => "no handler registered".into(),
            Some(h) => h.join(", "),
        },
    );
    // How each common foreign platform's RUN steps would run here (docs/multi-platform.md).
    let mut emulated = Vec::new();
    for p in ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x", "linux/riscv64"] {
        let Ok(platform) = rbuild_builder::platform::Platform::parse(p) else { continue };
        use rbuild_builder::sandbox::emulation::{Emulation, plan};
        emulated.push(match plan(&platform) {
            Ok(Emulation::Native) => format!("{p}: native"),
            Ok(Emulation::Sandboxed(e)) => format!("{p}: {} (own binfmt_misc)", e.interpreter.display()),
            Ok(Emulation::Host(name)) => format!("{p}: host handler {name}"),
            Err(_) => format!("{p}: cannot run"),
        });
    }
    line("platforms", emulated.join("; "));
    let mut knobs = Vec::new();
    if f.userns_clone_disabled {
        knobs.push("kernel.unprivileged_userns_clone=0");
    }
    if f.max_user_namespaces_zero {
        knobs.push("user.max_user_namespaces=0");
    }
    if f.apparmor_restricts_userns {
        knobs.push("kernel.apparmor_restrict_unprivileged_userns=1");
    }
    line("userns sysctls", if knobs.is_empty() { "allow user namespaces".into() } else { knobs.join(", ") });
    for (mode, report) in &d.probes {
        let said = |r: &Option<String>| r.clone().map_or("allowed".to_string(), |e| format!("refused ({e})"));
        line("probe", format!("{}: namespaces {}", mode_name(*mode), said(&report.namespaces)));
        if report.namespaces.is_none() {
            line("", format!("fresh /proc {}", said(&report.fresh_proc)));
            line("", format!("pivot_root {}", said(&report.pivot_root)));
            line("", format!("overlayfs on the store {}", said(&report.overlay)));
        }
    }
    match &d.tier {
        Ok(tier) => {
            line("isolation", tier.describe());
            for g in &tier.gave_up {
                line("gave up", g.clone());
            }
        }
        Err(r) => {
            line("isolation", format!("none: RUN steps cannot run here ({}: {})", r.stage, r.message));
            line("to fix", r.hint.clone());
        }
    }
    out
}

fn mode_name(mode: rbuild_runtime::UsernsMode) -> &'static str {
    match mode {
        rbuild_runtime::UsernsMode::Off => "no user namespace",
        rbuild_runtime::UsernsMode::Full => "user namespace, every id",
        rbuild_runtime::UsernsMode::Single => "user namespace, one id",
        rbuild_runtime::UsernsMode::Subuid { .. } => "user namespace, subordinate ids",
    }
}
