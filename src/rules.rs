//! Where a new session may go: coordinator groups and ordered rules (`[[groups]]`, `[[rules]]`,
//! `[user_groups]`). No I/O.
//!
//! A rule sends a new session to a group when every condition it names matches (user, effective user,
//! user group, client address, OpenSession configuration, listener); the first rule that matches wins.
//! `fallback = "any"` lets the session go to any backend when the group has none taking sessions;
//! `fallback = "none"` refuses it with an error naming the rule. With no rule matching, every backend.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// A named set of backends (`host:port` as configured).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub backends: Vec<String>,
    /// Sessions the group's backends may hold through this instance together, if capped.
    pub max_sessions: Option<u64>,
}

/// What to do when a rule's group has no backend taking sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    Any,
    None,
}

/// An address condition: one address, or a CIDR block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub net: IpAddr,
    pub bits: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `192.168.1.7`, `fd00::/8`.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a.parse::<IpAddr>().ok()?, Some(b.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { net: addr, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.net, ip) {
            // An IPv4 client seen on a dual-stack listener.
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = ((bits / 8) as usize, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// One rule; every condition that is set must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `name`, or `rules[N]`.
    pub name: String,
    pub group: String,
    pub fallback: Fallback,
    /// Names (`*` matches anyone).
    pub user: Option<Vec<String>>,
    pub effective_user: Option<Vec<String>>,
    /// A group of `[user_groups]` the effective user belongs to.
    pub user_group: Option<String>,
    pub address: Option<Vec<Cidr>>,
    /// OpenSession configuration: key (a trailing `*` matches a prefix) -> value (`*` matches any).
    pub config: BTreeMap<String, String>,
    /// The listener the connection arrived on (`ip:port`, as bound).
    pub listener: Option<SocketAddr>,
}

/// Everything a rule can look at.
#[derive(Clone, Debug)]
pub struct Who<'a> {
    /// The authenticated user, else OpenSession's `username`.
    pub user: Option<&'a str>,
    /// The delegated user, else `user`.
    pub effective_user: Option<&'a str>,
    pub address: IpAddr,
    pub listener: Option<SocketAddr>,
    pub config: &'a [(String, String)],
}

/// The routing policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub groups: Vec<Group>,
    pub rules: Vec<Rule>,
    pub user_groups: BTreeMap<String, Vec<String>>,
}

/// Where a new session may go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The rule that matched, if any.
    pub rule: Option<String>,
    /// Its group (`None`: every backend).
    pub group: Option<Group>,
    pub fallback: Fallback,
}

impl Placement {
    /// True when `backend` (`host:port`) may take the session.
    pub fn allows(&self, backend: &str) -> bool {
        self.group.as_ref().is_none_or(|g| g.backends.iter().any(|b| b == backend))
    }

    /// The group's name, or `*` for every backend.
    pub fn group_name(&self) -> &str {
        self.group.as_ref().map_or("*", |g| g.name.as_str())
    }

    /// Why the session goes where it goes, for `explain` and the session view.
    pub fn describe(&self) -> String {
        match (&self.rule, &self.group) {
            (Some(r), Some(g)) => format!("rule {r} -> group {}", g.name),
            _ => "no rule matched: every backend".into(),
        }
    }
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule that matches `who`.
    pub fn place(&self, who: &Who<'_>) -> Placement {
        for rule in &self.rules {
            if self.matches(rule, who) {
                let group = self.groups.iter().find(|g| g.name == rule.group).cloned();
                return Placement { rule: Some(rule.name.clone()), group, fallback: rule.fallback };
            }
        }
        Placement { rule: None, group: None, fallback: Fallback::Any }
    }

    fn matches(&self, rule: &Rule, who: &Who<'_>) -> bool {
        let named = |list: &Option<Vec<String>>, name: Option<&str>| match list {
            None => true,
            Some(list) => name.is_some_and(|n| list.iter().any(|l| l == "*" || l == n)),
        };
        if !named(&rule.user, who.user) || !named(&rule.effective_user, who.effective_user) {
            return false;
        }
        if let Some(g) = &rule.user_group {
            let members = self.user_groups.get(g);
            let effective = who.effective_user.or(who.user);
            if !effective.is_some_and(|u| members.is_some_and(|m| m.iter().any(|x| x == u))) {
                return false;
            }
        }
        if let Some(blocks) = &rule.address {
            if !blocks.iter().any(|b| b.contains(who.address)) {
                return false;
            }
        }
        if rule.listener.is_some() && rule.listener != who.listener {
            return false;
        }
        rule.config
            .iter()
            .all(|(key, want)| who.config.iter().any(|(k, v)| key_matches(key, k) && (want == "*" || want == v)))
    }
}

fn key_matches(pattern: &str, key: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => pattern == key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, group: &str) -> Rule {
        Rule {
            name: name.into(),
            group: group.into(),
            fallback: Fallback::Any,
            user: None,
            effective_user: None,
            user_group: None,
            address: None,
            config: BTreeMap::new(),
            listener: None,
        }
    }

    fn who<'a>(user: &'a str, effective: &'a str, config: &'a [(String, String)]) -> Who<'a> {
        Who {
            user: Some(user),
            effective_user: Some(effective),
            address: "10.1.2.3".parse().unwrap(),
            listener: None,
            config,
        }
    }

    #[test]
    fn the_first_matching_rule_wins_and_every_condition_must_match() {
        let mut etl = rule("etl", "batch");
        etl.config.insert("request_pool".into(), "etl".into());
        let mut analysts = rule("analysts", "interactive");
        analysts.user_group = Some("analysts".into());
        let mut office = rule("office", "interactive");
        office.address = Some(vec![Cidr::parse("192.168.0.0/16").unwrap()]);
        let mut hive = rule("hive-keys", "batch");
        hive.config.insert("set:hiveconf:*".into(), "*".into());
        let policy = Policy {
            groups: vec![
                Group { name: "batch".into(), backends: vec!["b:1".into()], max_sessions: None },
                Group { name: "interactive".into(), backends: vec!["i:1".into()], max_sessions: None },
            ],
            rules: vec![etl, analysts, office, hive],
            user_groups: [("analysts".to_string(), vec!["alice".to_string()])].into(),
        };
        let pool = [("request_pool".to_string(), "etl".to_string())];
        assert_eq!(policy.place(&who("hue", "alice", &pool)).rule.as_deref(), Some("etl"), "first match wins");
        let p = policy.place(&who("hue", "alice", &[]));
        assert_eq!((p.rule.as_deref(), p.allows("i:1"), p.allows("b:1")), (Some("analysts"), true, false));
        assert_eq!(policy.place(&who("bob", "bob", &[])).rule, None, "no rule: every backend");
        assert!(policy.place(&who("bob", "bob", &[])).allows("anything:1"));
        let hiveconf = [("set:hiveconf:mapreduce.job.queuename".to_string(), "x".to_string())];
        assert_eq!(policy.place(&who("bob", "bob", &hiveconf)).rule.as_deref(), Some("hive-keys"));
    }

    #[test]
    fn addresses_and_blocks() {
        let block = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(block.contains("10.255.0.1".parse().unwrap()));
        assert!(!block.contains("11.0.0.1".parse().unwrap()));
        assert!(block.contains("::ffff:10.0.0.1".parse().unwrap()), "IPv4-mapped");
        assert!(Cidr::parse("10.0.0.1").unwrap().contains("10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none() && Cidr::parse("x/8").is_none());
        let odd = Cidr::parse("10.0.0.128/25").unwrap();
        assert!(odd.contains("10.0.0.200".parse().unwrap()) && !odd.contains("10.0.0.100".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
    }
}
