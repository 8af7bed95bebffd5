//! One module per `rbuild` subcommand, and the build command's helpers (context, progress view).

pub mod archive_cmds;
pub mod build;
pub mod build_args;
pub mod build_check;
pub mod compose;
pub mod compose_build;
pub mod debug;
pub mod dockerfile_input;
pub mod info;
pub mod progress_view;
pub mod registry_cmds;
pub mod run;
pub mod shell_docs;
pub mod store_cmds;
pub mod terminal_text;

/// `--isolation` (`RBUILD_ISOLATION`) as given on the command line, for every command that runs sandboxes.
static ISOLATION: std::sync::OnceLock<rbuild_builder::sandbox::isolation::IsolationChoice> = std::sync::OnceLock::new();

pub fn set_isolation(choice: rbuild_builder::sandbox::isolation::IsolationChoice) {
    let _ = ISOLATION.set(choice);
}

pub fn isolation() -> rbuild_builder::sandbox::isolation::IsolationChoice {
    ISOLATION.get().copied().unwrap_or_default()
}

/// Before the store is opened, for `--isolation container`, and `auto+container` as root in a container: the
/// store's default becomes /rbuild/store and rbuild's temporary files go below it (out of a step's reach);
/// `--isolation container` is refused outside a container, or with the store below a directory images use, before
/// anything is touched (`runs_steps`: the command may run RUN steps).
pub fn container_setup(
    root: &mut Option<std::path::PathBuf>,
    choice: rbuild_builder::sandbox::isolation::IsolationChoice,
    runs_steps: bool,
) -> anyhow::Result<()> {
    use rbuild_builder::sandbox::container::guard;
    let explicit = choice == rbuild_builder::sandbox::isolation::IsolationChoice::Container;
    // Where container isolation may be chosen: explicitly, or as root in a container (auto+container).
    let may_be_chosen = explicit || (guard::container_mark().is_some() && nix::unistd::geteuid().is_root());
    if !may_be_chosen {
        return Ok(());
    }
    let store = root.get_or_insert_with(|| guard::DEFAULT_STORE.into()).clone();
    if explicit && runs_steps {
        guard::check_may_run()?;
        guard::check_store(&store)?;
    }
    if guard::container_mark().is_some() && nix::unistd::geteuid().is_root() {
        let tmp = guard::lexical_absolute(&store).join("tmpfiles");
        std::fs::create_dir_all(&tmp)?;
        // SAFETY: called from main before any other thread exists.
        unsafe { std::env::set_var("TMPDIR", &tmp) };
    }
    Ok(())
}
