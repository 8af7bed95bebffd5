//! Which sandbox this host allows, decided once per build: the runtime's probe tries the namespaces, a fresh /proc
//! and `pivot_root`; what is refused is given up step by step, each with a one-line note — a container's root
//! without CAP_SYS_ADMIN gets a user namespace mapping every id to itself, a refused /proc gives the caller's
//! /proc (and pid namespace) shared, a refused `pivot_root` gives a move-mount and `chroot`. `--isolation sandbox`
//! (`RBUILD_ISOLATION`) takes nothing less than the full sandbox. Where no namespace can be made at all, the
//! refusal names the cause found (a container's seccomp profile, AppArmor, a sysctl) and the settings that lift
//! it, and is the error of the first RUN step (a build without one needs no sandbox). `container` and
//! `auto+container` choose container isolation (`super::container`) instead, or where no namespace can be made.

use rbuild_runtime::probe::{HostFacts, ProbeReport};
use rbuild_runtime::{Isolation, Runtime, UsernsMode};

use crate::store::Store;

/// `--isolation`: how much of the sandbox a build may give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationChoice {
    /// The best tier this host allows.
    #[default]
    Auto,
    /// The full sandbox or nothing.
    Sandbox,
    /// Container isolation: steps in the container's own root, no namespaces (refused outside a container).
    Container,
    /// The namespace sandbox where this host allows one, else container isolation (the executor image's preset).
    AutoContainer,
}

impl IsolationChoice {
    pub fn parse(s: &str) -> Option<IsolationChoice> {
        match s {
            "" | "auto" => Some(IsolationChoice::Auto),
            "sandbox" => Some(IsolationChoice::Sandbox),
            "container" => Some(IsolationChoice::Container),
            "auto+container" => Some(IsolationChoice::AutoContainer),
            _ => None,
        }
    }

    /// Whether container isolation may be chosen (the store's default is then under /rbuild).
    pub fn allows_container(self) -> bool {
        matches!(self, IsolationChoice::Container | IsolationChoice::AutoContainer)
    }
}

/// The sandbox steps get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub userns: UsernsMode,
    pub isolation: Isolation,
    /// One line per thing given up.
    pub gave_up: Vec<String>,
}

impl Tier {
    /// A line for the progress and `rbuild info`.
    pub fn describe(&self) -> String {
        let ns = match self.userns {
            UsernsMode::Off => "namespaces as root",
            UsernsMode::Full => "a user namespace mapping every id (root without CAP_SYS_ADMIN)",
            UsernsMode::Single => "a user namespace with one id",
            UsernsMode::Subuid { .. } => "a user namespace with subordinate ids",
        };
        let mut parts = vec![ns.to_string()];
        parts.push(if self.isolation.shared_proc { "the caller's /proc shared" } else { "a fresh /proc" }.into());
        parts.push(if self.isolation.chroot { "chroot" } else { "pivot_root" }.into());
        parts.join(", ")
    }
}

/// What was found, and the tier (or the refusal) it makes.
#[derive(Debug, Clone)]
pub struct Detection {
    pub facts: HostFacts,
    /// The probes run, in order: (user-namespace mode, what was found).
    pub probes: Vec<(UsernsMode, ProbeReport)>,
    pub tier: std::result::Result<Tier, Refusal>,
}

/// No sandbox can run here: what was refused, why, and what lifts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub stage: String,
    pub message: String,
    pub hint: String,
}

impl Refusal {
    pub fn to_runtime_error(&self) -> rbuild_runtime::Error {
        rbuild_runtime::Error::Setup {
            stage: rbuild_runtime::SetupStage::Host,
            step: self.stage.clone(),
            message: self.message.clone(),
            hint: Some(self.hint.clone()),
        }
    }
}

/// Probe with `userns` (the mode the user's settings give) and decide.
pub fn detect(store: &Store, runtime: &Runtime, userns: UsernsMode, choice: IsolationChoice) -> Detection {
    let facts = HostFacts::read();
    let mut probes = Vec::new();
    let mut probe = |mode: UsernsMode| -> ProbeReport {
        let dir = store.tmp().path("probe");
        let report = std::fs::create_dir_all(&dir)
            .map_err(|e| e.to_string())
            .and_then(|()| runtime.probe(&dir, mode).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| ProbeReport { namespaces: Some(e), ..Default::default() });
        let _ = std::fs::remove_dir_all(&dir);
        probes.push((mode, report.clone()));
        report
    };
    let mut mode = userns;
    let mut report = probe(mode);
    // Root without CAP_SYS_ADMIN (a container's root): every id mapped to itself in a user namespace.
    if report.namespaces.is_some() && mode == UsernsMode::Off {
        let full = probe(UsernsMode::Full);
        if full.namespaces.is_none() {
            mode = UsernsMode::Full;
            report = full;
        }
    }
    let tier = decide(&facts, mode, &report, choice);
    Detection { facts, probes, tier }
}

fn decide(
    facts: &HostFacts,
    mode: UsernsMode,
    report: &ProbeReport,
    choice: IsolationChoice,
) -> std::result::Result<Tier, Refusal> {
    if let Some(why) = &report.namespaces {
        return Err(refusal(facts, mode, why));
    }
    let mut tier = Tier { userns: mode, isolation: Isolation::default(), gave_up: Vec::new() };
    if mode == UsernsMode::Full {
        tier.gave_up.push(
            "root without CAP_SYS_ADMIN: steps run in a user namespace mapping every id to itself (chown and USER work)"
                .into(),
        );
    }
    if let Some(why) = &report.fresh_proc {
        tier.isolation.shared_proc = true;
        tier.gave_up.push(format!(
            "a fresh /proc was refused ({why}{}): steps share this {}'s /proc and process namespace",
            if facts.masked_proc { ", /proc paths are masked" } else { "" },
            if facts.container.is_some() { "container" } else { "host" }
        ));
    }
    if let Some(why) = &report.pivot_root {
        tier.isolation.chroot = true;
        tier.gave_up.push(format!("pivot_root was refused ({why}): steps enter their root with chroot"));
    }
    if choice == IsolationChoice::Sandbox && (tier.isolation != Isolation::default() || mode == UsernsMode::Full) {
        return Err(Refusal {
            stage: "sandbox".into(),
            message: format!("--isolation sandbox, but this host allows less: {}", tier.gave_up.join("; ")),
            hint: "use --isolation auto (RBUILD_ISOLATION=auto) to build with what it allows, or lift the limits \
                   (docs/ci.md)"
                .into(),
        });
    }
    Ok(tier)
}

/// The refusal for namespaces that cannot be created, with the cause the facts point at.
fn refusal(facts: &HostFacts, mode: UsernsMode, why: &str) -> Refusal {
    let stage = why.split(':').next().unwrap_or("create namespaces").to_string();
    let eperm = why.contains("EPERM");
    let hint = if facts.seccomp == 2 && eperm {
        format!(
            "this {} runs under a seccomp profile that forbids creating namespaces (Docker's and containerd's \
             default profile does). Lift it for this job: Docker `--security-opt seccomp=unconfined` (add \
             `--security-opt systempaths=unconfined` for a fresh /proc); Kubernetes `securityContext: \
             {{seccompProfile: {{type: Unconfined}}, procMount: Unmasked}}`; GitLab's docker executor \
             `security_opt = [\"seccomp:unconfined\"]` in config.toml. Or, as root in a disposable container, build \
             without namespaces: --isolation container (RBUILD_ISOLATION=container; the rbuild executor image \
             presets auto+container). See docs/ci.md",
            facts.container.as_deref().map_or("process".to_string(), |c| format!("{c} container"))
        )
    } else if facts.apparmor_restricts_userns && mode != UsernsMode::Off {
        "AppArmor restricts unprivileged user namespaces on this host (kernel.apparmor_restrict_unprivileged_userns=1): \
         allow them for rbuild with an AppArmor profile granting `userns,`, or set the sysctl to 0"
            .into()
    } else if facts.userns_clone_disabled && mode != UsernsMode::Off {
        "unprivileged user namespaces are disabled: sysctl kernel.unprivileged_userns_clone=1".into()
    } else if facts.max_user_namespaces_zero && mode != UsernsMode::Off {
        "user namespaces are disabled: sysctl user.max_user_namespaces=15000".into()
    } else if mode == UsernsMode::Off && eperm {
        "creating namespaces needs CAP_SYS_ADMIN, or leave to rbuild a user namespace (RBUILD_USERNS=auto)".into()
    } else {
        "see docs/ci.md for what rbuild needs from the host".into()
    };
    Refusal { stage, message: why.split_once(": ").map_or(why, |(_, m)| m).to_string(), hint }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(namespaces: &str) -> ProbeReport {
        ProbeReport { namespaces: Some(namespaces.into()), ..Default::default() }
    }

    #[test]
    fn a_seccomp_refusal_names_the_profile_and_the_settings_that_lift_it() {
        let facts = HostFacts { seccomp: 2, container: Some("docker".into()), ..Default::default() };
        let r = decide(
            &facts,
            UsernsMode::Single,
            &refused("create user namespace: EPERM: Operation not permitted"),
            IsolationChoice::Auto,
        )
        .unwrap_err();
        assert_eq!(r.stage, "create user namespace");
        for needle in ["seccomp profile", "seccomp=unconfined", "seccompProfile", "procMount: Unmasked", "security_opt"]
        {
            assert!(r.hint.contains(needle), "{needle}: {}", r.hint);
        }
        assert!(!r.hint.contains("sysctl"), "{}", r.hint);
    }

    #[test]
    fn what_is_refused_is_given_up_and_said() {
        let facts = HostFacts { masked_proc: true, container: Some("docker".into()), ..Default::default() };
        let report = ProbeReport {
            namespaces: None,
            fresh_proc: Some("mount /proc: EPERM".into()),
            pivot_root: Some("pivot_root: EPERM".into()),
            overlay: None,
        };
        let tier = decide(&facts, UsernsMode::Full, &report, IsolationChoice::Auto).unwrap();
        assert_eq!(tier.isolation, Isolation { shared_proc: true, chroot: true });
        assert_eq!(tier.gave_up.len(), 3, "{:?}", tier.gave_up);
        assert!(tier.gave_up[1].contains("share this container's /proc"), "{:?}", tier.gave_up);
        let strict = decide(&facts, UsernsMode::Full, &report, IsolationChoice::Sandbox).unwrap_err();
        assert!(strict.message.contains("--isolation sandbox"), "{strict:?}");
        let full = decide(&facts, UsernsMode::Off, &ProbeReport::default(), IsolationChoice::Sandbox).unwrap();
        assert!(full.gave_up.is_empty());
    }
}
