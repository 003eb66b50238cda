//! Delegation: which authenticated user may act for which others ([`ProxyUsers`], like impalad's
//! `--authorized_proxy_user_config` and hs2-proxy's `[kerberos.proxy_users]`), and how a session asks a
//! backend to run as someone else ([`Delegation`]: the OpenSession configuration key). No I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// impalad's delegation key in OpenSession's configuration.
pub const IMPALA_DOAS_KEY: &str = "impala.doas.user";
/// Hive's and Spark's (impalad ignores it, and they ignore Impala's).
pub const HIVE_PROXY_USER_KEY: &str = "hive.server2.proxy.user";

/// Which key the proxy sets upstream to run a session as its end user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delegation {
    /// `impala.doas.user`, authorised by impalad's `--authorized_proxy_user_config=<proxy>=*`.
    #[default]
    Impala,
    /// `hive.server2.proxy.user`, authorised by `hadoop.proxyuser.<proxy>.hosts/groups`.
    Hive,
}

impl Delegation {
    pub fn key(self) -> &'static str {
        match self {
            Delegation::Impala => IMPALA_DOAS_KEY,
            Delegation::Hive => HIVE_PROXY_USER_KEY,
        }
    }
}

/// The delegation a client asked for in OpenSession's configuration, by either key (case-insensitive,
/// as impalad compares it): `(key as sent, user)`.
pub fn requested<'a>(configuration: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<(&'a str, &'a str)> {
    configuration
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(IMPALA_DOAS_KEY) || k.eq_ignore_ascii_case(HIVE_PROXY_USER_KEY))
}

/// Whom one proxy user may act for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    Anyone,
    Users(BTreeSet<String>),
}

/// Proxy short name -> whom it may delegate to. Empty: nobody may delegate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyUsers {
    rules: BTreeMap<String, Allowed>,
}

impl ProxyUsers {
    /// `proxy` may act for `users` (`"*"` among them means anyone). Adding to a proxy extends its list.
    pub fn allow<'a>(&mut self, proxy: &str, users: impl IntoIterator<Item = &'a str>) {
        let mut named = BTreeSet::new();
        let mut anyone = false;
        for u in users.into_iter().map(str::trim).filter(|u| !u.is_empty()) {
            anyone |= u == "*";
            named.insert(u.to_string());
        }
        let entry = self.rules.entry(proxy.to_string()).or_insert_with(|| Allowed::Users(BTreeSet::new()));
        match entry {
            _ if anyone => *entry = Allowed::Anyone,
            Allowed::Anyone => {}
            Allowed::Users(set) => set.extend(named),
        }
    }

    /// impalad's flag syntax: `hue=*;knox=alice,bob`.
    pub fn parse_impala_flag(text: &str) -> Result<ProxyUsers, String> {
        let mut out = ProxyUsers::default();
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (proxy, users) =
                entry.split_once('=').ok_or_else(|| format!("{entry:?} is not PROXY=USER[,USER...] or PROXY=*"))?;
            if proxy.trim().is_empty() {
                return Err(format!("{entry:?} names no proxy user"));
            }
            out.allow(proxy.trim(), users.split(','));
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn allows(&self, proxy: &str, user: &str) -> bool {
        match self.rules.get(proxy) {
            Some(Allowed::Anyone) => true,
            Some(Allowed::Users(users)) => users.contains(user),
            None => false,
        }
    }

    /// impalad's check (`AuthorizeProxyUser`), with its texts: may `proxy` (a short name) act for `user`?
    pub fn authorize(&self, proxy: &str, user: &str) -> Result<(), String> {
        if proxy.is_empty() {
            return Err("Unable to delegate using empty proxy username.".into());
        }
        if user.is_empty() {
            return Err("Unable to delegate using empty doAs username.".into());
        }
        if self.allows(proxy, user) {
            return Ok(());
        }
        let disabled = if self.is_empty() { " User delegation is disabled." } else { "" };
        Err(format!("User '{proxy}' is not authorized to delegate to '{user}'.{disabled}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impala_flag_and_checks() {
        let p = ProxyUsers::parse_impala_flag("hs2proxy=*; hue=alice,bob ;").unwrap();
        assert!(p.allows("hs2proxy", "anyone") && p.allows("hue", "bob") && !p.allows("hue", "carol"));
        assert!(!p.allows("alice", "bob"));
        assert_eq!(p.authorize("hue", "carol").unwrap_err(), "User 'hue' is not authorized to delegate to 'carol'.");
        let none = ProxyUsers::default();
        assert!(none.authorize("hue", "alice").unwrap_err().ends_with("User delegation is disabled."));
        assert!(p.authorize("hue", "").unwrap_err().contains("empty doAs"));
        assert!(ProxyUsers::parse_impala_flag("hue").is_err() && ProxyUsers::parse_impala_flag("=x").is_err());
        let mut q = ProxyUsers::default();
        q.allow("knox", ["alice"]);
        q.allow("knox", ["*"]);
        q.allow("knox", ["bob"]);
        assert!(q.allows("knox", "zed"), "* wins");
    }

    #[test]
    fn delegation_keys() {
        assert_eq!(Delegation::default().key(), "impala.doas.user");
        assert_eq!(Delegation::Hive.key(), "hive.server2.proxy.user");
        let conf = [("idle_session_timeout", "900"), ("Impala.DoAs.User", "alice")];
        assert_eq!(requested(conf), Some(("Impala.DoAs.User", "alice")));
        assert_eq!(requested([("hive.server2.proxy.user", "bob")]), Some(("hive.server2.proxy.user", "bob")));
        assert_eq!(requested([("x", "y")]), None);
    }
}
