//! Kerberos principal -> short user name, by an ordered list of `auth_to_local`-style rules. No I/O.
//!
//! A rule is either
//! - `DEFAULT`: the part before the first `/` or `@` (`impala/host@REALM` -> `impala`), whatever the realm,
//!   as impalad computes short names. (Hadoop's DEFAULT also requires the default realm: write a RULE for
//!   that.)
//! - a Hadoop rule, as in `hadoop.security.auth_to_local`: `RULE:[N:FORMAT](REGEX)s/PATTERN/REPLACEMENT/g`
//!   with optional `(REGEX)` (which may hold balanced groups), optional `s/.../.../[g]` and an optional trailing `/L` (lower-case). It
//!   applies to principals with exactly N components; FORMAT builds a string from `$0` (the realm) and
//!   `$1..$N` (the components); REGEX must match that whole string; the substitution (first match, or all
//!   with `g`; `$1` in REPLACEMENT is a group) gives the short name.
//!
//! Rules are tried in order; the first that applies wins. Its result must be a simple name (no `/` or
//! `@`), as in Hadoop. No rule applying is an error: such a principal is refused. An empty list means
//! `["DEFAULT"]`.
//!
//! Example: keep only users of EXAMPLE.TEST and services as their service name:
//! `["RULE:[1:$1@$0](.*@EXAMPLE\\.TEST)s/@.*//", "RULE:[2:$1@$0](.*@EXAMPLE\\.TEST)s/@.*//"]`.

use regex::Regex;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    #[error("bad auth_to_local rule {rule:?}: {reason}")]
    BadRule { rule: String, reason: String },
    #[error("no auth_to_local rule maps the principal {0:?} to a user name")]
    NoRule(String),
    #[error("auth_to_local rule {rule:?} maps {principal:?} to {name:?}, which is not a simple user name")]
    NotSimple { rule: String, principal: String, name: String },
}

/// The compiled rule list.
#[derive(Clone, Debug)]
pub struct ShortNames {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
enum Rule {
    Default,
    Hadoop(HadoopRule),
}

#[derive(Clone, Debug)]
struct HadoopRule {
    text: String,
    components: usize,
    format: String,
    /// Anchored: the formatted string must match as a whole (Java's `matches()`).
    filter: Option<Regex>,
    substitution: Option<(Regex, String, bool)>,
    lowercase: bool,
}

impl Default for ShortNames {
    fn default() -> ShortNames {
        ShortNames { rules: vec![Rule::Default] }
    }
}

impl ShortNames {
    /// Compiles `rules`; an empty list is `["DEFAULT"]`.
    pub fn parse(rules: &[String]) -> Result<ShortNames, PrincipalError> {
        if rules.is_empty() {
            return Ok(ShortNames::default());
        }
        let rules = rules.iter().map(|r| parse_rule(r.trim())).collect::<Result<_, _>>()?;
        Ok(ShortNames { rules })
    }

    /// The short name of `principal` (`alice@EXAMPLE.TEST` -> `alice`).
    pub fn short_name(&self, principal: &str) -> Result<String, PrincipalError> {
        let parsed = Parsed::new(principal);
        for rule in &self.rules {
            let (name, text) = match rule {
                Rule::Default => (default_short_name(principal), "DEFAULT"),
                Rule::Hadoop(h) => (h.apply(&parsed), h.text.as_str()),
            };
            let Some(name) = name else { continue };
            if name.is_empty() || name.contains(['/', '@']) {
                return Err(PrincipalError::NotSimple { rule: text.into(), principal: principal.into(), name });
            }
            return Ok(name);
        }
        Err(PrincipalError::NoRule(principal.to_string()))
    }
}

/// The part before the first `/` or `@`; `None` when that part is empty.
fn default_short_name(principal: &str) -> Option<String> {
    let end = principal.find(['/', '@']).unwrap_or(principal.len());
    (end > 0).then(|| principal[..end].to_string())
}

/// `a/b@R` as components `[a, b]` and realm `R` (empty when none is written).
struct Parsed<'a> {
    components: Vec<&'a str>,
    realm: &'a str,
}

impl<'a> Parsed<'a> {
    fn new(principal: &'a str) -> Parsed<'a> {
        let (name, realm) = principal.rsplit_once('@').unwrap_or((principal, ""));
        Parsed { components: name.split('/').collect(), realm }
    }
}

impl HadoopRule {
    fn apply(&self, p: &Parsed) -> Option<String> {
        if p.components.len() != self.components {
            return None;
        }
        let base = self.format_with(p)?;
        if let Some(filter) = &self.filter {
            if !filter.is_match(&base) {
                return None;
            }
        }
        let mut name = match &self.substitution {
            None => base,
            Some((pattern, replacement, true)) => pattern.replace_all(&base, replacement.as_str()).into_owned(),
            Some((pattern, replacement, false)) => pattern.replace(&base, replacement.as_str()).into_owned(),
        };
        if self.lowercase {
            name = name.to_lowercase();
        }
        Some(name)
    }

    /// FORMAT with `$0` the realm and `$n` the n-th component; `None` for an index beyond them.
    fn format_with(&self, p: &Parsed) -> Option<String> {
        let mut out = String::new();
        let mut chars = self.format.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, chars.peek().and_then(|d| d.to_digit(10))) {
                ('$', Some(_)) => {
                    let mut n = 0usize;
                    while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                        n = n.checked_mul(10)?.checked_add(d as usize)?;
                        chars.next();
                    }
                    out += if n == 0 { p.realm } else { p.components.get(n - 1)? };
                }
                _ => out.push(c),
            }
        }
        Some(out)
    }
}

/// Where the `)` closing a rule's regex is in `text` (which follows its `(`). Hadoop's parser stops at
/// the first `)`; balancing groups (and skipping `\)`) reads every Hadoop rule the same and allows groups.
fn closing_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '(') => depth += 1,
            (false, ')') if depth == 0 => return Some(i),
            (false, ')') => depth -= 1,
            _ => {}
        }
    }
    None
}

fn parse_rule(text: &str) -> Result<Rule, PrincipalError> {
    if text == "DEFAULT" {
        return Ok(Rule::Default);
    }
    let bad = |reason: &str| PrincipalError::BadRule { rule: text.to_string(), reason: reason.to_string() };
    let rest = text.strip_prefix("RULE:[").ok_or_else(|| bad("expected DEFAULT or RULE:[N:FORMAT]..."))?;
    let (head, mut rest) = rest.split_once(']').ok_or_else(|| bad("missing ]"))?;
    let (n, format) = head.split_once(':').ok_or_else(|| bad("expected [N:FORMAT]"))?;
    let components: usize = n.parse().map_err(|_| bad("N in [N:FORMAT] must be a number"))?;
    if components == 0 {
        return Err(bad("N in [N:FORMAT] must be at least 1"));
    }
    let compile = |re: &str| Regex::new(re).map_err(|e| bad(&format!("bad regex {re:?}: {e}")));
    let mut filter = None;
    if let Some(r) = rest.strip_prefix('(') {
        let end = closing_paren(r).ok_or_else(|| bad("missing ) after the regex"))?;
        let (re, after) = (&r[..end], &r[end + 1..]);
        filter = Some(compile(&format!("^(?:{re})$"))?);
        rest = after;
    }
    let mut substitution = None;
    if let Some(s) = rest.strip_prefix("s/") {
        let (pattern, s) = s.split_once('/').ok_or_else(|| bad("expected s/PATTERN/REPLACEMENT/"))?;
        let (replacement, s) = s.split_once('/').ok_or_else(|| bad("expected s/PATTERN/REPLACEMENT/"))?;
        let global = s.starts_with('g');
        rest = if global { &s[1..] } else { s };
        substitution = Some((compile(pattern)?, replacement.to_string(), global));
    }
    let lowercase = match rest {
        "" => false,
        "/L" | "L" => true,
        _ => return Err(bad(&format!("unexpected {rest:?} at the end"))),
    };
    let rule =
        HadoopRule { text: text.to_string(), components, format: format.to_string(), filter, substitution, lowercase };
    Ok(Rule::Hadoop(rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> ShortNames {
        ShortNames::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn default_is_the_part_before_the_first_slash_or_at() {
        let d = ShortNames::default();
        assert_eq!(d.short_name("alice@EXAMPLE.TEST").unwrap(), "alice");
        assert_eq!(d.short_name("impala/localhost@EXAMPLE.TEST").unwrap(), "impala");
        assert_eq!(d.short_name("hs2proxy").unwrap(), "hs2proxy");
        assert_eq!(d.short_name("bob@OTHER.REALM").unwrap(), "bob", "any realm, as impalad");
        assert!(matches!(d.short_name("@EXAMPLE.TEST"), Err(PrincipalError::NoRule(_))));
        assert!(ShortNames::parse(&[]).unwrap().short_name("x/y").is_ok());
    }

    #[test]
    fn hadoop_rules_filter_format_and_substitute() {
        let r =
            rules(&[r"RULE:[1:$1@$0](.*@EXAMPLE\.TEST)s/@.*//", r"RULE:[2:$1@$0](impala@EXAMPLE\.TEST)s/.*/impalad/"]);
        assert_eq!(r.short_name("alice@EXAMPLE.TEST").unwrap(), "alice");
        assert_eq!(r.short_name("impala/host1@EXAMPLE.TEST").unwrap(), "impalad");
        assert_eq!(r.short_name("alice@OTHER.TEST"), Err(PrincipalError::NoRule("alice@OTHER.TEST".into())));
        assert!(r.short_name("hive/host1@EXAMPLE.TEST").is_err(), "the filter must match the whole string");
        // Components and the realm in another order, a global substitution, lower-casing, DEFAULT last.
        let r = rules(&["RULE:[2:$2-$1]s/\\./_/g/L", "RULE:[1:$0]", "DEFAULT"]);
        assert_eq!(r.short_name("HS2Proxy/Host.Example.Com@R").unwrap(), "host_example_com-hs2proxy");
        assert_eq!(r.short_name("a/b/c@R").unwrap(), "a", "three components: only DEFAULT applies");
        assert_eq!(r.short_name("alice@REALM").unwrap(), "REALM");
        // A group reference in the replacement.
        let r = rules(&[r"RULE:[1:$1](svc_(.*))s/svc_(.*)/$1/"]);
        assert_eq!(r.short_name("svc_etl@R").unwrap(), "etl");
    }

    #[test]
    fn results_must_be_simple_names() {
        let r = rules(&["RULE:[1:$1@$0]"]);
        let e = r.short_name("alice@EXAMPLE.TEST").unwrap_err();
        assert!(matches!(e, PrincipalError::NotSimple { ref name, .. } if name == "alice@EXAMPLE.TEST"), "{e}");
        assert!(rules(&["RULE:[1:$5]"]).short_name("alice@R").is_err(), "an index beyond the components");
    }

    #[test]
    fn bad_rules_are_named() {
        for bad in [
            "RULE[1:$1]",
            "RULE:[x:$1]",
            "RULE:[0:$1]",
            "RULE:[1:$1](a",
            "RULE:[1:$1](()",
            "RULE:[1:$1]s/a/b",
            "RULE:[1:$1]zz",
            "default",
        ] {
            let e = ShortNames::parse(&[bad.to_string()]).unwrap_err();
            assert!(matches!(&e, PrincipalError::BadRule { rule, .. } if rule == bad), "{bad}: {e}");
        }
    }
}
