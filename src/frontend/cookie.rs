//! The proxy's own authentication cookie, and the credentials it stands for. No I/O.
//!
//! After a client authenticated with Basic auth, the proxy answers with a cookie
//! `u=<user>&t=<expiry>&r=<random>&s=<HMAC-SHA256 of the rest>`, like impalad's `impala.auth`. A later
//! request that brings the cookie back needs no password. The password itself never leaves the proxy:
//! the upstream connections of that user need it (LDAP checks it at the impalad), so it is kept in
//! memory ([`CredentialCache`]), keyed by user, only after it was verified.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use dashmap::DashMap;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::backend::pool::Credentials;

/// Users whose verified credentials are kept at once; beyond it, new users are not remembered (their
/// cookies then need the password once more).
pub const MAX_REMEMBERED_USERS: usize = 10_000;

/// Signs and checks cookies.
pub struct CookieSigner {
    key: hmac::Key,
    name: String,
    max_age: Duration,
    rng: SystemRandom,
}

impl std::fmt::Debug for CookieSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CookieSigner({}, {:?}, key: <redacted>)", self.name, self.max_age)
    }
}

/// What a request's cookies said.
#[derive(Debug, PartialEq, Eq)]
pub enum CookieCheck {
    /// No cookie of ours.
    Absent,
    /// A valid cookie of this user.
    Valid(String),
    /// A cookie of ours that is forged, damaged or expired.
    Invalid(&'static str),
}

impl CookieSigner {
    /// `secret`: the key file's bytes; `None` for a random key of this process.
    pub fn new(name: &str, max_age: Duration, secret: Option<&[u8]>) -> CookieSigner {
        let rng = SystemRandom::new();
        let key = match secret {
            Some(s) => hmac::Key::new(hmac::HMAC_SHA256, s),
            None => {
                let mut random = [0u8; 32];
                if rng.fill(&mut random).is_err() {
                    // The OS has no randomness: nothing else in TLS works then either. Time and address
                    // still make a key no client can guess from outside this process.
                    let seed = format!("{:?}{:p}", SystemTime::now(), &random);
                    random.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, seed.as_bytes()).as_ref());
                }
                hmac::Key::new(hmac::HMAC_SHA256, &random)
            }
        };
        CookieSigner { key, name: name.to_string(), max_age, rng }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `Set-Cookie` value for `user`, valid from `now` for the configured time.
    pub fn issue(&self, user: &str, now: SystemTime, secure: bool) -> String {
        let expiry = unix_secs(now).saturating_add(self.max_age.as_secs());
        let mut random = [0u8; 12];
        let _ = self.rng.fill(&mut random);
        let body = format!("u={}&t={expiry}&r={}", percent_encode(user), URL_SAFE_NO_PAD.encode(random));
        let mac = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, body.as_bytes()));
        let secure = if secure { "; Secure" } else { "" };
        format!("{}={body}&s={mac}; Max-Age={}; Path=/; HttpOnly{secure}", self.name, self.max_age.as_secs())
    }

    /// Checks the `Cookie` header values of a request. Several cookies of our name: the first valid wins.
    pub fn check<'a>(&self, headers: impl Iterator<Item = &'a [u8]>, now: SystemTime) -> CookieCheck {
        let mut seen = CookieCheck::Absent;
        for header in headers {
            let Ok(text) = std::str::from_utf8(header) else { continue };
            for pair in text.split(';') {
                let Some((name, value)) = pair.trim().split_once('=') else { continue };
                if name != self.name {
                    continue;
                }
                match self.check_value(value.trim_matches('"'), now) {
                    Ok(user) => return CookieCheck::Valid(user),
                    Err(why) => seen = CookieCheck::Invalid(why),
                }
            }
        }
        seen
    }

    fn check_value(&self, value: &str, now: SystemTime) -> Result<String, &'static str> {
        let (body, mac) = value.rsplit_once("&s=").ok_or("not a cookie of this proxy")?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| "damaged signature")?;
        hmac::verify(&self.key, body.as_bytes(), &mac).map_err(|_| "bad signature")?;
        let mut user = None;
        let mut expiry = None;
        for field in body.split('&') {
            match field.split_once('=') {
                Some(("u", v)) => user = percent_decode(v),
                Some(("t", v)) => expiry = v.parse::<u64>().ok(),
                _ => {}
            }
        }
        let (user, expiry) = user.zip(expiry).ok_or("damaged cookie")?;
        if unix_secs(now) >= expiry {
            return Err("expired");
        }
        Ok(user)
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Cookie-safe: letters, digits and `-._@` stay, everything else becomes `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Verified credentials per user, for the upstream connections of cookie-authenticated calls.
/// A `DashMap`: every HTTP request of every connection reads it; entries are cloned out, no guard is
/// held across an `.await`.
#[derive(Debug, Default)]
pub struct CredentialCache {
    by_user: DashMap<String, Arc<Credentials>>,
}

impl CredentialCache {
    /// Remembers credentials a backend (or the proxy, for unauthenticated backends) accepted.
    pub fn remember(&self, creds: &Credentials) {
        if self.by_user.len() >= MAX_REMEMBERED_USERS && !self.by_user.contains_key(&creds.user) {
            return;
        }
        self.by_user.insert(creds.user.clone(), Arc::new(creds.clone()));
    }

    pub fn get(&self, user: &str) -> Option<Arc<Credentials>> {
        self.by_user.get(user).map(|e| e.value().clone())
    }

    /// Forgets a user's credentials (a backend refused them).
    pub fn forget(&self, user: &str) {
        self.by_user.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap().to_string()
    }

    #[test]
    fn a_cookie_names_its_user_until_it_expires() {
        let s = CookieSigner::new("impala.auth", Duration::from_secs(60), None);
        let now = SystemTime::now();
        let set = s.issue("ali ce;=%", now, true);
        assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("Max-Age=60"), "{set}");
        let cookie = format!("other=1; {}", value_of(&set));
        assert_eq!(s.check([cookie.as_bytes()].into_iter(), now), CookieCheck::Valid("ali ce;=%".into()));
        let later = now + Duration::from_secs(61);
        assert_eq!(s.check([cookie.as_bytes()].into_iter(), later), CookieCheck::Invalid("expired"));
        assert_eq!(s.check([b"other=1".as_slice()].into_iter(), now), CookieCheck::Absent);
    }

    #[test]
    fn forged_and_foreign_cookies_are_refused() {
        let s = CookieSigner::new("impala.auth", Duration::from_secs(60), Some(b"0123456789abcdef"));
        let now = SystemTime::now();
        let good = value_of(&s.issue("alice", now, false));
        let forged = good.replace("u=alice", "u=admin");
        assert_eq!(s.check([forged.as_bytes()].into_iter(), now), CookieCheck::Invalid("bad signature"));
        // Another process with another key (or impalad's own cookie of the same name).
        let other = CookieSigner::new("impala.auth", Duration::from_secs(60), None);
        assert!(matches!(other.check([good.as_bytes()].into_iter(), now), CookieCheck::Invalid(_)));
        let impalad = "impala.auth=abc123&u=alice&t=1&r=x";
        assert!(matches!(s.check([impalad.as_bytes()].into_iter(), now), CookieCheck::Invalid(_)));
        // The same key file: cookies survive a restart.
        let again = CookieSigner::new("impala.auth", Duration::from_secs(60), Some(b"0123456789abcdef"));
        assert_eq!(again.check([good.as_bytes()].into_iter(), now), CookieCheck::Valid("alice".into()));
        // A valid cookie among several of our name wins.
        let both = format!("impala.auth=junk; {good}");
        assert_eq!(s.check([both.as_bytes()].into_iter(), now), CookieCheck::Valid("alice".into()));
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = CredentialCache::default();
        for i in 0..MAX_REMEMBERED_USERS + 5 {
            c.remember(&Credentials { user: format!("u{i}"), password: "p".into() });
        }
        assert_eq!(c.by_user.len(), MAX_REMEMBERED_USERS);
        assert!(c.get("u0").is_some() && c.get(&format!("u{}", MAX_REMEMBERED_USERS + 1)).is_none());
        c.forget("u0");
        assert!(c.get("u0").is_none());
    }

    #[test]
    fn percent_coding_round_trips() {
        for s in ["alice", "a b;c=d%e", "ü@x.y", ""] {
            assert_eq!(percent_decode(&percent_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
