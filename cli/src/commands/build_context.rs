//! The CLI's end of context acquisition: a context argument (or a named context's URL) handed to the builder's
//! `context::source` with the network fetcher of this invocation's registry settings and standard input.

use std::sync::Arc;

use anyhow::Context;
use rbuild_builder::context::source::{self, ContextSource};
use rbuild_builder::distribution::NetworkFetcher;
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

/// A named context given as a URL: a git checkout, or an http(s) download as the one file `context`.
pub fn resolve_named_url(store: &Store, url: &str, client: &Arc<Client>) -> anyhow::Result<ResolvedContext> {
    let fetcher = NetworkFetcher::new(Some(client.clone()));
    Ok(source::resolve_named_url(store, url, &fetcher, client.settings().offline)?)
}

/// Whether a named context's value is a URL to fetch (git or http(s)).
pub fn is_url(value: &str) -> bool {
    ContextSource::parse(value).is_remote()
}
