//! The distribution API, blocking for callers (a private tokio runtime inside): manifests (get by tag or digest,
//! with every digest verified; put with the exact bytes given), blobs (exists, streamed download verified
//! against its digest, cross-repository mount, monolithic or chunked upload), and the pull-side mirror order.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::error::{RegistryError, Result};
use crate::reference::Reference;
use crate::settings::Settings;
use crate::transport::{Endpoint, Request, Transport, resolve_location, status_error};

/// The manifest media types rbuild accepts, most preferred first.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// A manifest or index as the registry sent it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
}

/// Request counts since the client was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub get: u64,
    pub head: u64,
    pub post: u64,
    pub put: u64,
    pub patch: u64,
}

/// A registry client (shared by threads; each call blocks until done).
#[derive(Debug)]
pub struct Client {
    runtime: tokio::runtime::Runtime,
    transport: Transport,
    /// The scheme found for registries that allow plain HTTP.
    schemes: std::sync::Mutex<std::collections::HashMap<String, &'static str>>,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn repo_path(r: &str) -> String {
    r.to_string()
}

impl Client {
    pub fn new(settings: Settings) -> Result<Client> {
        // One process-wide crypto provider for rustls (ring); a second install is a no-op error.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rbuild-registry")
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Io { what: "start the registry client's runtime".into(), source: e })?;
        Ok(Client { runtime, transport: Transport::new(settings), schemes: Default::default() })
    }

    pub fn settings(&self) -> &Settings {
        &self.transport.settings
    }

    pub fn request_counts(&self) -> RequestCounts {
        let c = &self.transport.counts;
        RequestCounts {
            get: c[0].load(Ordering::Relaxed),
            head: c[1].load(Ordering::Relaxed),
            post: c[2].load(Ordering::Relaxed),
            put: c[3].load(Ordering::Relaxed),
            patch: c[4].load(Ordering::Relaxed),
        }
    }

    /// Where `registry`'s API is. Registries that may be spoken to over plain HTTP (localhost, 127.0.0.0/8,
    /// `--insecure-registry`) are probed once for HTTPS first, as docker does, and use it when it answers.
    fn endpoint(&self, registry: &str) -> Endpoint {
        let s = &self.transport.settings;
        let mut ep = Endpoint::new(registry, s);
        if !s.is_plain_http(registry) || s.offline {
            return ep;
        }
        if let Some(scheme) = self.schemes.lock().ok().and_then(|m| m.get(registry).copied()) {
            ep.base = ep.base.replacen("http://", &format!("{scheme}://"), 1);
            return ep;
        }
        let https = ep.base.replacen("http://", "https://", 1);
        let speaks_tls = self.runtime.block_on(self.transport.probe_https(registry, &format!("{https}/v2/")));
        let scheme = if speaks_tls { "https" } else { "http" };
        if let Ok(mut m) = self.schemes.lock() {
            m.insert(registry.to_string(), scheme);
        }
        if speaks_tls {
            ep.base = https;
        }
        ep
    }

    /// The endpoints to try for pulls from `registry`: its mirrors in order, then itself.
    fn pull_endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let s = &self.transport.settings;
        // A mirror is a registry of its own: its credentials and settings apply.
        let mut out: Vec<Endpoint> = s.registry(registry).mirrors.iter().map(|m| self.endpoint(m)).collect();
        out.push(self.endpoint(registry));
        out
    }

    /// Try each pull endpoint in turn; the last error is returned when all fail (a 404 from a mirror moves on).
    fn with_pull_endpoints<T>(&self, registry: &str, mut f: impl FnMut(&Endpoint) -> Result<T>) -> Result<T> {
        let endpoints = self.pull_endpoints(registry);
        let mut last = None;
        for (i, ep) in endpoints.iter().enumerate() {
            match f(ep) {
                Ok(v) => return Ok(v),
                Err(e @ RegistryError::Offline { .. }) => return Err(e),
                Err(e) if i + 1 < endpoints.len() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Protocol { registry: registry.into(), reason: "no endpoint".into() }))
    }

    /// Get a manifest or index by the reference's digest (verified) or tag.
    pub fn get_manifest(&self, r: &Reference) -> Result<Manifest> {
        let reference = r.digest.clone().or_else(|| r.tag.clone()).unwrap_or_else(|| "latest".into());
        self.get_manifest_by(&r.registry, &r.repository, &reference, &r.familiar())
    }

    /// Get a manifest by tag or digest from `registry/repository`.
    pub fn get_manifest_by(&self, registry: &str, repository: &str, reference: &str, what: &str) -> Result<Manifest> {
        self.with_pull_endpoints(registry, |ep| {
            self.runtime.block_on(async {
                let mut headers = HeaderMap::new();
                headers.insert(ACCEPT, HeaderValue::from_static(
                    "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
                ));
                let req = Request {
                    method: Method::GET,
                    url: format!("/v2/{}/manifests/{reference}", repo_path(repository)),
                    headers,
                    body: None,
                    scopes: vec![format!("repository:{repository}:pull")],
                    what: format!("the manifest of {what}"),
                };
                let resp = self.transport.send(ep, &req).await?;
                if !resp.status().is_success() {
                    return Err(status_error(ep, &format!("image {what}"), resp).await);
                }
                let media_type = resp
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
                    .unwrap_or_default();
                let bytes = read_limited(resp, MAX_MANIFEST_BYTES, &ep.registry, &req.what).await?;
                let digest = sha256_digest(&bytes);
                if reference.starts_with("sha256:") && digest != reference {
                    return Err(RegistryError::DigestMismatch {
                        registry: ep.registry.clone(),
                        what: req.what.clone(),
                        expected: reference.to_string(),
                        actual: digest,
                    });
                }
                // The media type: the body's own field wins over a generic Content-Type.
                let declared = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v["mediaType"].as_str().map(str::to_string));
                let media_type = match declared {
                    Some(d) => d,
                    None if MANIFEST_TYPES.contains(&media_type.as_str()) => media_type,
                    None => "application/vnd.oci.image.manifest.v1+json".to_string(),
                };
                Ok(Manifest { bytes: bytes.to_vec(), media_type, digest })
            })
        })
    }

    /// Stream a blob into `out`, verifying its sha256 digest (and size when given) before returning. On a
    /// mismatch the caller must discard what was written.
    pub fn fetch_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        size: Option<u64>,
        out: &mut dyn Write,
    ) -> Result<u64> {
        let mut written_any = false;
        self.with_pull_endpoints(registry, |ep| {
            if written_any {
                // A mirror that failed mid-stream: the caller's sink already holds part of the blob.
                return Err(RegistryError::Protocol {
                    registry: ep.registry.clone(),
                    reason: format!("the download of {digest} failed part way; retry the pull"),
                });
            }
            self.runtime.block_on(async {
                let req = Request {
                    method: Method::GET,
                    url: format!("/v2/{}/blobs/{digest}", repo_path(repository)),
                    headers: HeaderMap::new(),
                    body: None,
                    scopes: vec![format!("repository:{repository}:pull")],
                    what: format!("blob {digest} of {repository}"),
                };
                let mut resp = self.transport.send(ep, &req).await?;
                if !resp.status().is_success() {
                    return Err(status_error(ep, &req.what, resp).await);
                }
                let mut h = Sha256::new();
                let mut n = 0u64;
                loop {
                    let chunk = resp.chunk().await.map_err(|e| RegistryError::Unreachable {
                        registry: ep.registry.clone(),
                        what: req.what.clone(),
                        reason: e.to_string(),
                    })?;
                    let Some(chunk) = chunk else { break };
                    h.update(&chunk);
                    n += chunk.len() as u64;
                    if size.is_some_and(|s| n > s) {
                        return Err(RegistryError::DigestMismatch {
                            registry: ep.registry.clone(),
                            what: req.what.clone(),
                            expected: format!("{digest} ({} bytes)", size.unwrap_or(0)),
                            actual: format!("more than {} bytes", size.unwrap_or(0)),
                        });
                    }
                    written_any = true;
                    out.write_all(&chunk)
                        .map_err(|e| RegistryError::Io { what: format!("store blob {digest}"), source: e })?;
                }
                let actual = format!("sha256:{}", hex::encode(h.finalize()));
                if actual != digest || size.is_some_and(|s| s != n) {
                    return Err(RegistryError::DigestMismatch {
                        registry: ep.registry.clone(),
                        what: req.what.clone(),
                        expected: digest.to_string(),
                        actual,
                    });
                }
                Ok(n)
            })
        })
    }

    /// Whether the repository has the blob (HEAD).
    pub fn blob_exists(&self, registry: &str, repository: &str, digest: &str) -> Result<bool> {
        let ep = self.endpoint(registry);
        self.runtime.block_on(async {
            let req = Request {
                method: Method::HEAD,
                url: format!("/v2/{}/blobs/{digest}", repo_path(repository)),
                headers: HeaderMap::new(),
                body: None,
                scopes: vec![format!("repository:{repository}:pull,push")],
                what: format!("blob {digest} of {repository}"),
            };
            let resp = self.transport.send(&ep, &req).await?;
            match resp.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(status_error(&ep, &req.what, resp).await),
            }
        })
    }

    /// Ask the registry to mount a blob from another repository; false when it would not (then upload).
    pub fn mount_blob(&self, registry: &str, repository: &str, digest: &str, from: &str) -> Result<bool> {
        let ep = self.endpoint(registry);
        self.runtime.block_on(async {
            let req = Request {
                method: Method::POST,
                url: format!("/v2/{}/blobs/uploads/?mount={digest}&from={from}", repo_path(repository)),
                headers: HeaderMap::new(),
                body: None,
                scopes: vec![format!("repository:{repository}:pull,push"), format!("repository:{from}:pull")],
                what: format!("mount of {digest} into {repository}"),
            };
            let resp = self.transport.send(&ep, &req).await?;
            match resp.status() {
                StatusCode::CREATED => Ok(true),
                StatusCode::ACCEPTED => {
                    // An upload session was started instead; leave it (it expires) and upload normally.
                    Ok(false)
                }
                _ => Err(status_error(&ep, &req.what, resp).await),
            }
        })
    }

    /// Upload a blob from a file: one PUT when it is small (or the registry does not ask for chunks), else
    /// PATCHes of `chunk_size` with Content-Range and a closing PUT. A failed upload starts again from the
    /// beginning within the retry budget.
    pub fn upload_blob(&self, registry: &str, repository: &str, digest: &str, path: &Path) -> Result<()> {
        let ep = self.endpoint(registry);
        let size = std::fs::metadata(path)
            .map_err(|e| RegistryError::Io { what: format!("read {}", path.display()), source: e })?
            .len();
        let started = std::time::Instant::now();
        let mut lost_sessions = 0;
        loop {
            let outcome = self.runtime.block_on(self.upload_once(&ep, repository, digest, path, size));
            match outcome {
                Err(e) if e.is_transient() && started.elapsed() < self.transport.settings.retry_budget => {
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                // The registry forgot the upload session (it restarted): start the blob again, a few times.
                Err(RegistryError::NotFound { .. }) if lost_sessions < 3 => lost_sessions += 1,
                other => return other,
            }
        }
    }

    async fn upload_once(&self, ep: &Endpoint, repository: &str, digest: &str, path: &Path, size: u64) -> Result<()> {
        let scopes = vec![format!("repository:{repository}:pull,push")];
        let what = format!("upload of {digest} to {repository}");
        let start = Request {
            method: Method::POST,
            url: format!("/v2/{}/blobs/uploads/", repo_path(repository)),
            headers: HeaderMap::new(),
            body: None,
            scopes: scopes.clone(),
            what: what.clone(),
        };
        let resp = self.transport.send(ep, &start).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_error(ep, &what, resp).await);
        }
        let min_chunk = resp
            .headers()
            .get("OCI-Chunk-Min-Length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut location = location_of(ep, &start.url, &resp)?;
        let chunk = self.transport.settings.chunk_size.max(min_chunk.unwrap_or(0)).max(1);
        if size > chunk {
            let mut offset = 0u64;
            while offset < size {
                let len = chunk.min(size - offset);
                let mut headers = HeaderMap::new();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
                let range = format!("{offset}-{}", offset + len - 1);
                headers.insert(CONTENT_RANGE, HeaderValue::from_str(&range).unwrap_or(HeaderValue::from_static("0-0")));
                let body = move || file_body(path, offset, len);
                let req = Request {
                    method: Method::PATCH,
                    url: location.clone(),
                    headers,
                    body: Some(&body),
                    scopes: scopes.clone(),
                    what: what.clone(),
                };
                let resp = self.transport.send(ep, &req).await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(status_error(ep, &what, resp).await);
                }
                location = location_of(ep, &location, &resp)?;
                offset += len;
            }
            let req = Request {
                method: Method::PUT,
                url: with_digest(&location, digest),
                headers: HeaderMap::from_iter([(CONTENT_LENGTH, HeaderValue::from(0u64))]),
                body: None,
                scopes,
                what: what.clone(),
            };
            let resp = self.transport.send(ep, &req).await?;
            return if resp.status() == StatusCode::CREATED {
                Ok(())
            } else {
                Err(status_error(ep, &what, resp).await)
            };
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
        let body = move || file_body(path, 0, size);
        let req = Request {
            method: Method::PUT,
            url: with_digest(&location, digest),
            headers,
            body: Some(&body),
            scopes,
            what: what.clone(),
        };
        let resp = self.transport.send(ep, &req).await?;
        if resp.status() == StatusCode::CREATED { Ok(()) } else { Err(status_error(ep, &what, resp).await) }
    }

    /// Put a manifest under a tag or digest, with exactly these bytes; returns the digest the registry reports.
    pub fn put_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String> {
        let ep = self.endpoint(registry);
        let digest = sha256_digest(bytes);
        self.runtime.block_on(async {
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_str(media_type).map_err(|_| RegistryError::Protocol {
                    registry: registry.into(),
                    reason: format!("media type {media_type:?} cannot be sent"),
                })?,
            );
            let owned = bytes.to_vec();
            let body = move || Ok(reqwest::Body::from(owned.clone()));
            let req = Request {
                method: Method::PUT,
                url: format!("/v2/{}/manifests/{reference}", repo_path(repository)),
                headers,
                body: Some(&body),
                scopes: vec![format!("repository:{repository}:pull,push")],
                what: format!("the manifest of {registry}/{repository}:{reference}"),
            };
            let resp = self.transport.send(&ep, &req).await?;
            if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
                return Err(status_error(&ep, &req.what, resp).await);
            }
            if let Some(d) = resp.headers().get("Docker-Content-Digest").and_then(|v| v.to_str().ok())
                && d != digest
            {
                return Err(RegistryError::DigestMismatch {
                    registry: registry.into(),
                    what: req.what.clone(),
                    expected: digest.clone(),
                    actual: d.to_string(),
                });
            }
            Ok(digest.clone())
        })
    }

    /// Download a plain http(s) URL (ADD's remote sources) into `out`; returns the bytes written and the
    /// `Last-Modified` header. Offline mode forbids it; redirects are followed (no credentials are ever sent).
    pub fn fetch_url(&self, url: &str, out: &mut dyn Write) -> Result<(u64, Option<String>)> {
        self.fetch_url_meta(url, out).map(|m| (m.size, m.last_modified))
    }

    /// [`Client::fetch_url`], with what the server said of the content (ETag, Last-Modified).
    pub fn fetch_url_meta(&self, url: &str, out: &mut dyn Write) -> Result<UrlMeta> {
        let client = self.url_client(url)?;
        self.runtime.block_on(async {
            // Not a registry: the errors name the URL (ADD's source).
            let unreachable =
                |e: reqwest::Error| RegistryError::UrlUnreachable { url: url.into(), reason: e.to_string() };
            let mut resp = client.get(url).send().await.map_err(unreachable)?;
            if !resp.status().is_success() {
                return Err(RegistryError::UrlStatus { url: url.into(), status: resp.status().as_u16() });
            }
            let mut meta = UrlMeta::from_headers(resp.headers());
            let mut n = 0u64;
            while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
                out.write_all(&chunk).map_err(|e| RegistryError::Io { what: format!("save {url}"), source: e })?;
                n += chunk.len() as u64;
            }
            meta.size = n;
            Ok(meta)
        })
    }

    /// The HTTP client for a plain URL (ADD's sources: no registry, no credentials), refused offline.
    fn url_client(&self, url: &str) -> Result<reqwest::Client> {
        if self.transport.settings.offline {
            return Err(RegistryError::Offline { registry: url_host(url), what: url.to_string() });
        }
        crate::transport::http_client_builder(self.transport.settings.read_timeout)
            .build()
            .map_err(|e| RegistryError::Protocol { registry: url_host(url), reason: e.to_string() })
    }

    /// What a HEAD request says of `url` now (to tell whether a copy fetched before is still current).
    pub fn head_url(&self, url: &str) -> Result<UrlMeta> {
        let client = self.url_client(url)?;
        self.runtime.block_on(async {
            let resp = client
                .head(url)
                .send()
                .await
                .map_err(|e| RegistryError::UrlUnreachable { url: url.into(), reason: e.to_string() })?;
            if !resp.status().is_success() {
                return Err(RegistryError::UrlStatus { url: url.into(), status: resp.status().as_u16() });
            }
            let mut meta = UrlMeta::from_headers(resp.headers());
            // The header itself: a HEAD response has no body, so the body's length says nothing.
            meta.size = resp
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            Ok(meta)
        })
    }

    /// `rbuild login`: check credentials against the registry (GET /v2/ with them).
    pub fn check_login(&self, registry: &str) -> Result<()> {
        let ep = self.endpoint(registry);
        self.runtime.block_on(async {
            let req = Request {
                method: Method::GET,
                url: "/v2/".into(),
                headers: HeaderMap::new(),
                body: None,
                scopes: Vec::new(),
                what: "login".into(),
            };
            let resp = self.transport.send(&ep, &req).await?;
            if resp.status().is_success() { Ok(()) } else { Err(status_error(&ep, "login", resp).await) }
        })
    }
}

/// What a server says of a URL's content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlMeta {
    /// Bytes (written, for a download; Content-Length, for HEAD).
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl UrlMeta {
    fn from_headers(h: &reqwest::header::HeaderMap) -> UrlMeta {
        let text = |name| h.get(name).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok()).map(str::to_string);
        UrlMeta { size: 0, etag: text(reqwest::header::ETAG), last_modified: text(reqwest::header::LAST_MODIFIED) }
    }
}

/// A URL's host (and port), for messages.
fn url_host(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| u.port().map_or(h.to_string(), |p| format!("{h}:{p}"))))
        .unwrap_or_else(|| url.to_string())
}

fn location_of(ep: &Endpoint, base: &str, resp: &reqwest::Response) -> Result<String> {
    let loc = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| RegistryError::Protocol {
        registry: ep.registry.clone(),
        reason: "an upload answer without a Location".into(),
    })?;
    let base = if base.starts_with("http") { base.to_string() } else { format!("{}{base}", ep.base) };
    Ok(resolve_location(&base, loc))
}

fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// A streaming body of `len` bytes of `path` from `offset`.
fn file_body(path: &Path, offset: u64, len: u64) -> Result<reqwest::Body> {
    use std::io::{Seek, SeekFrom};
    let io = |e| RegistryError::Io { what: format!("read {}", path.display()), source: e };
    let mut f = std::fs::File::open(path).map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let file = tokio::fs::File::from_std(f);
    use tokio::io::AsyncReadExt;
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 1 << 20);
    Ok(reqwest::Body::wrap_stream(stream))
}

/// Manifests and indexes larger than this are refused (registries refuse to store them, and no image needs one).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// A response body of at most `limit` bytes: a larger announced length or a body that keeps coming is an error,
/// read no further.
async fn read_limited(mut resp: reqwest::Response, limit: u64, registry: &str, what: &str) -> Result<Vec<u8>> {
    let too_large = || RegistryError::Protocol {
        registry: registry.to_string(),
        reason: format!("{what} is larger than {} MiB; refused", limit >> 20),
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    loop {
        let chunk = resp.chunk().await.map_err(|e| RegistryError::Unreachable {
            registry: registry.to_string(),
            what: what.to_string(),
            reason: e.to_string(),
        })?;
        let Some(chunk) = chunk else { break };
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
