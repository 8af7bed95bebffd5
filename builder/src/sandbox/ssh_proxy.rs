//! The socket a `RUN --mount=type=ssh` step sees: a socket of the run's own (its mode, uid and gid as the mount
//! asks: BuildKit's defaults 0600 and root; testSSHSocketParams) whose connections are forwarded to the agent
//! given with `--ssh`. It lives as long as the run: dropping it stops accepting and removes the socket.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// A forwarding socket at `path` for the agent at `agent`.
#[derive(Debug)]
pub struct SshProxy {
    path: PathBuf,
    /// The listening socket, kept to shut it down (which wakes the acceptor; connecting to it may not be
    /// allowed once the mount's owner and mode are set).
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl SshProxy {
    /// Listen at `path` (which must not exist) and forward each connection to `agent`.
    pub fn start(path: &Path, agent: &Path) -> Result<SshProxy> {
        let listener = UnixListener::bind(path).map_err(Error::io("listen on", path))?;
        let accepting = listener.try_clone().map_err(Error::io("listen on", path))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (agent, stopped) = (agent.to_path_buf(), stop.clone());
        let acceptor = std::thread::spawn(move || {
            for conn in accepting.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { break };
                let agent = agent.clone();
                std::thread::spawn(move || {
                    if let Ok(upstream) = UnixStream::connect(&agent) {
                        let _ = forward(client, upstream);
                    }
                });
            }
        });
        Ok(SshProxy { path: path.to_path_buf(), listener, stop, acceptor: Some(acceptor) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Copy both ways until each side has finished writing.
fn forward(client: UnixStream, upstream: UnixStream) -> io::Result<()> {
    let (mut client_read, mut upstream_write) = (client.try_clone()?, upstream.try_clone()?);
    let to_agent = std::thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut upstream_read, mut client_write) = (upstream, client);
    let _ = io::copy(&mut upstream_read, &mut client_write);
    let _ = client_write.shutdown(std::net::Shutdown::Write);
    let _ = to_agent.join();
    Ok(())
}

impl Drop for SshProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Shutting the listening socket down makes the blocked accept return.
        let _ = rustix::net::shutdown(&self.listener, rustix::net::Shutdown::Both);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn forwards_both_ways_and_stops_on_drop() {
        let dir = std::env::temp_dir().join(format!("rbuild-ssh-proxy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // An "agent" that answers each request with its bytes reversed.
        let agent = UnixListener::bind(dir.join("agent")).unwrap();
        std::thread::spawn(move || {
            for mut c in agent.incoming().flatten() {
                let mut buf = Vec::new();
                c.read_to_end(&mut buf).unwrap();
                buf.reverse();
                c.write_all(&buf).unwrap();
            }
        });
        let proxy = SshProxy::start(&dir.join("proxy"), &dir.join("agent")).unwrap();
        let mut c = UnixStream::connect(proxy.path()).unwrap();
        c.write_all(b"abc").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, "cba");
        drop(proxy);
        assert!(!dir.join("proxy").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
