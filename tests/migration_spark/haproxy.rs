//! HAProxy as the baseline for a rolling restart: `mode tcp`, `balance leastconn` (as the Spark interop
//! suite runs it), plus what an operator adds for restarts: a TCP health check per server and the runtime
//! API (`set server ... state drain|ready`) to take a server out before its restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::servers::{free_port, Servers};

pub struct HaProxy {
    pub addr: SocketAddr,
    socket: PathBuf,
    child: Child,
}

impl HaProxy {
    pub fn start(servers: &Servers) -> HaProxy {
        let bin = ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("haproxy is missing: run scripts/setup-haproxy.sh (scripts/test.sh does)"));
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let socket = servers.root.join("haproxy.sock");
        let mut cfg = format!(
            "global\n  maxconn 200\n  stats socket {} level admin\n\ndefaults\n  mode tcp\n  balance leastconn\n  \
             timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n\nlisten hs2\n  bind {addr}\n",
            socket.display()
        );
        for s in &servers.servers {
            cfg += &format!("  server s{} {} check inter 500ms\n", s.index, s.addr);
        }
        let path = servers.root.join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("write haproxy.cfg");
        let check = Command::new(&bin).args(["-c", "-q", "-f"]).arg(&path).output().expect("haproxy -c runs");
        assert!(check.status.success(), "haproxy rejects its config: {}", String::from_utf8_lossy(&check.stderr));
        let child = Command::new(&bin)
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        let pid = child.id();
        // The watchdog kills it by this file should the test process die before the drop.
        std::fs::write(servers.root.join("haproxy.pid"), pid.to_string()).expect("write haproxy.pid");
        let h = HaProxy { addr, socket, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() || !h.socket.exists() {
            assert!(Instant::now() < deadline, "haproxy does not listen on {addr} after 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        h
    }

    /// One runtime API command; returns its answer.
    pub fn command(&self, line: &str) -> String {
        let mut s = UnixStream::connect(&self.socket).expect("haproxy's stats socket");
        s.write_all(format!("{line}\n").as_bytes()).expect("write to the stats socket");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read the stats socket");
        answer
    }

    /// `set server hs2/sN state drain|ready`.
    pub fn set_state(&self, server: usize, state: &str) {
        let answer = self.command(&format!("set server hs2/s{server} state {state}"));
        assert!(answer.trim().is_empty(), "haproxy refused 'state {state}': {answer}");
    }

    /// The server's status in `show stat` (`UP`, `DOWN`, `DRAIN`, ...).
    pub fn status(&self, server: usize) -> String {
        let csv = self.command("show stat");
        let header: Vec<&str> = csv.lines().next().unwrap_or_default().trim_start_matches("# ").split(',').collect();
        let at = header.iter().position(|h| *h == "status").expect("a status column");
        let name = format!("s{server}");
        let row = csv.lines().map(|l| l.split(',').collect::<Vec<_>>()).find(|r| r.len() > at && r[1] == name);
        row.map(|r| r[at].to_string()).unwrap_or_default()
    }

    /// Waits until HAProxy's health check sees the server `UP` again.
    pub async fn wait_up(&self, server: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.status(server) != "UP" {
            assert!(Instant::now() < deadline, "haproxy never saw s{server} UP: {}", self.status(server));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
