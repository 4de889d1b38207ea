//! Identifier newtypes shared by every actor: [`ClientId`] and [`TopicName`].
//!
//! Cloning either is a reference-count increment. A [`TopicName`] wraps a [`ByteString`],
//! so a topic taken from a decoded PUBLISH is never copied. A [`ClientId`] is copied once,
//! when its client connects, into an `Arc<str>`: every session keeps its id in several
//! places (the Registry, the route snapshot, its outbound state), so the id is half the
//! size of a `ByteString` and one allocation. Both hash like `str` and borrow as `str`,
//! so maps keyed by them can be queried with a plain `&str` (the route snapshot does this
//! on every publish).

use bytestring::ByteString;
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
        pub struct $name($inner);

        impl $name {
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Length in bytes.
            pub fn len(&self) -> usize {
                self.0.len()
            }

            /// True for the empty string.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        // Hash exactly like `str` so that `Borrow<str>` lookups find the entry.
        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.as_str().hash(state)
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(<$inner>::from(s))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(<$inner>::from(s))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }
    };
}

string_id!(
    /// A client identifier: names one session on this node.
    ClientId(Arc<str>)
);

string_id!(
    /// A topic name (no wildcards): names one topic a message is published to.
    TopicName(ByteString)
);

impl TopicName {
    /// The name as a shared byte string (cheap to clone).
    pub fn as_bytestring(&self) -> &ByteString {
        &self.0
    }
}

impl From<ByteString> for TopicName {
    fn from(s: ByteString) -> Self {
        TopicName(s)
    }
}

impl From<ByteString> for ClientId {
    /// Copies the id out of the (decoded packet's) buffer.
    fn from(s: ByteString) -> Self {
        ClientId(Arc::from(&*s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn ids_are_found_by_str() {
        let mut m = HashMap::new();
        m.insert(ClientId::from("alice"), 1);
        m.insert(ClientId::from(String::from("bob")), 2);
        assert_eq!(m.get("alice"), Some(&1));
        assert_eq!(m.get("bob"), Some(&2));
        assert_eq!(m.get("carol"), None);
    }

    #[test]
    fn a_client_id_is_two_words() {
        assert_eq!(std::mem::size_of::<ClientId>(), 16);
    }

    #[test]
    fn display_is_the_plain_string() {
        assert_eq!(TopicName::from("a/b").to_string(), "a/b");
        assert_eq!(format!("{:?}", ClientId::from("c")), "\"c\"");
    }
}
