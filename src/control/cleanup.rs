//! The clean-up rule: what becomes of a session that none of this instance's clients used for
//! `sessions.disconnected_grace`. No I/O.
//!
//! **A session is closed upstream only on the backend's word that nobody used it for the grace.** The
//! instance sees its own clients only; a session opened through it may be in use through another
//! instance (Hue spreads its pool over every instance), and closing it then breaks those clients. The one
//! party that sees every use is the server: impalad's web port lists each session's last access
//! (`/sessions?json`, read through the backend's `metrics_url`). Without that word:
//! - impalad keeps a session without any connection, so the instance forgets it here (unpinning its
//!   opening connection) and leaves it to impalad's own timeouts (`idle_session_timeout`, set by Hue;
//!   `--idle_session_timeout`; `--disconnected_session_timeout` once every connection that used it has
//!   closed). A client that comes back through this instance is found again by one lookup.
//! - Hive and Spark end a session when the connection that opened it closes (if it was the last opened
//!   on it), and that pinned connection is this instance's: forgetting would close the session with the
//!   connection, so the instance keeps both. Spark's own `hive.server2.idle.session.timeout` ends it.

use std::time::Duration;

use crate::backend::impalad_metrics::SessionActivity;
use crate::config::BackendKind;

/// What the backend said of the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerWord {
    /// Not on the backend's list: closed already (through another instance, or by the server).
    Absent,
    /// Expired by the server: every call on it fails.
    Expired,
    /// A call is using it right now.
    InUse,
    /// Its last use, through any connection, was this long ago.
    IdleFor(Duration),
    /// The backend cannot say (no web port, or the page could not be read).
    NoWord,
}

/// What clean-up does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nobody used it for the grace (or it expired): close it upstream, forget it here.
    Close,
    /// Someone used it within the grace through a connection this instance does not see: keep it, and
    /// look again once it could have been idle for the grace (`recheck_in`).
    InUseElsewhere { recheck_in: Duration },
    /// The backend no longer has it: forget it here.
    Gone,
    /// No word from an impalad: forget it here, never close it; impalad's own timeouts end it.
    LeaveToServer,
    /// No word, and forgetting would close it (Hive, Spark, or a kind not known yet): keep it; look again
    /// after another grace.
    Keep,
    /// Not decided by [`verdict`]: a session to close waits for an idle connection of its user.
    Waiting,
}

impl Verdict {
    /// The metric label (`hs2_proxy_session_cleanups_total{result}`) of what was done.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Close => "closed",
            Verdict::InUseElsewhere { .. } => "in_use_elsewhere",
            Verdict::Gone => "gone",
            Verdict::LeaveToServer => "left_to_server",
            Verdict::Keep => "kept",
            Verdict::Waiting => "waiting_for_connection",
        }
    }
}

/// Reads the backend's entry for the session; `now_ms` is this host's clock (ms since the epoch). A last
/// access in this host's future (clocks apart) reads as a use just now.
pub fn word(entry: Option<&SessionActivity>, now_ms: u64) -> ServerWord {
    match entry {
        None => ServerWord::Absent,
        Some(a) if a.closed => ServerWord::Absent,
        Some(a) if a.expired => ServerWord::Expired,
        Some(a) if a.in_use => ServerWord::InUse,
        Some(a) => ServerWord::IdleFor(Duration::from_millis(now_ms.saturating_sub(a.last_accessed_ms))),
    }
}

/// The rule (see the module doc).
pub fn verdict(kind: Option<BackendKind>, word: ServerWord, grace: Duration) -> Verdict {
    match word {
        ServerWord::Absent => Verdict::Gone,
        ServerWord::Expired => Verdict::Close,
        ServerWord::IdleFor(idle) if idle >= grace => Verdict::Close,
        ServerWord::IdleFor(idle) => Verdict::InUseElsewhere { recheck_in: grace - idle },
        ServerWord::InUse => Verdict::InUseElsewhere { recheck_in: grace },
        ServerWord::NoWord if kind == Some(BackendKind::Impala) => Verdict::LeaveToServer,
        ServerWord::NoWord => Verdict::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(900);

    fn seen(last_accessed_ms: u64) -> SessionActivity {
        SessionActivity { last_accessed_ms, in_use: false, expired: false, closed: false }
    }

    #[test]
    fn the_backends_clock_of_the_last_use_decides() {
        let now = 10_000_000;
        assert_eq!(word(Some(&seen(now - 1_000)), now), ServerWord::IdleFor(Duration::from_secs(1)));
        assert_eq!(word(Some(&seen(now + 5_000)), now), ServerWord::IdleFor(Duration::ZERO), "clock ahead");
        assert_eq!(word(None, now), ServerWord::Absent);
        assert_eq!(word(Some(&SessionActivity { closed: true, ..seen(0) }), now), ServerWord::Absent);
        assert_eq!(word(Some(&SessionActivity { expired: true, ..seen(0) }), now), ServerWord::Expired);
        assert_eq!(word(Some(&SessionActivity { in_use: true, ..seen(0) }), now), ServerWord::InUse);
    }

    #[test]
    fn only_the_backends_word_closes_a_session() {
        let impala = Some(BackendKind::Impala);
        for kind in [impala, Some(BackendKind::Hive), None] {
            assert_eq!(verdict(kind, ServerWord::IdleFor(GRACE), GRACE), Verdict::Close);
            assert_eq!(verdict(kind, ServerWord::Expired, GRACE), Verdict::Close);
            assert_eq!(verdict(kind, ServerWord::Absent, GRACE), Verdict::Gone);
            let used = verdict(kind, ServerWord::IdleFor(Duration::from_secs(60)), GRACE);
            assert_eq!(used, Verdict::InUseElsewhere { recheck_in: Duration::from_secs(840) });
            assert_eq!(verdict(kind, ServerWord::InUse, GRACE), Verdict::InUseElsewhere { recheck_in: GRACE });
        }
        assert_eq!(verdict(impala, ServerWord::NoWord, GRACE), Verdict::LeaveToServer);
        assert_eq!(verdict(Some(BackendKind::Hive), ServerWord::NoWord, GRACE), Verdict::Keep, "unpinning closes it");
        assert_eq!(verdict(None, ServerWord::NoWord, GRACE), Verdict::Keep, "kind not known yet");
    }
}
