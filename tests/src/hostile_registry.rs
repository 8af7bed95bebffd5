//! A registry that misbehaves on purpose, on 127.0.0.1 (plain HTTP, one thread per connection). The repository
//! name picks the misbehaviour for manifests: `truncated` (a body shorter than announced), `endless` (a body that
//! never ends), `huge` (an announced 10 GB), `slow` (headers, then silence), `flaky` (500 twice, then the real
//! image), `baddigest` (the real manifest, blobs that do not match their digests); anything else serves a small
//! valid image.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use crate::raw_tar::{finish, gzip, raw_entry};

#[derive(Debug)]
pub struct HostileRegistry {
    pub port: u16,
    /// Manifest requests answered so far.
    pub manifest_requests: Arc<AtomicUsize>,
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The valid image the registry serves: (manifest bytes, blobs by digest).
fn image() -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let tar = finish(vec![raw_entry(b"hello.txt", b'0', b"from a hostile registry\n", b"", None)]);
    let layer = gzip(&tar);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(&tar)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let blobs = [(digest(&config), config), (digest(&layer), layer)].into_iter().collect();
    (manifest, blobs)
}

fn respond(stream: &mut TcpStream, status: &str, headers: &str, body: &[u8]) {
    let _ = write!(stream, "HTTP/1.1 {status}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n", body.len());
    let _ = stream.write_all(body);
}

fn handle(
    mut stream: TcpStream,
    manifests: &AtomicUsize,
    flaky: &AtomicUsize,
    image: &(Vec<u8>, BTreeMap<String, Vec<u8>>),
) {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => request.push(byte[0]),
            _ => return,
        }
        // A TLS handshake (the client probing for HTTPS): not spoken here.
        if request == [0x16] || request.len() > 65536 {
            return;
        }
    }
    let line = String::from_utf8_lossy(&request).lines().next().unwrap_or("").to_string();
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (manifest, blobs) = image;
    let json = "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n";
    if path == "/v2/" {
        return respond(&mut stream, "200 OK", "", b"{}");
    }
    let parts: Vec<&str> = path.trim_start_matches("/v2/").split('/').collect();
    let (repo, kind, reference) = match parts.as_slice() {
        [repo, kind, reference] => (*repo, *kind, *reference),
        _ => return respond(&mut stream, "404 Not Found", "", b""),
    };
    if kind == "manifests" {
        manifests.fetch_add(1, Ordering::SeqCst);
        match repo {
            "truncated" => {
                let _ = write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n{json}Content-Length: 1000\r\n\r\n");
                let _ = stream.write_all(&manifest[..100.min(manifest.len())]);
            }
            "endless" => {
                let _ =
                    write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n{json}Transfer-Encoding: chunked\r\n\r\n");
                let chunk = vec![b' '; 65536];
                while write!(stream, "{:x}\r\n", chunk.len()).is_ok()
                    && stream.write_all(&chunk).is_ok()
                    && stream.write_all(b"\r\n").is_ok()
                {}
            }
            "huge" => {
                let _ =
                    write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n{json}Content-Length: 10000000000\r\n\r\n");
                let _ = stream.write_all(&manifest[..10]);
            }
            "slow" => {
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nConnection: close\r\n{json}Content-Length: {}\r\n\r\n",
                    manifest.len()
                );
                let _ = stream.write_all(&manifest[..5]);
                std::thread::sleep(std::time::Duration::from_secs(120));
            }
            "flaky" if flaky.fetch_add(1, Ordering::SeqCst) < 2 => {
                respond(&mut stream, "500 Internal Server Error", "", b"try again")
            }
            _ if reference.starts_with("sha256:") && reference != digest(manifest) => {
                respond(&mut stream, "404 Not Found", "", b"")
            }
            _ => respond(&mut stream, "200 OK", json, manifest),
        }
        return;
    }
    match blobs.get(reference) {
        Some(b) if repo == "baddigest" => {
            let mut bad = b.clone();
            bad[b.len() / 2] ^= 0xff;
            respond(&mut stream, "200 OK", "", &bad)
        }
        Some(b) => respond(&mut stream, "200 OK", "", b),
        None => respond(&mut stream, "404 Not Found", "", b""),
    }
}

impl HostileRegistry {
    pub fn start() -> HostileRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let manifest_requests = Arc::new(AtomicUsize::new(0));
        let counter = manifest_requests.clone();
        let served = Arc::new(image());
        let flaky = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (counter, flaky, served) = (counter.clone(), flaky.clone(), served.clone());
                std::thread::spawn(move || handle(stream, &counter, &flaky, &served));
            }
        });
        HostileRegistry { port, manifest_requests }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
