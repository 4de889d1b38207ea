//! Topic permissions: ordered allow/deny rules on topic filters, per account and for
//! everyone, compiled for one connection into [`Permissions`].
//!
//! A rule reads `<allow|deny> <actions> <filter>`, e.g. `allow publish,subscribe
//! devices/%c/#` or `deny direct #`. Actions are `publish`, `subscribe`, `direct` (a
//! PUBLISH whose topic is another client's id) or `all`. `%c` in the filter stands for the
//! connection's client id, `%u` for its username. The first rule that applies decides:
//! the account's own rules, then `auth.rules` from the configuration, then
//! `auth.default_policy`.
//!
//! When a rule applies:
//! - publish: the filter matches the topic name;
//! - direct: the filter matches the receiving client id (as if it were a topic name);
//! - subscribe: an `allow` rule applies when its filter covers every topic the requested
//!   filter can match (`a/#` covers `a/+/b`), a `deny` rule when the two overlap at all
//!   (`deny subscribe secret/#` refuses `#`), so wildcards cannot reach around a denial.
//!
//! A substituted `%c`/`%u` containing `+`, `#` or `/` would widen a rule: such an `allow`
//! rule is dropped and such a `deny` rule denies its actions everywhere (fail closed).
//!
//! Built by [`Security`](super::Security) at CONNECT, read by the client's Session on every
//! PUBLISH and SUBSCRIBE.

use crate::topic::{matches, validate_topic_filter};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// The action is permitted.
    Allow,
    /// The action is refused.
    Deny,
}

/// A set of actions a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actions {
    /// PUBLISH to a topic.
    pub publish: bool,
    /// SUBSCRIBE to a filter.
    pub subscribe: bool,
    /// PUBLISH to another client's id (direct message).
    pub direct: bool,
}

/// One permission rule, written and stored as text (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRule {
    /// Allow or deny.
    pub access: Access,
    /// What the rule is about.
    pub actions: Actions,
    /// The topic filter, possibly with `%c` / `%u`.
    pub filter: String,
}

/// Why a rule text is not a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule `{rule}`: {why} (expected `<allow|deny> <publish,subscribe,direct|all> <filter>`)")]
pub struct RuleError {
    /// The text.
    pub rule: String,
    /// What is wrong.
    pub why: &'static str,
}

impl FromStr for TopicRule {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| RuleError {
            rule: s.to_string(),
            why,
        };
        let mut words = s.split_whitespace();
        let access = match words.next() {
            Some("allow") => Access::Allow,
            Some("deny") => Access::Deny,
            _ => return Err(err("must start with allow or deny")),
        };
        let mut actions = Actions::default();
        for action in words.next().ok_or_else(|| err("no actions"))?.split(',') {
            match action {
                "publish" | "pub" => actions.publish = true,
                "subscribe" | "sub" => actions.subscribe = true,
                "direct" => actions.direct = true,
                "all" => {
                    actions = Actions {
                        publish: true,
                        subscribe: true,
                        direct: true,
                    }
                }
                _ => return Err(err("unknown action")),
            }
        }
        let filter = words.next().ok_or_else(|| err("no topic filter"))?;
        if words.next().is_some() {
            return Err(err("text after the filter"));
        }
        // Checked with placeholders replaced by a plain level.
        let probe = filter.replace("%c", "c").replace("%u", "u");
        if validate_topic_filter(&probe, 65535, usize::MAX).is_err() {
            return Err(err("invalid topic filter"));
        }
        Ok(TopicRule {
            access,
            actions,
            filter: filter.to_string(),
        })
    }
}

impl fmt::Display for TopicRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = match self.access {
            Access::Allow => "allow",
            Access::Deny => "deny",
        };
        let a = self.actions;
        let actions = if a.publish && a.subscribe && a.direct {
            "all".to_string()
        } else {
            [
                (a.publish, "publish"),
                (a.subscribe, "subscribe"),
                (a.direct, "direct"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| *name)
            .collect::<Vec<_>>()
            .join(",")
        };
        write!(f, "{access} {actions} {}", self.filter)
    }
}

impl Serialize for TopicRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TopicRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A rule with `%c` / `%u` replaced for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Compiled {
    access: Access,
    actions: Actions,
    /// `None`: the substitution was unsafe and this deny rule applies everywhere.
    filter: Option<String>,
}

/// What one connection may do; cheap to clone, checked by its Session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Rules in the order they are tried; empty with `default` Allow = unrestricted.
    rules: Arc<[Compiled]>,
    /// The policy when no rule applies.
    default: Access,
    /// A 3.x client is disconnected on a refused PUBLISH.
    disconnect_on_denied: bool,
}

impl Default for Permissions {
    /// Everything allowed.
    fn default() -> Self {
        Permissions::allow_all()
    }
}

/// The empty rule list, shared by every connection without rules (an `Arc` of an empty
/// slice still costs an allocation per copy made with `Arc::from`).
fn no_rules() -> Arc<[Compiled]> {
    static EMPTY: OnceLock<Arc<[Compiled]>> = OnceLock::new();
    EMPTY.get_or_init(|| Arc::from(Vec::new())).clone()
}

impl Permissions {
    /// Everything allowed (authentication disabled, or no rules at all).
    pub fn allow_all() -> Permissions {
        Permissions {
            rules: no_rules(),
            default: Access::Allow,
            disconnect_on_denied: false,
        }
    }

    /// Compiles `rules` once for every client when none of them names `%c` or `%u` (the
    /// result is then the same for every client id and username, and cloning it shares
    /// it); `None` when one does.
    pub fn compile_shared(rules: &[TopicRule], default: Access) -> Option<Permissions> {
        let personal = |rule: &TopicRule| rule.filter.contains("%c") || rule.filter.contains("%u");
        if rules.iter().any(personal) {
            return None;
        }
        Some(Permissions::compile(rules, default, "", None))
    }

    /// True when `self` and `other` share one compiled rule list.
    pub fn shares_rules_with(&self, other: &Permissions) -> bool {
        Arc::ptr_eq(&self.rules, &other.rules)
    }

    /// Compiles `rules` (tried in order, then `default`) for a client id and username.
    pub fn compile<'a>(
        rules: impl IntoIterator<Item = &'a TopicRule>,
        default: Access,
        client_id: &str,
        username: Option<&str>,
    ) -> Permissions {
        let unsafe_value = |v: &str| v.contains(['+', '#', '/']);
        let compiled: Vec<Compiled> = rules
            .into_iter()
            .filter_map(|rule| {
                let mut filter = rule.filter.clone();
                let mut safe = true;
                if filter.contains("%c") {
                    safe &= !unsafe_value(client_id) && !client_id.is_empty();
                    filter = filter.replace("%c", client_id);
                }
                if filter.contains("%u") {
                    let user = username.unwrap_or("");
                    safe &= !unsafe_value(user) && !user.is_empty();
                    filter = filter.replace("%u", user);
                }
                match (safe, rule.access) {
                    (true, access) => Some(Compiled {
                        access,
                        actions: rule.actions,
                        filter: Some(filter),
                    }),
                    (false, Access::Allow) => None,
                    (false, Access::Deny) => Some(Compiled {
                        access: Access::Deny,
                        actions: rule.actions,
                        filter: None,
                    }),
                }
            })
            .collect();
        Permissions {
            rules: if compiled.is_empty() {
                no_rules()
            } else {
                Arc::from(compiled)
            },
            default,
            disconnect_on_denied: false,
        }
    }

    /// The same permissions, disconnecting 3.x clients on a refused PUBLISH when `on`.
    pub fn with_disconnect_on_denied(mut self, on: bool) -> Permissions {
        self.disconnect_on_denied = on;
        self
    }

    /// Whether a 3.x client is disconnected on a refused PUBLISH.
    pub fn disconnect_on_denied(&self) -> bool {
        self.disconnect_on_denied
    }

    /// True when every action is allowed (the checks can be skipped).
    pub fn is_unrestricted(&self) -> bool {
        self.rules.is_empty() && self.default == Access::Allow
    }

    /// May the client publish to the topic name `topic`?
    pub fn may_publish(&self, topic: &str) -> bool {
        self.decide(|a| a.publish, |filter, _| matches(filter, topic))
    }

    /// May the client send a direct message to the client id `target`?
    pub fn may_message(&self, target: &str) -> bool {
        self.decide(|a| a.direct, |filter, _| matches(filter, target))
    }

    /// May the client subscribe to the (valid) topic filter `filter`?
    pub fn may_subscribe(&self, filter: &str) -> bool {
        self.decide(
            |a| a.subscribe,
            |rule, access| match access {
                Access::Allow => covers(rule, filter),
                Access::Deny => overlaps(rule, filter),
            },
        )
    }

    fn decide(
        &self,
        about: impl Fn(&Actions) -> bool,
        applies: impl Fn(&str, Access) -> bool,
    ) -> bool {
        for rule in self.rules.iter().filter(|r| about(&r.actions)) {
            let hit = match &rule.filter {
                Some(filter) => applies(filter, rule.access),
                None => true,
            };
            if hit {
                return rule.access == Access::Allow;
            }
        }
        self.default == Access::Allow
    }
}

/// True when a first level is a wildcard facing a `$` name, which never match ([MQTT-4.7.2-1]).
fn dollar_mismatch(a: &str, b: &str) -> bool {
    let wild = |s: &str| s.starts_with('+') || s.starts_with('#');
    (a.starts_with('$') && wild(b)) || (b.starts_with('$') && wild(a))
}

/// Does every topic name `filter` matches also match `rule`?
pub fn covers(rule: &str, filter: &str) -> bool {
    if dollar_mismatch(rule, filter) {
        return false;
    }
    let mut r = rule.split('/');
    let mut f = filter.split('/');
    loop {
        match (r.next(), f.next()) {
            (Some("#"), _) => return true,
            (_, Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Is there a topic name both filters match?
pub fn overlaps(a: &str, b: &str) -> bool {
    if dollar_mismatch(a, b) {
        return false;
    }
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(p), Some(q)) if p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(texts: &[&str]) -> Vec<TopicRule> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn rule_text_round_trips() {
        for text in [
            "allow publish devices/%c/#",
            "deny subscribe,direct #",
            "allow all users/%u/+",
        ] {
            let rule: TopicRule = text.parse().unwrap();
            assert_eq!(rule.to_string(), text);
        }
        let short: TopicRule = "allow pub,sub a".parse().unwrap();
        assert_eq!(short.to_string(), "allow publish,subscribe a");
        for bad in [
            "",
            "permit publish a",
            "allow fly a",
            "allow publish",
            "allow publish a/#/b",
            "allow publish a b",
        ] {
            assert!(bad.parse::<TopicRule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn first_applicable_rule_decides_then_default() {
        let r = rules(&["deny publish a/secret", "allow publish a/#"]);
        let p = Permissions::compile(&r, Access::Deny, "c1", Some("alice"));
        assert!(!p.may_publish("a/secret"));
        assert!(p.may_publish("a/open"));
        assert!(p.may_publish("a"));
        assert!(!p.may_publish("b"));
        let open = Permissions::compile(&r, Access::Allow, "c1", None);
        assert!(open.may_publish("b"));
        assert!(Permissions::allow_all().is_unrestricted());
        assert!(!p.is_unrestricted());
    }

    #[test]
    fn placeholders_are_substituted() {
        let r = rules(&[
            "allow publish,subscribe clients/%c/#",
            "allow subscribe users/%u/+",
        ]);
        let p = Permissions::compile(&r, Access::Deny, "dev1", Some("bob"));
        assert!(p.may_publish("clients/dev1/temp"));
        assert!(!p.may_publish("clients/dev2/temp"));
        assert!(p.may_subscribe("users/bob/inbox"));
        assert!(p.may_subscribe("users/bob/+"));
        assert!(!p.may_subscribe("users/+/inbox"));
        assert!(!p.may_subscribe("users/eve/inbox"));
    }

    #[test]
    fn wildcard_values_cannot_widen_rules() {
        let r = rules(&["allow publish clients/%c/#", "deny subscribe private/%u/#"]);
        let p = Permissions::compile(&r, Access::Allow, "+", Some("#"));
        // The allow rule is dropped, so the default (allow) applies to publish...
        assert!(p.may_publish("clients/x/y"));
        // ...and the deny rule applies everywhere.
        assert!(!p.may_subscribe("anything"));
        let strict = Permissions::compile(&r, Access::Deny, "a/b", None);
        assert!(!strict.may_publish("clients/a/b/c"));
        // %u without a username is unsafe too.
        let anon = Permissions::compile(&rules(&["allow subscribe u/%u"]), Access::Deny, "c", None);
        assert!(!anon.may_subscribe("u/"));
    }

    #[test]
    fn subscribe_wildcards_cannot_reach_around_a_denial() {
        let r = rules(&["deny subscribe secret/#", "allow subscribe #"]);
        let p = Permissions::compile(&r, Access::Deny, "c", None);
        assert!(p.may_subscribe("news/+"));
        assert!(!p.may_subscribe("#"));
        assert!(!p.may_subscribe("+/x"));
        assert!(!p.may_subscribe("secret/a"));
        // An allow rule must cover the whole requested filter.
        let narrow =
            Permissions::compile(&rules(&["allow subscribe a/+"]), Access::Deny, "c", None);
        assert!(narrow.may_subscribe("a/b"));
        assert!(!narrow.may_subscribe("a/#"));
        assert!(!narrow.may_subscribe("a/+/c"));
    }

    #[test]
    fn direct_rules_match_the_receiver_id() {
        let r = rules(&["allow direct ops-%u", "deny direct #"]);
        let p = Permissions::compile(&r, Access::Allow, "c", Some("ann"));
        assert!(p.may_message("ops-ann"));
        assert!(!p.may_message("other"));
        // Direct rules do not govern ordinary publishes.
        assert!(p.may_publish("other"));
    }

    #[test]
    fn covers_and_overlaps() {
        assert!(covers("#", "a/b"));
        assert!(covers("a/#", "a"));
        assert!(covers("a/+", "a/+"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("#", "$SYS/x"));
        assert!(covers("$SYS/#", "$SYS/x"));
        assert!(overlaps("a/+/c", "a/b/+"));
        assert!(overlaps("a/#", "+"));
        assert!(!overlaps("a/b", "a/c"));
        assert!(!overlaps("#", "$SYS/x"));
        assert!(!overlaps("a/b", "a/b/c"));
    }
}
