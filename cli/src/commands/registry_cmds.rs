//! The registry commands: `pull`, `push`, `login`, `logout`, and making the registry client from the global
//! `--offline` / `--insecure-registry` flags and `registries.toml`.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use rbuild_builder::store::Store;
use rbuild_registry::{Client, Credentials, Reference, Settings};

/// The registry flags every command shares.
#[derive(Debug, Clone, Default, Args)]
pub struct RegistryFlags {
    /// Never use the network: images must be in the store (also RBUILD_OFFLINE=1).
    #[arg(long, global = true)]
    pub offline: bool,
    /// Speak plain HTTP to this registry (HOST[:PORT]); localhost and 127.0.0.0/8 always are.
    #[arg(long = "insecure-registry", global = true)]
    pub insecure_registries: Vec<String>,
}

pub fn client(flags: &RegistryFlags) -> anyhow::Result<Arc<Client>> {
    let settings = Settings::load(flags.offline, &flags.insecure_registries)?;
    Ok(Arc::new(Client::new(settings)?))
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image, e.g. busybox, localhost:5000/team/app:1.0, repo@sha256:...
    pub image: String,
    /// Of a multi-platform image, pull this platform's image (default: the host's); the index is kept.
    #[arg(long, env = "DOCKER_DEFAULT_PLATFORM")]
    pub platform: Option<String>,
}

pub fn pull(store: &Store, flags: &RegistryFlags, args: PullArgs) -> anyhow::Result<ExitCode> {
    let reference = Reference::parse(&args.image)?;
    let client = client(flags)?;
    let started = std::time::Instant::now();
    let platform = match &args.platform {
        Some(p) => rbuild_builder::platform::Platform::parse(p).context("--platform")?,
        None => rbuild_builder::platform::Platform::host(),
    };
    let r = rbuild_builder::distribution::pull_for(
        store,
        &client,
        &reference,
        &platform,
        rbuild_builder::distribution::LayerFetch::Now,
    )?;
    eprintln!(
        "pulled {} ({}): {} blobs downloaded ({} bytes), {} already present, {:.1}s",
        reference.familiar(),
        r.manifest_digest,
        r.downloaded,
        r.bytes,
        r.present,
        started.elapsed().as_secs_f64()
    );
    println!("{}", r.manifest_digest);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image in the store.
    pub image: String,
    /// Where to push it (default: the image's own name).
    pub destination: Option<String>,
}

/// Push a store image to a destination; returns the report line.
pub fn push_one(store: &Store, client: &Client, image: &str, dest: &Reference) -> anyhow::Result<String> {
    let record = store.resolve_image(image)?;
    Ok(rbuild_builder::export::outputs::push_image(store, client, &record.digest()?, dest)?)
}

pub fn push(store: &Store, flags: &RegistryFlags, args: PushArgs) -> anyhow::Result<ExitCode> {
    let dest = Reference::parse(args.destination.as_deref().unwrap_or(&args.image))?;
    let client = client(flags)?;
    eprintln!("{}", push_one(store, &client, &args.image, &dest)?);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (HOST[:PORT]); docker.io when omitted.
    pub registry: Option<String>,
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Read the password from standard input.
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// The password (prefer --password-stdin: arguments are visible to other users).
    #[arg(short = 'p', long)]
    pub password: Option<String>,
}

pub fn login(flags: &RegistryFlags, args: LoginArgs) -> anyhow::Result<ExitCode> {
    let registry = args.registry.unwrap_or_else(|| "docker.io".into());
    let username = args.username.context("give the user name with -u NAME")?;
    let password = match (args.password, args.password_stdin) {
        (Some(p), false) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("cannot read the password from standard input")?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (Some(_), true) => bail!("give the password either with --password-stdin or with -p, not both"),
        (None, false) => bail!("give the password with --password-stdin (or -p)"),
    };
    let creds = Credentials { username, secret: password };
    // Check the credentials first: store them only when the registry accepts them.
    let path = rbuild_registry::credentials::store(&registry, &creds)?;
    let c = client(flags)?;
    if let Err(e) = c.check_login(&registry) {
        let _ = rbuild_registry::credentials::remove(&registry);
        return Err(e.into());
    }
    eprintln!("Login Succeeded (credentials saved in {})", path.display());
    Ok(ExitCode::SUCCESS)
}

pub fn logout(registry: Option<String>) -> anyhow::Result<ExitCode> {
    let registry = registry.unwrap_or_else(|| "docker.io".into());
    if rbuild_registry::credentials::remove(&registry)? {
        eprintln!("Removed login credentials for {registry}");
    } else {
        eprintln!("Not logged in to {registry}");
    }
    Ok(ExitCode::SUCCESS)
}
