//! `rbuild run [--rm] [--network none|host] [--platform P] [--userns MODE] IMAGE [CMD...]`: the step's output goes to rbuild's
//! own, and rbuild exits with the step's exit code (128 + signal when killed).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rbuild_builder::sandbox::run_image::{RunImageOptions, run_image};
use rbuild_builder::store::Store;
use rbuild_runtime::{ExitStatus, NetworkMode, OutputMode, Runtime, UsernsMode, userns};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Network {
    Host,
    None,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the sandbox's changes afterwards (always done; accepted for docker compatibility).
    #[arg(long)]
    pub rm: bool,
    #[arg(long, value_enum, default_value = "host")]
    pub network: Network,
    /// Add a host entry to /etc/hosts (host:ip).
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// A mount, as RUN --mount takes them: type=cache|tmpfs|secret|ssh|bind,... (bind and secret sources are
    /// host paths).
    #[arg(long = "mount")]
    pub mounts: Vec<String>,
    /// A resource limit, as `docker run --ulimit`: NAME=SOFT[:HARD] (e.g. nofile=1024:2048).
    #[arg(long = "ulimit")]
    pub ulimits: Vec<String>,
    /// After the command, list what it changed (A added, C changed, D deleted; with owner uid:gid).
    #[arg(long)]
    pub changes: bool,
    /// Run this platform's image (from a multi-platform image; it must match a single-platform one). A foreign
    /// image runs under emulation, with or without it.
    #[arg(long, env = "DOCKER_DEFAULT_PLATFORM")]
    pub platform: Option<String>,
    /// The image (name, digest or oci-layout://PATH[:TAG]).
    pub image: String,
    /// The command (default: the image's CMD), after the image's ENTRYPOINT.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// The signal that interrupted the run, if any.
static INTERRUPTED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_signal(sig: nix::libc::c_int) {
    INTERRUPTED.store(sig, std::sync::atomic::Ordering::SeqCst);
    rbuild_runtime::kill_running_sandboxes();
}

/// On SIGINT and SIGTERM, stop the sandbox and let the run clean up, instead of dying mid-way.
fn stop_sandboxes_on_signals() -> anyhow::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic and calls kill(2), both async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

pub fn run(store: &Store, args: RunArgs, userns_choice: Option<&str>) -> anyhow::Result<ExitCode> {
    stop_sandboxes_on_signals()?;
    let mode = userns::detect_with(userns_choice)?;
    let extra_hosts = args
        .add_host
        .iter()
        .map(|h| rbuild_builder::hosts::parse_host_entry(h).with_context(|| format!("--add-host {h:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = RunImageOptions {
        image: args.image,
        cmd: args.cmd,
        network: match args.network {
            Network::Host => NetworkMode::Host,
            Network::None => NetworkMode::None,
        },
        output: OutputMode::Inherit,
        userns: mode,
        extra_hosts,
        changes: args.changes,
        isolation: super::isolation(),
        platform: args
            .platform
            .as_deref()
            .filter(|p| !p.trim().is_empty())
            .map(rbuild_builder::platform::Platform::parse)
            .transpose()
            .context("--platform")?,
        rlimits: args
            .ulimits
            .iter()
            .map(|u| rbuild_builder::engine::request_flags::parse_ulimit(u))
            .collect::<Result<Vec<_>, _>>()?,
        mounts: args
            .mounts
            .iter()
            .map(|m| {
                // The shell has expanded variables already: a `$` left in a value is literal.
                let mut mount = rbuild_builder::dockerfile::parse_mount(m)
                    .and_then(|parsed| rbuild_builder::dockerfile::expand_mount(&parsed, |v| Ok(v.to_string())))
                    .map_err(|e| anyhow::anyhow!("--mount {m:?}: {e}"))?;
                // `rbuild run --mount type=ssh` forwards the caller's own agent.
                if mount.kind == rbuild_builder::dockerfile::MountType::Ssh && mount.source.is_none() {
                    mount.source = std::env::var("SSH_AUTH_SOCK").ok();
                }
                Ok(mount)
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    let result = run_image(store, &Runtime::current()?, &opts)?;
    for c in &result.changes {
        match c.owner {
            Some((u, g)) => println!("{} {} {u}:{g}", c.kind, c.path),
            None => println!("{} {}", c.kind, c.path),
        }
    }
    let outcome = result.outcome;
    let sig = INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst);
    if sig != 0 {
        eprintln!("rbuild: interrupted by signal {sig}; the sandbox was stopped and cleaned up");
        return Ok(ExitCode::from(u8::try_from(128 + sig).unwrap_or(255)));
    }
    if !outcome.status.success() && mode == UsernsMode::Single {
        eprintln!("hint: {}", userns::subuid_hint());
    }
    if let ExitStatus::Signaled(sig) = outcome.status {
        eprintln!("rbuild: the command was killed by signal {sig}");
    }
    Ok(ExitCode::from(u8::try_from(outcome.status.code()).unwrap_or(255)))
}
