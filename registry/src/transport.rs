//! Sending one request to a registry: the HTTP client for the host (plain HTTP where allowed, extra CA
//! certificates), authentication (a 401's challenge answered with a bearer token — fetched with Basic credentials
//! when there are any, cached until it expires — or Basic auth), redirects followed by hand so that credentials
//! never go to another host, and retries with exponential backoff on connection errors, 429 and 5xx, within the
//! retry budget. Counts requests per method for tests and reports.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::challenge;
use crate::credentials::{self, Credentials};
use crate::error::{RegistryError, Result};
use crate::settings::Settings;

/// Where a registry's API lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The registry as references name it (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// `https://registry-1.docker.io`, `http://localhost:5000`.
    pub base: String,
}

impl Endpoint {
    pub fn new(registry: &str, settings: &Settings) -> Endpoint {
        let host = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
        let scheme = if settings.is_plain_http(registry) { "http" } else { "https" };
        Endpoint { registry: registry.to_string(), base: format!("{scheme}://{host}") }
    }
}

/// A request body that can be produced again for a retry.
pub type BodyFactory<'a> = &'a (dyn Fn() -> Result<reqwest::Body> + Sync);

/// What to send.
pub struct Request<'a> {
    pub method: Method,
    /// An absolute URL, or a path (`/v2/...`) on the endpoint.
    pub url: String,
    pub headers: HeaderMap,
    pub body: Option<BodyFactory<'a>>,
    /// The auth scopes this request needs (`repository:NAME:pull`).
    pub scopes: Vec<String>,
    /// For messages: what is being fetched or sent.
    pub what: String,
}

#[derive(Debug, Clone)]
enum Auth {
    Bearer { token: String, expires: Instant },
    Basic(String),
}

/// Per-client transport state.
pub struct Transport {
    pub settings: Settings,
    clients: Mutex<HashMap<String, reqwest::Client>>,
    /// (registry, scopes) -> auth that worked.
    auth: Mutex<HashMap<(String, String), Auth>>,
    credentials: Mutex<HashMap<String, Option<Credentials>>>,
    /// Requests sent, by method (GET, HEAD, POST, PUT, PATCH): for tests and reports.
    pub counts: [AtomicU64; 5],
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        _ => 4,
    }
}

/// What `localhost` resolves to, whatever /etc/hosts says or lacks (ports come from the URL).
pub(crate) const LOOPBACK: [std::net::SocketAddr; 2] = [
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0),
    std::net::SocketAddr::new(std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 0),
];

impl Transport {
    pub fn new(settings: Settings) -> Transport {
        Transport {
            settings,
            clients: Mutex::new(HashMap::new()),
            auth: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
            counts: Default::default(),
        }
    }

    /// The HTTP client for `registry` (with its CA files), made once.
    fn client(&self, registry: &str) -> Result<reqwest::Client> {
        let mut clients = self.clients.lock().map_err(|_| poisoned(registry))?;
        if let Some(c) = clients.get(registry) {
            return Ok(c.clone());
        }
        let mut b = http_client_builder(self.settings.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30));
        for ca in self.settings.ca_files(registry) {
            let pem =
                std::fs::read(&ca).map_err(|e| RegistryError::Config { path: ca.clone(), reason: e.to_string() })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| RegistryError::Config {
                path: ca.clone(),
                reason: format!("not a PEM certificate: {e}"),
            })?;
            b = b.add_root_certificate(cert);
        }
        let c = b.build().map_err(|e| RegistryError::Protocol {
            registry: registry.into(),
            reason: format!("cannot set up the HTTP client: {e}"),
        })?;
        clients.insert(registry.to_string(), c.clone());
        Ok(c)
    }

    /// Whether `url` answers over TLS (any HTTP status counts) within a few seconds.
    pub async fn probe_https(&self, registry: &str, url: &str) -> bool {
        let Ok(client) = self.client(registry) else { return false };
        let probe = client.get(url).timeout(Duration::from_secs(3)).send();
        probe.await.is_ok()
    }

    fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        let mut cache = self.credentials.lock().map_err(|_| poisoned(registry))?;
        if let Some(c) = cache.get(registry) {
            return Ok(c.clone());
        }
        let c = credentials::lookup(registry)?;
        cache.insert(registry.to_string(), c.clone());
        Ok(c)
    }

    /// Send `req` to `ep`: authenticate on demand, follow redirects, retry transient failures.
    pub async fn send(&self, ep: &Endpoint, req: &Request<'_>) -> Result<reqwest::Response> {
        if self.settings.offline {
            return Err(RegistryError::Offline { registry: ep.registry.clone(), what: req.what.clone() });
        }
        self.settings.check_allowed(&ep.registry)?;
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            let outcome = self.send_once(ep, req).await;
            let transient = match &outcome {
                Ok(r) => r.status() == StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error(),
                Err(e) => e.is_transient(),
            };
            if !transient || started.elapsed() + delay > self.settings.retry_budget {
                return match outcome {
                    Ok(r) if transient => Err(status_error(ep, &req.what, r).await),
                    other => other,
                };
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// One attempt: the request, a 401 answered once with fresh auth, redirects followed.
    async fn send_once(&self, ep: &Endpoint, req: &Request<'_>) -> Result<reqwest::Response> {
        let scope_key = (ep.registry.clone(), req.scopes.join(" "));
        let mut url = if req.url.starts_with("http") { req.url.clone() } else { format!("{}{}", ep.base, req.url) };
        let mut authed_retry = false;
        let mut redirects = 0;
        loop {
            let same_host = url.starts_with(&ep.base);
            let auth = if same_host { self.cached_auth(&scope_key)? } else { None };
            let resp = self.raw(ep, req, &url, auth.as_deref()).await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && same_host && !authed_retry {
                authed_retry = true;
                let header =
                    resp.headers().get(WWW_AUTHENTICATE).and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
                self.authenticate(ep, req, &scope_key, &header).await?;
                continue;
            }
            if status.is_redirection()
                && let Some(loc) = resp.headers().get(LOCATION).and_then(|l| l.to_str().ok())
                && req.method != Method::PUT
                && req.method != Method::PATCH
                && req.method != Method::POST
            {
                redirects += 1;
                if redirects > 5 {
                    return Err(RegistryError::Protocol {
                        registry: ep.registry.clone(),
                        reason: "too many redirects".into(),
                    });
                }
                url = resolve_location(&url, loc);
                continue;
            }
            if status == StatusCode::UNAUTHORIZED {
                return Err(RegistryError::Unauthorized {
                    registry: ep.registry.clone(),
                    what: req.what.clone(),
                    had_credentials: self.credentials(&ep.registry)?.is_some(),
                });
            }
            return Ok(resp);
        }
    }

    async fn raw(&self, ep: &Endpoint, req: &Request<'_>, url: &str, auth: Option<&str>) -> Result<reqwest::Response> {
        let client = self.client(&ep.registry)?;
        let mut b = client.request(req.method.clone(), url).headers(req.headers.clone());
        if let Some(a) = auth {
            let mut v = HeaderValue::from_str(a).map_err(|_| RegistryError::Protocol {
                registry: ep.registry.clone(),
                reason: "an auth header could not be encoded".into(),
            })?;
            v.set_sensitive(true);
            b = b.header(AUTHORIZATION, v);
        }
        if let Some(body) = req.body {
            b = b.body(body()?);
        }
        self.counts[method_index(&req.method)].fetch_add(1, Ordering::Relaxed);
        b.send().await.map_err(|e| RegistryError::Unreachable {
            registry: ep.registry.clone(),
            what: req.what.clone(),
            reason: describe_reqwest(&e),
        })
    }

    fn cached_auth(&self, key: &(String, String)) -> Result<Option<String>> {
        let auth = self.auth.lock().map_err(|_| poisoned(&key.0))?;
        Ok(match auth.get(key) {
            Some(Auth::Bearer { token, expires }) if *expires > Instant::now() => Some(format!("Bearer {token}")),
            Some(Auth::Basic(b)) => Some(format!("Basic {b}")),
            _ => None,
        })
    }

    /// Answer a challenge: fetch a bearer token (with Basic credentials if any) or use Basic auth.
    async fn authenticate(&self, ep: &Endpoint, req: &Request<'_>, key: &(String, String), header: &str) -> Result<()> {
        let creds = self.credentials(&ep.registry)?;
        let challenges = challenge::parse(header);
        let basic =
            |c: &Credentials| base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.secret));
        let auth = if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = bearer.params.get("realm").ok_or_else(|| RegistryError::Protocol {
                registry: ep.registry.clone(),
                reason: "a bearer challenge without a realm".into(),
            })?;
            let mut url = reqwest::Url::parse(realm).map_err(|_| RegistryError::Protocol {
                registry: ep.registry.clone(),
                reason: format!("the token realm {realm:?} is not a URL"),
            })?;
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = bearer.params.get("service") {
                    q.append_pair("service", s);
                }
                for s in &req.scopes {
                    q.append_pair("scope", s);
                }
            }
            let client = self.client(&ep.registry)?;
            let mut b = client.get(url);
            if let Some(c) = &creds {
                b = b.header(AUTHORIZATION, format!("Basic {}", basic(c)));
            }
            self.counts[0].fetch_add(1, Ordering::Relaxed);
            let resp = b.send().await.map_err(|e| RegistryError::Unreachable {
                registry: ep.registry.clone(),
                what: format!("a token for {}", req.what),
                reason: describe_reqwest(&e),
            })?;
            if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
                return Err(RegistryError::Unauthorized {
                    registry: ep.registry.clone(),
                    what: req.what.clone(),
                    had_credentials: creds.is_some(),
                });
            }
            if !resp.status().is_success() {
                return Err(status_error(ep, &format!("a token for {}", req.what), resp).await);
            }
            let body = resp.bytes().await.map_err(|e| RegistryError::Unreachable {
                registry: ep.registry.clone(),
                what: format!("a token for {}", req.what),
                reason: e.to_string(),
            })?;
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                registry: ep.registry.clone(),
                reason: format!("the token server's answer is not JSON: {e}"),
            })?;
            let token =
                v["token"].as_str().or_else(|| v["access_token"].as_str()).ok_or_else(|| RegistryError::Protocol {
                    registry: ep.registry.clone(),
                    reason: "the token server sent no token".into(),
                })?;
            let lifetime = v["expires_in"].as_u64().unwrap_or(60).max(10);
            // Renew a little early.
            Auth::Bearer { token: token.to_string(), expires: Instant::now() + Duration::from_secs(lifetime - 5) }
        } else if challenges.iter().any(|c| c.scheme == "basic") {
            match &creds {
                Some(c) => Auth::Basic(basic(c)),
                None => {
                    return Err(RegistryError::Unauthorized {
                        registry: ep.registry.clone(),
                        what: req.what.clone(),
                        had_credentials: false,
                    });
                }
            }
        } else {
            return Err(RegistryError::Unauthorized {
                registry: ep.registry.clone(),
                what: req.what.clone(),
                had_credentials: creds.is_some(),
            });
        };
        self.auth.lock().map_err(|_| poisoned(&ep.registry))?.insert(key.clone(), auth);
        Ok(())
    }
}

fn poisoned(registry: &str) -> RegistryError {
    RegistryError::Protocol { registry: registry.into(), reason: "internal lock poisoned".into() }
}

/// A `Location` header against the URL it answered.
pub fn resolve_location(base: &str, loc: &str) -> String {
    match reqwest::Url::parse(base).and_then(|b| b.join(loc)) {
        Ok(u) => u.to_string(),
        Err(_) => loc.to_string(),
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// An error for an unexpected status, with the start of the body (registries explain themselves there).
pub async fn status_error(ep: &Endpoint, what: &str, resp: reqwest::Response) -> RegistryError {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    match status {
        StatusCode::NOT_FOUND => RegistryError::NotFound { registry: ep.registry.clone(), what: what.into() },
        StatusCode::FORBIDDEN => RegistryError::Forbidden { registry: ep.registry.clone(), what: what.into() },
        _ => RegistryError::Status {
            registry: ep.registry.clone(),
            what: what.into(),
            status: status.as_u16(),
            body: body.trim().to_string(),
        },
    }
}

/// What every HTTP client of rbuild starts from (registries and ADD's URLs): timeouts, the user agent, `localhost`
/// as loopback without asking anyone (RFC 6761: an empty root or a container without /etc/hosts still reaches a
/// server on this machine), and Mozilla's roots (built in) joining the system's store (with SSL_CERT_FILE /
/// SSL_CERT_DIR): a static rbuild in a scratch, busybox or distroless container, which has no store, still
/// verifies servers (without them, making the client fails there).
pub fn http_client_builder(read_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(read_timeout)
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        .resolve_to_addrs("localhost", &LOOPBACK)
        .tls_certs_merge(
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().filter_map(|c| reqwest::Certificate::from_der(c).ok()),
        )
}
