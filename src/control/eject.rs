//! Passive ejection: `health.eject_after` broken exchanges in a row on live traffic (a reset or closed
//! connection mid-call, a write that fails, no reply byte within `timeouts.backend_reply`) take a backend
//! down before the next probe. HS2 error statuses are replies, not broken exchanges; any whole reply ends
//! the streak (`Backend::exchange_ok`). A refused or timed-out connect needs no streak: it takes the
//! backend down at once (`Evidence::Unreachable`).
//!
//! Why not count broken exchanges towards `health.fall`, as probes do: a backend that answers probes but
//! breaks real calls (a crashing worker, a proxy in between resetting long calls) would have each
//! failure wiped by the good probe it triggers, and never go down; and failures from many concurrent
//! calls would race the probes. The streak lives on the backend, only live traffic moves it, and its end
//! goes through the health state machine like any other evidence (logged with its reason, shown in
//! `/api/backends`, counted in `hs2_proxy_backend_ejections_total`).

use crate::backend::health::{Evidence, Observed};
use crate::backend::Backend;
use crate::proxy::Proxy;

/// Records a broken exchange with `backend` (`error` says how it broke); ejects it at the streak's end.
pub fn broken_exchange(proxy: &Proxy, backend: &Backend, error: &str) {
    let Some(n) = backend.exchange_broken(proxy.config().health.eject_after) else { return };
    if backend.health().observed == Observed::Down {
        return;
    }
    backend.count_ejection();
    proxy.metrics().ejection(&backend.addr);
    let after = proxy.config().health.eject_after;
    let reason = format!("{n} broken exchanges in a row on live traffic (health.eject_after = {after}), last: {error}");
    proxy.apply_evidence(backend, Evidence::Ejected(reason));
}
