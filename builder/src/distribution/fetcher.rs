//! The engine's [`Fetcher`] over the network: ADD URLs downloaded with the registry client's HTTP transport
//! (its proxy, CA and offline settings), git sources checked out with the `git` program (as BuildKit does).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rbuild_registry::Client;

use super::url_cache::UrlCache;
use crate::context::git::GitSource;
use crate::engine::ports::Fetcher;
use crate::error::{Error, Result};

/// Fetches with `client`'s settings; without a client (a build that may not use the network) every fetch fails.
#[derive(Debug)]
pub struct NetworkFetcher {
    client: Option<Arc<Client>>,
    downloads: Option<UrlCache>,
}

impl NetworkFetcher {
    pub fn new(client: Option<Arc<Client>>) -> Self {
        NetworkFetcher { client, downloads: None }
    }

    /// Remember downloads in `dir`, so that a later build revalidates them with HEAD instead of downloading again.
    pub fn remembering_downloads(mut self, dir: std::path::PathBuf) -> Self {
        self.downloads = Some(UrlCache::new(dir));
        self
    }
}

impl Fetcher for NetworkFetcher {
    fn url(&self, url: &str, dest: &Path) -> Result<Option<SystemTime>> {
        let client = self.client.as_ref().ok_or_else(|| Error::Fetch {
            message: "ADD of a URL needs network access (no registry client in this build)".into(),
        })?;
        if let Some((data, modified)) = self.downloads.as_ref().and_then(|d| d.current(client, url)) {
            std::fs::copy(&data, dest).map_err(Error::io("copy", &data))?;
            return Ok(modified.as_deref().and_then(parse_http_date));
        }
        let mut out = std::fs::File::create(dest).map_err(Error::io("create", dest))?;
        let meta = client.fetch_url_meta(url, &mut out).map_err(|e| Error::Registry(Box::new(e)))?;
        drop(out);
        if let Some(downloads) = &self.downloads {
            downloads.remember(url, dest, &meta);
        }
        Ok(meta.last_modified.as_deref().and_then(parse_http_date))
    }

    fn git(&self, url: &str, dest: &Path, keep_git_dir: bool) -> Result<crate::context::git::GitCheckout> {
        if self.client.as_ref().is_some_and(|c| c.settings().offline) {
            return Err(Error::Fetch {
                message: format!("ADD {url}: rbuild is offline (--offline or RBUILD_OFFLINE)"),
            });
        }
        GitSource::parse(url).checkout(dest, keep_git_dir).map_err(|e| Error::Fetch { message: e.to_string() })
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, the only form servers send today) as a time.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, _] = parts.as_slice() else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
    let [h, mi, se] = hms.as_slice() else { return None };
    // Days from 1970-01-01 to the date (civil calendar).
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs).ok().map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::parse_http_date;

    #[test]
    fn http_dates_parse_to_their_instant() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        assert!(parse_http_date("yesterday").is_none());
    }
}
