//! The `[[groups]]`, `[[rules]]` and `[user_groups]` sections: where new sessions may go (`rules`).
//! Errors name the key, with the rule's or group's index (`rules[2].address`).
//!
//! ```toml
//! [[groups]]
//! name = "etl"
//! backends = ["impalad-3:21050", "impalad-4:21050"]
//! max_sessions = 200                       # optional cap for the group's backends together
//!
//! [user_groups]
//! analysts = ["alice", "bob"]
//!
//! [[rules]]
//! name = "etl by pool"                     # optional; default rules[N]
//! config = { request_pool = "etl" }        # OpenSession configuration (key* prefix, value "*" any)
//! group = "etl"
//! fallback = "none"                        # "any" (default) or "none"
//! ```
//! Other conditions: `user`, `effective_user` (a name or a list; `*` anyone), `user_group`, `address` (an
//! address or CIDR, or a list), `listener` (`ip:port` of a listener). These key names are a contract.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{bad, BackendConfig, ConfigError};
use crate::rules::{Cidr, Fallback, Group, Policy, Rule};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGroup {
    pub name: String,
    pub backends: Vec<String>,
    pub max_sessions: Option<u64>,
}

/// A name, or a list of names.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    pub name: Option<String>,
    pub group: String,
    pub fallback: Option<String>,
    pub user: Option<OneOrMany>,
    pub effective_user: Option<OneOrMany>,
    pub user_group: Option<String>,
    pub address: Option<OneOrMany>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    pub listener: Option<String>,
}

/// Validates the sections against the configured backends.
pub fn validate_policy(
    groups: Vec<FileGroup>,
    rules: Vec<FileRule>,
    user_groups: BTreeMap<String, Vec<String>>,
    backends: &[BackendConfig],
) -> Result<Policy, ConfigError> {
    let mut out_groups: Vec<Group> = Vec::new();
    for (i, g) in groups.into_iter().enumerate() {
        let key = |k: &str| format!("groups[{i}].{k}");
        if g.name.trim().is_empty() {
            return Err(bad(&key("name"), "must not be empty"));
        }
        if out_groups.iter().any(|o| o.name == g.name) {
            return Err(bad(&key("name"), format!("{:?} is already a group", g.name)));
        }
        if g.backends.is_empty() {
            return Err(bad(&key("backends"), "lists no backend"));
        }
        if let Some(b) = g.backends.iter().find(|b| !backends.iter().any(|c| &c.addr == *b)) {
            return Err(bad(&key("backends"), format!("{b:?} is not one of the configured backends")));
        }
        if g.max_sessions == Some(0) {
            return Err(bad(&key("max_sessions"), "must be at least 1"));
        }
        out_groups.push(Group { name: g.name, backends: g.backends, max_sessions: g.max_sessions });
    }
    let mut out_rules = Vec::new();
    for (i, r) in rules.into_iter().enumerate() {
        out_rules.push(validate_rule(i, r, &out_groups, &user_groups)?);
    }
    Ok(Policy { groups: out_groups, rules: out_rules, user_groups })
}

fn validate_rule(
    i: usize,
    r: FileRule,
    groups: &[Group],
    user_groups: &BTreeMap<String, Vec<String>>,
) -> Result<Rule, ConfigError> {
    let key = |k: &str| format!("rules[{i}].{k}");
    if !groups.iter().any(|g| g.name == r.group) {
        return Err(bad(&key("group"), format!("{:?} is not a group (define it under [[groups]])", r.group)));
    }
    let fallback = match r.fallback.as_deref() {
        None | Some("any") => Fallback::Any,
        Some("none") => Fallback::None,
        Some(other) => return Err(bad(&key("fallback"), format!("{other:?}: use \"any\" or \"none\""))),
    };
    if let Some(g) = &r.user_group {
        if !user_groups.contains_key(g) {
            return Err(bad(&key("user_group"), format!("{g:?} is not in [user_groups]")));
        }
    }
    let address = match r.address {
        None => None,
        Some(a) => {
            let mut blocks = Vec::new();
            for text in a.into_vec() {
                blocks.push(Cidr::parse(&text).ok_or_else(|| {
                    bad(&key("address"), format!("{text:?} is not an address or CIDR block (10.0.0.0/8)"))
                })?);
            }
            Some(blocks)
        }
    };
    let listener = match r.listener {
        None => None,
        Some(t) => Some(t.parse().map_err(|_| bad(&key("listener"), format!("{t:?} is not an ip:port")))?),
    };
    let names = |list: Option<OneOrMany>, k: &str| -> Result<Option<Vec<String>>, ConfigError> {
        match list.map(OneOrMany::into_vec) {
            Some(v) if v.is_empty() || v.iter().any(|n| n.trim().is_empty()) => {
                Err(bad(&key(k), "names nobody (use \"*\" for anyone)"))
            }
            other => Ok(other),
        }
    };
    Ok(Rule {
        name: r.name.unwrap_or_else(|| format!("rules[{i}]")),
        group: r.group,
        fallback,
        user: names(r.user, "user")?,
        effective_user: names(r.effective_user, "effective_user")?,
        user_group: r.user_group,
        address,
        config: r.config,
        listener,
    })
}
