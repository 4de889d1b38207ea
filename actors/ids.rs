//! Identifier newtypes shared by every actor: [`ClientId`] and [`TopicName`].
//!
//! Both wrap a [`ByteString`], so cloning one is a reference-count increment and a topic
//! taken from a decoded PUBLISH is never copied. They hash like `str` and borrow as `str`,
//! so maps keyed by them can be queried with a plain `&str` (the route snapshot does this on
//! every publish).

use bytestring::ByteString;
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
        pub struct $name(ByteString);

        impl $name {
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The identifier as a shared byte string (cheap to clone).
            pub fn as_bytestring(&self) -> &ByteString {
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

        impl From<ByteString> for $name {
            fn from(s: ByteString) -> Self {
                $name(s)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(ByteString::from(s))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(ByteString::from(s))
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
    ClientId
);

string_id!(
    /// A topic name (no wildcards): names one topic a message is published to.
    TopicName
);

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
    fn display_is_the_plain_string() {
        assert_eq!(TopicName::from("a/b").to_string(), "a/b");
        assert_eq!(format!("{:?}", ClientId::from("c")), "\"c\"");
    }
}
