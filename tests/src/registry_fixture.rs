//! A real Distribution registry (Debian's `docker-registry`) on 127.0.0.1 for tests: plain HTTP, HTTPS with a
//! generated CA, htpasswd Basic auth, or token auth with a small token server (below) that signs JWTs with a test
//! key the registry trusts. Its access log counts requests by method; it can be stopped and restarted on the same
//! port and storage (fault tests). Everything lives in a temporary directory; the server is killed on drop.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{TempDir, require_tool};

/// How the registry authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    None,
    Basic { user: String, password: String },
    Token { user: String, password: String },
}

#[derive(Debug)]
pub struct RegistryServer {
    dir: TempDir,
    pub port: u16,
    pub tls: bool,
    child: Option<Child>,
    _token: Option<TokenServer>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl RegistryServer {
    pub fn start(auth: RegistryAuth, tls: bool) -> RegistryServer {
        require_tool("docker-registry");
        let dir = TempDir::new("registry");
        let d = dir.path().to_path_buf();
        let port = free_port();
        let mut auth_yaml = String::new();
        let mut token = None;
        match &auth {
            RegistryAuth::None => {}
            RegistryAuth::Basic { user, password } => {
                require_tool("htpasswd");
                run(Command::new("htpasswd").args(["-Bbc"]).arg(d.join("htpasswd")).args([user, password]));
                auth_yaml =
                    format!("auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n", d.join("htpasswd").display());
            }
            RegistryAuth::Token { user, password } => {
                require_tool("openssl");
                run(Command::new("openssl")
                    .args([
                        "req",
                        "-x509",
                        "-newkey",
                        "rsa:2048",
                        "-nodes",
                        "-days",
                        "2",
                        "-subj",
                        "/CN=rbuild-test-token",
                    ])
                    .arg("-keyout")
                    .arg(d.join("token.key"))
                    .arg("-out")
                    .arg(d.join("token.crt")));
                let t = TokenServer::start(&d, user, password);
                auth_yaml = format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: rbuild-test-registry\n    issuer: rbuild-test-issuer\n    rootcertbundle: {}\n",
                    t.port,
                    d.join("token.crt").display()
                );
                token = Some(t);
            }
        }
        let mut tls_yaml = String::new();
        if tls {
            require_tool("openssl");
            let conf = d.join("san.cnf");
            fs::write(&conf, "[req]\ndistinguished_name=dn\n[dn]\n[ext]\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n").unwrap();
            run(Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rbuild-test-ca"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(d.join("ca.key"))
                .arg("-out")
                .arg(d.join("ca.crt")));
            run(Command::new("openssl")
                .args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"])
                .arg("-keyout")
                .arg(d.join("server.key"))
                .arg("-out")
                .arg(d.join("server.csr")));
            run(Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-CAcreateserial", "-extensions", "ext"])
                .arg("-extfile")
                .arg(&conf)
                .arg("-in")
                .arg(d.join("server.csr"))
                .arg("-CA")
                .arg(d.join("ca.crt"))
                .arg("-CAkey")
                .arg(d.join("ca.key"))
                .arg("-out")
                .arg(d.join("server.crt")));
            tls_yaml = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("server.crt").display(),
                d.join("server.key").display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: rbuild-test-secret\n{tls_yaml}{auth_yaml}",
            d.join("storage").display()
        );
        fs::write(d.join("config.yml"), config).unwrap();
        let mut server = RegistryServer { dir, port, tls, child: None, _token: token };
        server.restart();
        server
    }

    /// (Re)start the registry process on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        let d = self.dir.path();
        let log = fs::OpenOptions::new().create(true).append(true).open(d.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the registry did not start: {}", fs::read_to_string(d.join("registry.log")).unwrap_or_default());
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CA certificate (TLS registries).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Requests in the access log so far with this method and a path containing `path_part`.
    pub fn count(&self, method: &str, path_part: &str) -> usize {
        let log = fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        let needle = format!("\"{method} /v2/");
        log.lines().filter(|l| l.contains(&needle) && l.contains(path_part)).count()
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A token server for the registry's token auth: `GET /token?service=..&scope=..` with Basic credentials
/// (or none: anonymous gets no actions), answering `{"token": JWT}` signed RS256 by the test key (the `x5c`
/// header carries the certificate the registry trusts).
#[derive(Debug)]
pub struct TokenServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, expected, stop2) = (dir.to_path_buf(), b64(format!("{user}:{password}").as_bytes()), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(s) = stream {
                    let _ = serve_token(s, &dir, &expected);
                }
            }
        });
        TokenServer { port, stop }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_token(mut s: TcpStream, dir: &Path, expected_basic: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(s.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let (mut authorized, mut presented) = (false, false);
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("Authorization: Basic ").or_else(|| h.strip_prefix("authorization: Basic ")) {
            presented = true;
            authorized = v.trim() == expected_basic;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut access = Vec::new();
    for pair in query.split('&') {
        if let Some(scope) = pair.strip_prefix("scope=") {
            let scope = percent_decode(scope);
            let parts: Vec<&str> = scope.split(':').collect();
            if parts.len() == 3 && authorized {
                let actions: Vec<&str> = parts[2].split(',').collect();
                access.push(serde_json::json!({"type": parts[0], "name": parts[1], "actions": actions}));
            }
        }
    }
    if presented && !authorized {
        // Wrong credentials: refuse, as real token servers do (no credentials: an anonymous token with no access).
        let body = "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}";
        write!(s, "HTTP/1.1 401 Unauthorized\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
        return Ok(());
    }
    let cert_pem = fs::read_to_string(dir.join("token.crt"))?;
    let der: String = cert_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [der]});
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({
        "iss": "rbuild-test-issuer", "sub": "rbuild", "aud": "rbuild-test-registry",
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", std::process::id()),
        "access": access,
    });
    let signing_input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(dir.join("token.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(signing_input.as_bytes())?;
    let mut sig = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut sig)?;
    child.wait()?;
    let token = format!("{signing_input}.{}", b64url(&sig));
    let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn b64(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64url(data: &[u8]) -> String {
    b64(data).trim_end_matches('=').replace('+', "-").replace('/', "_")
}
