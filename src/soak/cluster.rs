//! The mock impalads behind the proxy, in this process: each keeps its address across kills and
//! restarts (a restarted impalad has lost every session, as a real one has), and the audit that decides
//! which of the calls a mock did not recognise were misrouted.
//!
//! A call naming a handle the mock does not hold is a misroute only if ANOTHER mock holds that handle
//! (else the handle is merely stale: closed, or lost with a killed server). The proxy itself legitimately
//! asks every backend about a handle it does not know (`recover`: GetInfo, GetCatalogs or
//! GetOperationStatus, always with seqid 1); the soak's clients never use seqids below
//! [`CLIENT_SEQIDS`], so such a call is told apart by its shape, and every other call for a handle that
//! another mock holds counts as misrouted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::verdict::MockHoldings;
use super::SoakError;
use crate::mock::{MockAuth, MockConfig, MockImpalad, UnknownHandle};

/// The first seqid of every soak client connection; the proxy's own calls use smaller ones.
pub const CLIENT_SEQIDS: i32 = 1000;

/// Methods and seqid of the proxy's handle lookups (`backend::probe::holds_session`, `holds_operation`).
const LOOKUP_METHODS: &[&str] = &["GetInfo", "GetCatalogs", "GetOperationStatus"];
const LOOKUP_SEQID: i32 = 1;

/// Misrouted calls kept for the report (all are counted).
const KEPT_EXAMPLES: usize = 20;

struct Slot {
    addr: SocketAddr,
    /// Its web port (impalad's 25000), the same across restarts.
    web: SocketAddr,
    name: String,
    mock: Option<MockImpalad>,
}

/// What the audit found so far.
#[derive(Clone, Debug, Default)]
pub struct AuditFigures {
    /// Calls that named a handle their mock did not hold.
    pub unknown: u64,
    /// Of those, the proxy's own lookups at a server that does not hold the handle (by design).
    pub lookups_elsewhere: u64,
    /// Of those, handles no other mock held (stale).
    pub stale: u64,
    pub misrouted: u64,
    /// Recorded calls a mock dropped before the audit took them (the audit could not see them).
    pub unseen: u64,
    pub examples: Vec<String>,
}

pub struct Cluster {
    slots: Mutex<Vec<Slot>>,
    audit: Mutex<AuditFigures>,
}

fn mock_config(name: &str) -> MockConfig {
    // SASL PLAIN with any user, as impalad with LDAP; fast mode so that large fetches cost the mock little.
    MockConfig { name: name.to_string(), auth: MockAuth::Plain { users: None }, fast: true, ..MockConfig::default() }
}

impl Cluster {
    pub async fn start(n: usize) -> Result<Arc<Cluster>, SoakError> {
        let mut slots = Vec::new();
        for i in 0..n {
            let name = format!("mock-{i}");
            let mock = MockImpalad::start("127.0.0.1:0", mock_config(&name))
                .await
                .map_err(|e| SoakError::Setup(format!("starting {name}: {e}")))?;
            let web =
                mock.start_web("127.0.0.1:0").await.map_err(|e| SoakError::Setup(format!("{name}'s web port: {e}")))?;
            slots.push(Slot { addr: mock.local_addr(), web, name, mock: Some(mock) });
        }
        Ok(Arc::new(Cluster { slots: Mutex::new(slots), audit: Mutex::new(AuditFigures::default()) }))
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.slots().iter().map(|s| s.addr).collect()
    }

    /// Each mock's `metrics_url` (its web port's `/jsonmetrics`), by its HS2 address.
    pub fn metrics_urls(&self) -> std::collections::HashMap<SocketAddr, String> {
        self.slots().iter().map(|s| (s.addr, format!("http://{}/jsonmetrics", s.web))).collect()
    }

    /// The mocks running now, with their slot index.
    fn live(&self) -> Vec<(usize, MockImpalad)> {
        self.slots().iter().enumerate().filter_map(|(i, s)| s.mock.clone().map(|m| (i, m))).collect()
    }

    pub fn mock(&self, i: usize) -> Option<MockImpalad> {
        self.slots().get(i).and_then(|s| s.mock.clone())
    }

    /// Kills mock `i` like a dead impalad (its calls audited first, so that none is lost).
    pub async fn kill(&self, i: usize) {
        let mock = self.slots().get_mut(i).and_then(|s| s.mock.take());
        if let Some(m) = mock {
            m.stop().await;
            self.audit_one(i, &m, &self.live());
        }
    }

    /// Starts mock `i` again on its address, with no sessions.
    pub async fn restart(&self, i: usize) -> Result<(), SoakError> {
        let (addr, web, name) = {
            let slots = self.slots();
            let s = slots.get(i).ok_or_else(|| SoakError::Setup(format!("no mock {i}")))?;
            (s.addr, s.web, s.name.clone())
        };
        let mut last = String::new();
        // The ports were just released; a connection in TIME_WAIT does not hold one, but be patient anyway.
        for _ in 0..50 {
            let started = match MockImpalad::start(&addr.to_string(), mock_config(&name)).await {
                Ok(m) => match m.start_web(&web.to_string()).await {
                    Ok(_) => Ok(m),
                    Err(e) => {
                        m.stop().await;
                        Err(e)
                    }
                },
                Err(e) => Err(e),
            };
            match started {
                Ok(m) => {
                    if let Some(s) = self.slots().get_mut(i) {
                        s.mock = Some(m);
                    }
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(SoakError::Setup(format!("restarting {name} on {addr}: {last}")))
    }

    /// Takes every mock's recorded calls and judges them.
    pub fn audit_now(&self) {
        let live = self.live();
        for (i, m) in &live {
            self.audit_one(*i, m, &live);
        }
    }

    fn audit_one(&self, i: usize, mock: &MockImpalad, live: &[(usize, MockImpalad)]) {
        let calls = mock.take_unknown_handles();
        let unseen = mock.unknown_handle_counts().1;
        let mut judged: Vec<(UnknownHandle, Option<String>)> = Vec::new();
        for u in calls {
            let holder = live.iter().find(|(j, m)| *j != i && m.holds(&u.guid)).map(|(_, m)| m.name().to_string());
            judged.push((u, holder));
        }
        let mut a = self.audit.lock().unwrap_or_else(|e| e.into_inner());
        a.unseen = a.unseen.max(unseen);
        for (u, holder) in judged {
            a.unknown += 1;
            let lookup = u.seqid == LOOKUP_SEQID && LOOKUP_METHODS.contains(&u.method.as_str());
            match holder {
                None => a.stale += 1,
                Some(_) if lookup => a.lookups_elsewhere += 1,
                Some(owner) => {
                    a.misrouted += 1;
                    if a.examples.len() < KEPT_EXAMPLES {
                        a.examples.push(format!(
                            "{} #{} for {:?} {} reached mock-{i}; {owner} holds it",
                            u.method,
                            u.seqid,
                            u.kind,
                            u.guid.impala_id()
                        ));
                    }
                }
            }
        }
    }

    pub fn audit_figures(&self) -> AuditFigures {
        self.audit.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What every running mock holds, by address.
    pub fn holdings(&self) -> HashMap<String, MockHoldings> {
        self.live()
            .into_iter()
            .map(|(_, m)| {
                let sessions: HashMap<_, _> = m.sessions_opened().into_iter().collect();
                let operations = sessions.keys().map(|g| (*g, m.operations_of(g))).collect();
                (m.local_addr().to_string(), MockHoldings { sessions, operations })
            })
            .collect()
    }

    /// Sessions and client connections of every running mock, summed (for the samples).
    pub fn totals(&self) -> (usize, usize, usize) {
        self.live()
            .iter()
            .fold((0, 0, 0), |(s, o, c), (_, m)| (s + m.sessions().len(), o + m.open_operations(), c + m.connections()))
    }

    pub async fn stop(&self) {
        for (i, _) in self.live() {
            self.kill(i).await;
        }
    }
}
