//! Where a backend's evacuation stands (`control::evacuate` runs it; the operator view shows it). No I/O.

use std::sync::Mutex;

/// Where an evacuation stands.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Progress {
    /// `running`, `done` (the backend holds no session of the proxy's: restart it), `deadline` (time ran
    /// out; `left` stay), `stopped` (the proxy shut down).
    pub state: String,
    pub started_at: String,
    pub deadline_seconds: f64,
    pub moved: u64,
    /// Sessions waiting for their open operations to close.
    pub waiting: u64,
    /// Sessions that cannot move (and why): they stay.
    pub unmovable: Vec<String>,
    /// Move attempts that failed (the session stays; it is tried again after a pause that doubles from
    /// 1 s to 30 s).
    pub failed: u64,
    /// Sessions still on the backend.
    pub left: u64,
}

/// The evacuation of one backend, shared with the operator view.
#[derive(Debug, Default)]
pub struct Evacuation {
    progress: Mutex<Option<Progress>>,
}

impl Evacuation {
    pub fn progress(&self) -> Option<Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts a new evacuation's progress; `false` while one is running.
    pub fn begin(&self, progress: Progress) -> bool {
        let mut current = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|p| p.state == "running") {
            return false;
        }
        *current = Some(progress);
        true
    }

    pub fn update(&self, f: impl FnOnce(&mut Progress)) {
        if let Some(p) = self.progress.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            f(p);
        }
    }
}
