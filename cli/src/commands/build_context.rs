//! The CLI's end of context acquisition: a context argument (or a named context's URL) handed to the builder's
//! `context::source` with the network fetcher of this invocation's registry settings and standard input.

use std::sync::Arc;

use anyhow::{Context, bail};
use rbuild_builder::context::source::{self, ContextSource};
use rbuild_builder::distribution::NetworkFetcher;
use rbuild_builder::engine::NamedContext;
use rbuild_builder::store::Store;
use rbuild_registry::Client;

pub use rbuild_builder::context::source::ResolvedContext;

/// The context `context` names: `-`, a git URL, an http(s) URL of a tarball or a directory.
pub fn resolve(store: &Store, context: &str, client: &Arc<Client>) -> anyhow::Result<ResolvedContext> {
    let fetcher = NetworkFetcher::new(Some(client.clone()));
    let source = ContextSource::parse(context);
    let resolved = source::resolve(store, &source, &mut std::io::stdin().lock(), &fetcher, client.settings().offline);
    if matches!(source, ContextSource::Tarball(_)) {
        return resolved.with_context(|| format!("cannot fetch the build context {context}"));
    }
    Ok(resolved?)
}

/// A named context's value (`--build-context NAME=VALUE`, Compose `additional_contexts`) made a request's named
/// context: a git URL checked out or an http(s) URL downloaded as the one file `context` (with the fetched files,
/// to keep until the build ends, and their time for SOURCE_DATE_EPOCH=NAME), else a directory or an image.
pub fn named_context(
    store: &Store,
    value: &str,
    client: &Arc<Client>,
) -> anyhow::Result<(NamedContext, Option<ResolvedContext>)> {
    if ContextSource::parse(value).is_remote() {
        let fetcher = NetworkFetcher::new(Some(client.clone()));
        let fetched = source::resolve_named_url(store, value, &fetcher, client.settings().offline)?;
        return Ok((NamedContext::Dir(fetched.dir.clone()), Some(fetched)));
    }
    let nc = NamedContext::parse(value);
    if let NamedContext::Dir(d) = &nc
        && !d.is_dir()
    {
        bail!("not a directory (nor docker-image://, oci-layout://, a git or http(s) URL)");
    }
    Ok((nc, None))
}
