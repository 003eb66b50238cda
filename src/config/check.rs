//! Range checks for configuration values: every duration and size is parsed and bounded at load, so that
//! nothing later can panic on a zero interval, spin on a zero timeout or overflow an `Instant`. No I/O.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::{bad, ConfigError};

/// A duration key's default and the values it allows.
pub struct DurationKey {
    pub key: &'static str,
    pub default: &'static str,
    pub min: Duration,
    pub max: Duration,
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

impl DurationKey {
    pub const fn new(key: &'static str, default: &'static str, min: Duration, max: Duration) -> DurationKey {
        DurationKey { key, default, min, max }
    }

    /// The value given (or the default), parsed and checked against the range.
    pub fn read(&self, value: Option<String>) -> Result<Duration, ConfigError> {
        let text = value.unwrap_or_else(|| self.default.to_string());
        let d = parse_duration(&text)
            .ok_or_else(|| bad(self.key, format!("{text:?} is not a duration (use e.g. 500ms, 30s, 15m, 1h, 2d)")))?;
        if d < self.min || d > self.max {
            let (lo, hi) = (format_duration(self.min), format_duration(self.max));
            return Err(bad(self.key, format!("{text:?} is out of range: allowed {lo} to {hi}")));
        }
        Ok(d)
    }
}

/// Every duration key, with its default and range. The ranges keep clear of what would crash (zero
/// intervals) or overflow (`Instant + d`), and of values no operator means (a 10-year timeout).
pub mod durations {
    use super::*;
    pub const POOL_WAIT: DurationKey = DurationKey::new("pool.wait_timeout", "10s", Duration::ZERO, HOUR);
    pub const POOL_IDLE: DurationKey =
        DurationKey::new("pool.idle_timeout", "5m", SECOND, Duration::from_secs(7 * 86_400));
    pub const POOL_CONNECT: DurationKey =
        DurationKey::new("pool.connect_timeout", "5s", Duration::from_millis(10), Duration::from_secs(300));
    pub const DISCONNECTED_GRACE: DurationKey =
        DurationKey::new("sessions.disconnected_grace", "15m", SECOND, Duration::from_secs(30 * 86_400));
    pub const REAP_INTERVAL: DurationKey =
        DurationKey::new("sessions.reap_interval", "30s", Duration::from_millis(10), DAY);
    pub const HANDSHAKE: DurationKey = DurationKey::new("timeouts.handshake", "30s", Duration::from_millis(100), HOUR);
    pub const CLIENT_IDLE: DurationKey =
        DurationKey::new("timeouts.client_idle", "1h", SECOND, Duration::from_secs(30 * 86_400));
    pub const CLIENT_WRITE: DurationKey =
        DurationKey::new("timeouts.client_write", "60s", Duration::from_millis(100), DAY);
    pub const REQUEST_READ: DurationKey =
        DurationKey::new("timeouts.request_read", "60s", Duration::from_millis(100), DAY);
    pub const REQUEST_TOTAL: DurationKey =
        DurationKey::new("timeouts.request_total", "5m", Duration::from_millis(100), DAY);
    pub const BACKEND_REPLY: DurationKey =
        DurationKey::new("timeouts.backend_reply", "1h", Duration::from_millis(100), Duration::from_secs(30 * 86_400));
    pub const RECOVERY: DurationKey =
        DurationKey::new("timeouts.recovery", "5s", Duration::from_millis(100), Duration::from_secs(600));
    pub const SHUTDOWN_GRACE: DurationKey = DurationKey::new("timeouts.shutdown_grace", "30s", Duration::ZERO, HOUR);
    pub const HEALTH_INTERVAL: DurationKey = DurationKey::new("health.interval", "2s", Duration::from_millis(10), HOUR);
    pub const HEALTH_TIMEOUT: DurationKey =
        DurationKey::new("health.timeout", "2s", Duration::from_millis(10), Duration::from_secs(300));
    pub const SLOW_START: DurationKey = DurationKey::new("health.slow_start", "0s", Duration::ZERO, HOUR);
    pub const COOKIE_MAX_AGE: DurationKey =
        DurationKey::new("http.cookie_max_age", "1d", MINUTE, Duration::from_secs(365 * 86_400));
    pub const ZOOKEEPER_SESSION: DurationKey =
        DurationKey::new("discovery.session_timeout", "15s", SECOND, Duration::from_secs(600));
    pub const ADMIN_HEADER_READ: DurationKey =
        DurationKey::new("admin.header_read_timeout", "10s", Duration::from_millis(100), Duration::from_secs(600));
    pub const ADMIN_HISTORY_INTERVAL: DurationKey =
        DurationKey::new("admin.history_interval", "5s", Duration::from_millis(100), MINUTE);
}

/// A count or size key's default and the values it allows.
pub struct CountKey {
    pub key: &'static str,
    pub default: u64,
    pub range: RangeInclusive<u64>,
}

impl CountKey {
    pub const fn new(key: &'static str, default: u64, range: RangeInclusive<u64>) -> CountKey {
        CountKey { key, default, range }
    }

    pub fn read(&self, value: Option<u64>) -> Result<u64, ConfigError> {
        let v = value.unwrap_or(self.default);
        if !self.range.contains(&v) {
            let (lo, hi) = (self.range.start(), self.range.end());
            return Err(bad(self.key, format!("{v} is out of range: allowed {lo} to {hi}")));
        }
        Ok(v)
    }
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Every count and size key, with its default and range.
pub mod counts {
    use super::*;
    pub const MAX_REQUEST_BYTES: CountKey = CountKey::new("limits.max_request_bytes", 64 * MIB, KIB..=2 * GIB);
    pub const MAX_REPLY_BYTES: CountKey = CountKey::new("limits.max_reply_bytes", 4 * GIB, KIB..=1 << 40);
    /// A frame length is a signed 32-bit number on the wire (TFramedTransport).
    pub const MAX_FRAME_BYTES: CountKey = CountKey::new("limits.max_frame_bytes", 128 * MIB, KIB..=(i32::MAX as u64));
    pub const MAX_DEPTH: CountKey = CountKey::new("limits.max_depth", 64, 1..=1024);
    pub const MAX_CONTAINER_LEN: CountKey = CountKey::new("limits.max_container_len", 1 << 27, 1..=(u32::MAX as u64));
    pub const MAX_CLIENT_CONNECTIONS: CountKey = CountKey::new("limits.max_client_connections", 10_000, 1..=1_000_000);
    pub const MAX_BUFFERED_REQUEST_BYTES: CountKey =
        CountKey::new("limits.max_buffered_request_bytes", GIB, MIB..=1 << 40);
    pub const POOL_MAX_PER_BACKEND: CountKey = CountKey::new("pool.max_per_backend", 32, 1..=10_000);
    pub const PER_USER_SESSIONS: CountKey = CountKey::new("limits.max_sessions_per_user", 0, 1..=1_000_000);
    pub const PER_USER_CONNECTIONS: CountKey = CountKey::new("limits.max_connections_per_user", 0, 1..=1_000_000);
    pub const PER_ADDRESS_CONNECTIONS: CountKey = CountKey::new("limits.max_connections_per_address", 0, 1..=1_000_000);
    pub const EJECT_AFTER: CountKey = CountKey::new("health.eject_after", 5, 1..=1000);
    pub const HEALTH_RISE: CountKey = CountKey::new("health.rise", 2, 1..=100);
    pub const HEALTH_FALL: CountKey = CountKey::new("health.fall", 3, 1..=100);
    pub const ADMIN_MAX_CONNECTIONS: CountKey = CountKey::new("admin.max_connections", 128, 1..=100_000);
}

/// Parses `500ms`, `30s`, `15m`, `1h`, `2d`; a bare number is seconds. `None` on overflow.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = |mult: u64| n.checked_mul(mult).map(Duration::from_secs);
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        _ => None,
    }
}

/// The shortest exact form: `0s`, `250ms`, `30s`, `15m`, `1h`, `7d`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (unit, per) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms % per == 0 {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("1y"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("99999999999999999999d"), None);
        assert_eq!(parse_duration(&format!("{}d", u64::MAX)), None, "overflow is refused, not wrapped");
        for (d, text) in [(0, "0s"), (250, "250ms"), (30_000, "30s"), (900_000, "15m"), (7 * 86_400_000, "7d")] {
            assert_eq!(format_duration(Duration::from_millis(d)), text);
        }
    }

    #[test]
    fn ranges_name_the_key_and_the_bounds() {
        let e = durations::REAP_INTERVAL.read(Some("0s".into())).unwrap_err().to_string();
        assert_eq!(e, "sessions.reap_interval: \"0s\" is out of range: allowed 10ms to 1d");
        let e = counts::MAX_DEPTH.read(Some(0)).unwrap_err().to_string();
        assert_eq!(e, "limits.max_depth: 0 is out of range: allowed 1 to 1024");
        assert_eq!(durations::POOL_WAIT.read(None).unwrap(), Duration::from_secs(10));
    }
}
