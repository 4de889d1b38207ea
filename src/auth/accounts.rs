//! Accounts: username → argon2id password hash and the account's topic rules.
//!
//! [`Accounts`] is the in-memory table [`Security`](super::Security) reads on every CONNECT
//! that needs credentials. It is built from stored [`AccountRecord`]s
//! ([`Accounts::load`]) and every change returns the record to write back, so persistence
//! stays a thin layer around it. The plain password never leaves [`Accounts::set`].

use super::password::{self, HashCost, HashError};
use super::rules::TopicRule;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The stored form of one account (the key is the username).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// argon2id PHC string of the password.
    pub password_hash: String,
    /// The account's own topic rules, tried before the configured ones.
    #[serde(default)]
    pub rules: Vec<TopicRule>,
}

/// What may be shown about an account: never the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountInfo {
    /// The username.
    pub username: String,
    /// The account's topic rules.
    pub rules: Vec<TopicRule>,
}

/// Why an account change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// The username is empty, too long or contains a character rules cannot quote.
    #[error("invalid username {0:?}: must be 1 to 65535 bytes without `+`, `#`, `/` or control characters")]
    InvalidUsername(String),
    /// The password is empty or longer than MQTT can carry.
    #[error("invalid password: must be 1 to 65535 bytes")]
    InvalidPassword,
    /// No such account.
    #[error("no account {0:?}")]
    NotFound(String),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] HashError),
}

/// One account as kept in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// argon2id PHC string.
    pub password_hash: String,
    /// Topic rules, shared with the connections of this account.
    pub rules: Arc<[TopicRule]>,
}

impl From<AccountRecord> for Account {
    fn from(r: AccountRecord) -> Self {
        Account {
            password_hash: r.password_hash,
            rules: Arc::from(r.rules),
        }
    }
}

impl Account {
    fn record(&self) -> AccountRecord {
        AccountRecord {
            password_hash: self.password_hash.clone(),
            rules: self.rules.to_vec(),
        }
    }
}

/// The account table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    by_name: BTreeMap<String, Account>,
}

/// Checks a username for [`Accounts::set`].
pub fn validate_username(username: &str) -> Result<(), AccountError> {
    let bad = username.is_empty()
        || username.len() > 65535
        || username.contains(['+', '#', '/'])
        || username.chars().any(char::is_control);
    if bad {
        Err(AccountError::InvalidUsername(username.to_string()))
    } else {
        Ok(())
    }
}

impl Accounts {
    /// Builds the table from stored records.
    pub fn load(records: impl IntoIterator<Item = (String, AccountRecord)>) -> Accounts {
        Accounts {
            by_name: records.into_iter().map(|(u, r)| (u, r.into())).collect(),
        }
    }

    /// The account of `username`.
    pub fn get(&self, username: &str) -> Option<&Account> {
        self.by_name.get(username)
    }

    /// Creates or replaces an account: hashes `password` (slow: blocking) and returns the
    /// record to store.
    pub fn set(
        &mut self,
        username: &str,
        password: &[u8],
        rules: Vec<TopicRule>,
        cost: HashCost,
    ) -> Result<AccountRecord, AccountError> {
        validate_username(username)?;
        if password.is_empty() || password.len() > 65535 {
            return Err(AccountError::InvalidPassword);
        }
        let record = AccountRecord {
            password_hash: password::hash(password, cost)?,
            rules,
        };
        self.by_name
            .insert(username.to_string(), record.clone().into());
        Ok(record)
    }

    /// Puts a record as it is (loading, replication).
    pub fn put(&mut self, username: &str, record: AccountRecord) {
        self.by_name.insert(username.to_string(), record.into());
    }

    /// Replaces the rules of an existing account; returns the record to store.
    pub fn set_rules(
        &mut self,
        username: &str,
        rules: Vec<TopicRule>,
    ) -> Result<AccountRecord, AccountError> {
        let account = self
            .by_name
            .get_mut(username)
            .ok_or_else(|| AccountError::NotFound(username.to_string()))?;
        account.rules = Arc::from(rules);
        Ok(account.record())
    }

    /// Deletes an account; `true` if it existed.
    pub fn remove(&mut self, username: &str) -> bool {
        self.by_name.remove(username).is_some()
    }

    /// The stored form of an account.
    pub fn record(&self, username: &str) -> Option<AccountRecord> {
        self.by_name.get(username).map(Account::record)
    }

    /// Every account, without hashes, by username.
    pub fn list(&self) -> Vec<AccountInfo> {
        self.by_name
            .iter()
            .map(|(u, a)| AccountInfo {
                username: u.clone(),
                rules: a.rules.to_vec(),
            })
            .collect()
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when there is no account.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = password::TEST_COST;

    #[test]
    fn set_stores_a_hash_and_round_trips_through_records() {
        let mut accounts = Accounts::default();
        let rules = vec!["allow publish a/%u".parse().unwrap()];
        // Spaces and '!' are outside base64's alphabet, so the salt and hash cannot contain
        // this password by chance (a short one such as "pw" did in about 2% of runs).
        let record = accounts
            .set("alice", b"pass word!", rules.clone(), CHEAP)
            .unwrap();
        assert!(record.password_hash.starts_with("$argon2id$"));
        assert!(!record.password_hash.contains("pass word!"));
        assert_eq!(record.rules, rules);
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains("allow publish a/%u"), "{json}");
        let back: AccountRecord = serde_json::from_str(&json).unwrap();
        let reloaded = Accounts::load([("alice".to_string(), back)]);
        assert_eq!(reloaded, accounts);
        assert!(password::verify(
            b"pass word!",
            &reloaded.get("alice").unwrap().password_hash
        ));
    }

    #[test]
    fn invalid_usernames_and_passwords_are_refused() {
        let mut accounts = Accounts::default();
        for bad in ["", "a/b", "a+", "#", "tab\t"] {
            assert!(matches!(
                accounts.set(bad, b"pw", vec![], CHEAP),
                Err(AccountError::InvalidUsername(_))
            ));
        }
        assert_eq!(
            accounts.set("ok", b"", vec![], CHEAP),
            Err(AccountError::InvalidPassword)
        );
        assert!(accounts.is_empty());
    }

    #[test]
    fn rules_change_and_delete() {
        let mut accounts = Accounts::default();
        accounts.set("bob", b"pw", vec![], CHEAP).unwrap();
        let rule: TopicRule = "deny all #".parse().unwrap();
        let record = accounts.set_rules("bob", vec![rule.clone()]).unwrap();
        assert_eq!(record.rules, vec![rule]);
        assert_eq!(accounts.list()[0].username, "bob");
        assert!(accounts.set_rules("nobody", vec![]).is_err());
        assert!(accounts.remove("bob"));
        assert!(!accounts.remove("bob"));
    }
}
