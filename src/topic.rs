//! Topic names, topic filters, and the two tries that index them.
//!
//! Pure code: no actix, no tokio, no I/O. The Registry actor (the single writer) keeps every
//! subscription in a [`FilterTrie`] (filter → client id → granted QoS) and every retained
//! message in a [`NameTrie`] (topic name → message); it publishes read-only snapshots that
//! sessions query on the publish path with [`FilterTrie::has_match`], so that a publish to a
//! name nobody subscribed to costs no actor hop. Sessions and the codec layer above use
//! [`validate_topic_name`] / [`validate_topic_filter`] on what clients send.
//!
//! Matching follows MQTT section 4.7: levels are split on `/` and may be empty, `+` matches
//! exactly one level (an empty one too), `#` matches the parent level and any number of child
//! levels, and a filter whose first level is a wildcard does not match a name starting with `$`
//! (`[MQTT-4.7.2-1]`). Comparison is byte-exact, so matching is case sensitive.
//!
//! Both tries walk, insert, prune and drop with explicit stacks, never recursion, so a topic
//! with 100 000 levels cannot overflow a thread stack even if it slipped past the
//! `max_topic_levels` check upstream. Nodes keep up to [`SMALL_MAX`] children in a vector
//! (linear scan, no hashing) and switch to a `HashMap` beyond that.
//!
//! Shared subscriptions (`$share/group/filter`) are not special here: callers strip the
//! `$share/group/` prefix before they store or match the filter.

use std::borrow::Borrow;
use std::collections::{hash_map, HashMap};
use std::fmt;
use std::hash::Hash;

/// Why a topic name or topic filter is invalid. `Display` cites the clause of the MQTT
/// specification that is violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic is the empty string.
    #[error("[MQTT-4.7.3-1] topic names and topic filters must be at least one character long")]
    Empty,
    /// The UTF-8 encoding of the topic is longer than the limit.
    #[error("[MQTT-4.7.3-3] topic is {len} bytes long, the limit is {max} bytes")]
    TooLong {
        /// Length of the topic in bytes.
        len: usize,
        /// The limit in force (`mqtt.max_topic_length`).
        max: usize,
    },
    /// The topic has more levels than the broker accepts.
    #[error(
        "[MQTT-4.7.1] topic has {levels} levels, this broker accepts at most {max} \
         (mqtt.max_topic_levels)"
    )]
    TooManyLevels {
        /// Number of `/`-separated levels in the topic.
        levels: usize,
        /// The limit in force (`mqtt.max_topic_levels`).
        max: usize,
    },
    /// A topic name (as opposed to a filter) contains `+` or `#`.
    #[error("[MQTT-4.7.1-1] wildcard characters '+' and '#' must not be used in a topic name")]
    WildcardInName,
    /// A wildcard does not occupy a whole level, or `#` is not the last level.
    #[error(
        "[MQTT-4.7.1-2] [MQTT-4.7.1-3] '#' must be the last level of a filter and '+' or '#' \
         must occupy an entire level"
    )]
    InvalidWildcard,
    /// The topic contains U+0000.
    #[error("[MQTT-4.7.3-2] topic names and topic filters must not include the null character")]
    NullCharacter,
}

/// Checks what is common to names and filters: non-empty, length, no U+0000, level count.
fn validate_common(topic: &str, max_len: usize, max_levels: usize) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > max_len {
        return Err(TopicError::TooLong {
            len: topic.len(),
            max: max_len,
        });
    }
    let mut levels = 1;
    for b in topic.bytes() {
        match b {
            0 => return Err(TopicError::NullCharacter),
            b'/' => levels += 1,
            _ => {}
        }
    }
    if levels > max_levels {
        return Err(TopicError::TooManyLevels {
            levels,
            max: max_levels,
        });
    }
    Ok(())
}

/// Checks a topic name as sent in PUBLISH (or a will topic): non-empty, at most `max_len`
/// bytes, at most `max_levels` levels, no U+0000 and no wildcard characters.
pub fn validate_topic_name(
    name: &str,
    max_len: usize,
    max_levels: usize,
) -> Result<(), TopicError> {
    validate_common(name, max_len, max_levels)?;
    if is_wildcard(name) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic filter as sent in SUBSCRIBE / UNSUBSCRIBE: the rules of
/// [`validate_topic_name`] except that `+` may form a whole level and `#` may form the whole
/// last level.
pub fn validate_topic_filter(
    filter: &str,
    max_len: usize,
    max_levels: usize,
) -> Result<(), TopicError> {
    validate_common(filter, max_len, max_levels)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let plus = level.contains('+');
        let hash = level.contains('#');
        if (plus || hash) && level.len() != 1 {
            return Err(TopicError::InvalidWildcard);
        }
        if hash && levels.peek().is_some() {
            return Err(TopicError::InvalidWildcard);
        }
    }
    Ok(())
}

/// Does the topic filter `filter` match the topic name `name`?
///
/// Both are assumed valid (see [`validate_topic_filter`], [`validate_topic_name`]). A filter
/// whose first level is `+` or `#` does not match a name starting with `$`; `a/#` matches `a`;
/// `+` matches an empty level.
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut name_levels = name.split('/');
    loop {
        match (filter_levels.next(), name_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(n)) if f == n => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True when `filter` contains a wildcard character (`+` or `#`).
pub fn is_wildcard(filter: &str) -> bool {
    filter.bytes().any(|b| b == b'+' || b == b'#')
}

/// Splits off the first level: `"a/b/c"` → `("a", Some("b/c"))`, `"a"` → `("a", None)`.
fn split_level(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((level, tail)) => (level, Some(tail)),
        None => (rest, None),
    }
}

/// Up to this many children a node keeps them in a vector; beyond it, in a `HashMap`.
pub const SMALL_MAX: usize = 8;
/// A `HashMap` of children shrinks back to a vector when it falls to this many entries.
const SMALL_SHRINK: usize = SMALL_MAX / 2;

/// A map that is a vector while small (no hashing, one allocation) and a boxed `HashMap`
/// when large.
enum SmallMap<K, V> {
    /// Few entries, scanned linearly.
    Small(Vec<(K, V)>),
    /// More than [`SMALL_MAX`] entries. Boxed so that the enum stays the size of a `Vec`
    /// (24 bytes instead of 48): every trie node carries one, and most are small.
    #[allow(clippy::box_collection)]
    Large(Box<HashMap<K, V>>),
}

/// Iterator over a [`SmallMap`].
enum SmallIter<'a, K, V> {
    Small(std::slice::Iter<'a, (K, V)>),
    Large(hash_map::Iter<'a, K, V>),
}

impl<'a, K, V> Iterator for SmallIter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            SmallIter::Small(it) => it.next().map(|(k, v)| (k, v)),
            SmallIter::Large(it) => it.next(),
        }
    }
}

impl<K, V> SmallMap<K, V> {
    const fn new() -> Self {
        SmallMap::Small(Vec::new())
    }

    fn len(&self) -> usize {
        match self {
            SmallMap::Small(items) => items.len(),
            SmallMap::Large(map) => map.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn iter(&self) -> SmallIter<'_, K, V> {
        match self {
            SmallMap::Small(items) => SmallIter::Small(items.iter()),
            SmallMap::Large(map) => SmallIter::Large(map.iter()),
        }
    }

    /// Moves every value into `out`, leaving the map empty.
    fn drain_values_into(&mut self, out: &mut Vec<V>) {
        match self {
            SmallMap::Small(items) => out.extend(items.drain(..).map(|(_, v)| v)),
            SmallMap::Large(map) => out.extend(map.drain().map(|(_, v)| v)),
        }
    }
}

impl<K: Eq + Hash, V> SmallMap<K, V> {
    fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            SmallMap::Small(items) => items.iter().find(|(k, _)| k.borrow() == key).map(|e| &e.1),
            SmallMap::Large(map) => map.get(key),
        }
    }

    fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            SmallMap::Small(items) => items
                .iter_mut()
                .find(|(k, _)| k.borrow() == key)
                .map(|e| &mut e.1),
            SmallMap::Large(map) => map.get_mut(key),
        }
    }

    /// Turns a full vector into a `HashMap` before an entry for `key` is added.
    fn grow_for<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if let SmallMap::Small(items) = self {
            if items.len() >= SMALL_MAX && !items.iter().any(|(k, _)| k.borrow() == key) {
                let items = std::mem::take(items);
                *self = SmallMap::Large(Box::new(items.into_iter().collect()));
            }
        }
    }

    /// Returns the value for `key`, first inserting `(make_key(), make_value())` if absent.
    fn get_or_insert_with<Q>(
        &mut self,
        key: &Q,
        make_key: impl FnOnce() -> K,
        make_value: impl FnOnce() -> V,
    ) -> &mut V
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.grow_for(key);
        match self {
            SmallMap::Small(items) => {
                let index = match items.iter().position(|(k, _)| k.borrow() == key) {
                    Some(index) => index,
                    None => {
                        items.push((make_key(), make_value()));
                        items.len() - 1
                    }
                };
                &mut items[index].1
            }
            SmallMap::Large(map) => map.entry(make_key()).or_insert_with(make_value),
        }
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.grow_for(&key);
        match self {
            SmallMap::Small(items) => match items.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => Some(std::mem::replace(&mut entry.1, value)),
                None => {
                    items.push((key, value));
                    None
                }
            },
            SmallMap::Large(map) => map.insert(key, value),
        }
    }

    fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            SmallMap::Small(items) => {
                let index = items.iter().position(|(k, _)| k.borrow() == key)?;
                let (_, value) = items.swap_remove(index);
                if items.is_empty() {
                    // Give the allocation back: pruned-but-kept nodes should cost nothing.
                    *items = Vec::new();
                }
                Some(value)
            }
            SmallMap::Large(map) => {
                let value = map.remove(key)?;
                if map.len() <= SMALL_SHRINK {
                    let map = std::mem::take(&mut **map);
                    *self = SmallMap::Small(map.into_iter().collect());
                }
                Some(value)
            }
        }
    }
}

/// One step down a [`FilterTrie`]: a literal level or the `+` wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge<'a> {
    Level(&'a str),
    Plus,
}

/// Where a filter's entries live at the node its path leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The filter ends at this node (`a/b`).
    Exact,
    /// The filter is this node's path followed by `#` (`a/b/#`, or `#` at the root).
    Multi,
}

/// Splits a filter into the path of edges to its node and the kind of its end.
fn parse_filter(filter: &str) -> (impl Iterator<Item = Edge<'_>> + Clone, End) {
    let (path, end) = if filter == "#" {
        (None, End::Multi)
    } else if let Some(prefix) = filter.strip_suffix("/#") {
        (Some(prefix), End::Multi)
    } else {
        (Some(filter), End::Exact)
    };
    let edges = path
        .into_iter()
        .flat_map(|p| p.split('/'))
        .map(|level| match level {
            "+" => Edge::Plus,
            _ => Edge::Level(level),
        });
    (edges, end)
}

/// The entries of one filter.
struct Slot<K, V> {
    /// The filter exactly as inserted, reported by [`FilterTrie::for_each_match`].
    filter: Box<str>,
    /// key → value; never empty (an emptied slot is dropped).
    entries: SmallMap<K, V>,
}

/// A node of a [`FilterTrie`]: one level of a filter.
struct FilterNode<K, V> {
    /// Children by literal level.
    children: SmallMap<Box<str>, FilterNode<K, V>>,
    /// The `+` child.
    plus: Option<Box<FilterNode<K, V>>>,
    /// Entries of the filter that ends here.
    exact: Option<Box<Slot<K, V>>>,
    /// Entries of the filter that is this node's path followed by `#`.
    multi: Option<Box<Slot<K, V>>>,
}

impl<K, V> FilterNode<K, V> {
    const fn new() -> Self {
        FilterNode {
            children: SmallMap::new(),
            plus: None,
            exact: None,
            multi: None,
        }
    }

    fn edge_count(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some())
    }

    fn has_slot(&self) -> bool {
        self.exact.is_some() || self.multi.is_some()
    }

    fn is_empty(&self) -> bool {
        !self.has_slot() && self.edge_count() == 0
    }

    fn slot(&self, end: End) -> Option<&Slot<K, V>> {
        match end {
            End::Exact => self.exact.as_deref(),
            End::Multi => self.multi.as_deref(),
        }
    }

    fn slot_mut(&mut self, end: End) -> &mut Option<Box<Slot<K, V>>> {
        match end {
            End::Exact => &mut self.exact,
            End::Multi => &mut self.multi,
        }
    }

    /// Frees this subtree without recursion, however deep it is.
    fn dismantle(self) {
        let mut stack = vec![self];
        let mut children = Vec::new();
        while let Some(mut node) = stack.pop() {
            node.children.drain_values_into(&mut children);
            stack.append(&mut children);
            if let Some(plus) = node.plus.take() {
                stack.push(*plus);
            }
            // `node` drops here with no children left.
        }
    }
}

impl<K: Eq + Hash, V> FilterNode<K, V> {
    fn child(&self, edge: Edge<'_>) -> Option<&Self> {
        match edge {
            Edge::Plus => self.plus.as_deref(),
            Edge::Level(level) => self.children.get(level),
        }
    }

    fn child_mut(&mut self, edge: Edge<'_>) -> Option<&mut Self> {
        match edge {
            Edge::Plus => self.plus.as_deref_mut(),
            Edge::Level(level) => self.children.get_mut(level),
        }
    }

    fn take_child(&mut self, edge: Edge<'_>) -> Option<Self> {
        match edge {
            Edge::Plus => self.plus.take().map(|node| *node),
            Edge::Level(level) => self.children.remove(level),
        }
    }

    fn descend<'e>(&self, edges: impl IntoIterator<Item = Edge<'e>>) -> Option<&Self> {
        let mut node = self;
        for edge in edges {
            node = node.child(edge)?;
        }
        Some(node)
    }

    fn descend_mut<'e>(&mut self, edges: impl IntoIterator<Item = Edge<'e>>) -> Option<&mut Self> {
        let mut node = self;
        for edge in edges {
            node = node.child_mut(edge)?;
        }
        Some(node)
    }
}

/// Topic filters → (key → value), e.g. filter → (client id → granted QoS).
///
/// Filters must be valid ([`validate_topic_filter`]); an invalid one is stored and matched
/// as if its stray wildcard characters were literal text. Query with a topic name to find
/// every entry whose filter matches it.
pub struct FilterTrie<K, V> {
    root: FilterNode<K, V>,
    /// Number of (filter, key) entries.
    len: usize,
}

impl<K, V> FilterTrie<K, V> {
    /// An empty trie.
    pub const fn new() -> Self {
        FilterTrie {
            root: FilterNode::new(),
            len: 0,
        }
    }

    /// Number of (filter, key) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the trie holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `f(filter, key, value)` for every entry, in no particular order.
    pub fn for_each(&self, mut f: impl FnMut(&str, &K, &V)) {
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            for slot in [node.exact.as_deref(), node.multi.as_deref()]
                .into_iter()
                .flatten()
            {
                for (key, value) in slot.entries.iter() {
                    f(&slot.filter, key, value);
                }
            }
            stack.extend(node.children.iter().map(|(_, child)| child));
            stack.extend(node.plus.as_deref());
        }
    }
}

impl<K: Eq + Hash, V> FilterTrie<K, V> {
    /// Stores `value` for (`filter`, `key`); returns the value it replaces, if any.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let (edges, end) = parse_filter(filter);
        let mut node = &mut self.root;
        for edge in edges {
            node = match edge {
                Edge::Plus => node.plus.get_or_insert_with(|| Box::new(FilterNode::new())),
                Edge::Level(level) => {
                    node.children
                        .get_or_insert_with(level, || level.into(), FilterNode::new)
                }
            };
        }
        let slot = node.slot_mut(end).get_or_insert_with(|| {
            Box::new(Slot {
                filter: filter.into(),
                entries: SmallMap::new(),
            })
        });
        let previous = slot.entries.insert(key, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Removes the entry for (`filter`, `key`) and returns its value; nodes left empty are
    /// freed.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let (edges, end) = parse_filter(filter);
        let node = self.root.descend_mut(edges.clone())?;
        let slot_ref = node.slot_mut(end);
        let slot = slot_ref.as_mut()?;
        let value = slot.entries.remove(key)?;
        if slot.entries.is_empty() {
            *slot_ref = None;
        }
        self.len -= 1;
        let edges: Vec<Edge<'_>> = edges.collect();
        self.prune(&edges);
        Some(value)
    }

    /// Cuts off the chain of nodes at the end of `path` that no longer hold anything.
    fn prune(&mut self, path: &[Edge<'_>]) {
        // `keep` = depth of the deepest node on the path that must stay (the root always does).
        let mut keep = 0;
        let mut node = &self.root;
        for (depth, &edge) in path.iter().enumerate() {
            if depth > 0 && (node.has_slot() || node.edge_count() > 1) {
                keep = depth;
            }
            match node.child(edge) {
                Some(child) => node = child,
                None => return,
            }
        }
        if !node.is_empty() {
            return;
        }
        let Some(&cut) = path.get(keep) else {
            return;
        };
        let removed = self
            .root
            .descend_mut(path[..keep].iter().copied())
            .and_then(|parent| parent.take_child(cut));
        if let Some(removed) = removed {
            removed.dismantle();
        }
    }

    /// The value stored for (`filter`, `key`).
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        let (edges, end) = parse_filter(filter);
        self.root.descend(edges)?.slot(end)?.entries.get(key)
    }

    /// The value stored for (`filter`, `key`), mutable.
    pub fn get_mut(&mut self, filter: &str, key: &K) -> Option<&mut V> {
        let (edges, end) = parse_filter(filter);
        let node = self.root.descend_mut(edges)?;
        node.slot_mut(end).as_mut()?.entries.get_mut(key)
    }

    /// Calls `f(key, value)` for every entry stored under exactly `filter` (no matching).
    pub fn for_each_key(&self, filter: &str, mut f: impl FnMut(&K, &V)) {
        let (edges, end) = parse_filter(filter);
        if let Some(slot) = self.root.descend(edges).and_then(|node| node.slot(end)) {
            for (key, value) in slot.entries.iter() {
                f(key, value);
            }
        }
    }

    /// Calls `f(filter, key, value)` for every entry whose filter matches the topic name
    /// `name`, in no particular order. Each entry is reported once.
    pub fn for_each_match(&self, name: &str, mut f: impl FnMut(&str, &K, &V)) {
        self.walk(name, |slot| {
            for (key, value) in slot.entries.iter() {
                f(&slot.filter, key, value);
            }
            false
        });
    }

    /// Does any stored filter match the topic name `name`? Allocates nothing unless the
    /// path through the trie branches on a `+`.
    pub fn has_match(&self, name: &str) -> bool {
        self.walk(name, |_| true)
    }

    /// Visits every slot whose filter matches `name` until `visit` returns true; returns
    /// whether it did.
    ///
    /// The literal path is followed in place; only `+` branches go on the (heap) stack, so
    /// the common case allocates nothing and depth never touches the thread stack. A node
    /// is reached at most once: its depth is fixed by its path, so no slot is visited twice.
    fn walk<'t>(&'t self, name: &str, mut visit: impl FnMut(&'t Slot<K, V>) -> bool) -> bool {
        let dollar = name.starts_with('$');
        let mut pending: Vec<(&'t FilterNode<K, V>, Option<&str>)> = Vec::new();
        let mut next = Some((&self.root, Some(name)));
        let mut at_root = true;
        while let Some((node, rest)) = next.take().or_else(|| pending.pop()) {
            // [MQTT-4.7.2-1]: a leading wildcard does not match a `$` name.
            let wildcards = !(at_root && dollar);
            at_root = false;
            if wildcards {
                if let Some(slot) = node.multi.as_deref() {
                    if visit(slot) {
                        return true;
                    }
                }
            }
            match rest {
                None => {
                    if let Some(slot) = node.exact.as_deref() {
                        if visit(slot) {
                            return true;
                        }
                    }
                }
                Some(rest) => {
                    let (level, tail) = split_level(rest);
                    if wildcards {
                        if let Some(plus) = node.plus.as_deref() {
                            pending.push((plus, tail));
                        }
                    }
                    next = node.children.get(level).map(|child| (child, tail));
                }
            }
        }
        false
    }
}

impl<K, V> Default for FilterTrie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Drop for FilterTrie<K, V> {
    fn drop(&mut self) {
        std::mem::replace(&mut self.root, FilterNode::new()).dismantle();
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Clone for FilterTrie<K, V> {
    fn clone(&self) -> Self {
        let mut copy = Self::new();
        self.for_each(|filter, key, value| {
            copy.insert(filter, key.clone(), value.clone());
        });
        copy
    }
}

impl<K, V> fmt::Debug for FilterTrie<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterTrie")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// A node of a [`NameTrie`]: one level of a topic name.
struct NameNode<V> {
    /// Children by level.
    children: SmallMap<Box<str>, NameNode<V>>,
    /// The value of the name that ends here.
    value: Option<V>,
}

impl<V> NameNode<V> {
    const fn new() -> Self {
        NameNode {
            children: SmallMap::new(),
            value: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.value.is_none() && self.children.is_empty()
    }

    /// Frees this subtree without recursion, however deep it is.
    fn dismantle(self) {
        let mut stack = vec![self];
        let mut children = Vec::new();
        while let Some(mut node) = stack.pop() {
            node.children.drain_values_into(&mut children);
            stack.append(&mut children);
        }
    }

    fn descend<'n>(&self, levels: impl IntoIterator<Item = &'n str>) -> Option<&Self> {
        let mut node = self;
        for level in levels {
            node = node.children.get(level)?;
        }
        Some(node)
    }

    fn descend_mut<'n>(&mut self, levels: impl IntoIterator<Item = &'n str>) -> Option<&mut Self> {
        let mut node = self;
        for level in levels {
            node = node.children.get_mut(level)?;
        }
        Some(node)
    }
}

/// What the rest of a filter asks of a [`NameTrie`] node during matching.
#[derive(Clone, Copy)]
enum Want<'a> {
    /// These filter levels remain to be matched below this node.
    Levels(&'a str),
    /// The filter is used up: this node's own value matches.
    End,
    /// A `#` was reached: this node and its whole subtree match.
    All,
}

/// A pending node in a [`NameTrie`] walk; the name is rebuilt in a shared buffer.
struct Frame<'a, V> {
    node: &'a NameNode<V>,
    /// Level of `node` below the root (the root is 0).
    depth: usize,
    /// Length of the parent's name in the buffer.
    parent_len: usize,
    /// This node's level.
    label: &'a str,
    want: Want<'a>,
}

/// Topic names → value, e.g. the retained messages. Query with a topic filter to find every
/// stored name it matches.
///
/// Names are not stored whole: [`NameTrie::for_each_match`] rebuilds them from the levels,
/// so each level costs one small string per node. Keep large values behind a `Box`/`Arc`,
/// since intermediate nodes hold an `Option<V>`.
pub struct NameTrie<V> {
    root: NameNode<V>,
    /// Number of stored names.
    len: usize,
}

impl<V> NameTrie<V> {
    /// An empty trie.
    pub const fn new() -> Self {
        NameTrie {
            root: NameNode::new(),
            len: 0,
        }
    }

    /// Number of stored names.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no name is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` under the topic name `name`; returns the value it replaces, if any.
    pub fn insert(&mut self, name: &str, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in name.split('/') {
            node = node
                .children
                .get_or_insert_with(level, || level.into(), NameNode::new);
        }
        let previous = node.value.replace(value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Removes the value stored under `name`; nodes left empty are freed.
    pub fn remove(&mut self, name: &str) -> Option<V> {
        let value = self.root.descend_mut(name.split('/'))?.value.take()?;
        self.len -= 1;
        self.prune(name);
        Some(value)
    }

    /// Cuts off the chain of nodes at the end of `name` that no longer hold anything.
    fn prune(&mut self, name: &str) {
        let path: Vec<&str> = name.split('/').collect();
        let mut keep = 0;
        let mut node = &self.root;
        for (depth, &level) in path.iter().enumerate() {
            if depth > 0 && (node.value.is_some() || node.children.len() > 1) {
                keep = depth;
            }
            match node.children.get(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if !node.is_empty() {
            return;
        }
        let Some(&cut) = path.get(keep) else {
            return;
        };
        let removed = self
            .root
            .descend_mut(path[..keep].iter().copied())
            .and_then(|parent| parent.children.remove(cut));
        if let Some(removed) = removed {
            removed.dismantle();
        }
    }

    /// The value stored under `name`.
    pub fn get(&self, name: &str) -> Option<&V> {
        self.root.descend(name.split('/'))?.value.as_ref()
    }

    /// The value stored under `name`, mutable.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        self.root.descend_mut(name.split('/'))?.value.as_mut()
    }

    /// Calls `f(name, value)` for every stored name that `filter` matches, in no particular
    /// order. A filter whose first level is `+` or `#` skips names starting with `$`.
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(&str, &V)) {
        if !is_wildcard(filter) {
            if let Some(value) = self.get(filter) {
                f(filter, value);
            }
            return;
        }
        let (first, _) = split_level(filter);
        let skip_dollar = first == "+" || first == "#";
        self.walk(Want::Levels(filter), skip_dollar, &mut f);
    }

    /// Calls `f(name, value)` for every stored name, in no particular order.
    pub fn for_each(&self, mut f: impl FnMut(&str, &V)) {
        self.walk(Want::All, false, &mut f);
    }

    /// Depth-first walk with an explicit stack, rebuilding each visited name in one buffer.
    fn walk<'a>(&'a self, start: Want<'a>, skip_dollar: bool, f: &mut impl FnMut(&str, &V)) {
        let mut name = String::new();
        let mut stack = vec![Frame {
            node: &self.root,
            depth: 0,
            parent_len: 0,
            label: "",
            want: start,
        }];
        while let Some(frame) = stack.pop() {
            name.truncate(frame.parent_len);
            if frame.depth > 1 {
                name.push('/');
            }
            name.push_str(frame.label);
            let node = frame.node;
            let len = name.len();
            // [MQTT-4.7.2-1]: a leading wildcard does not match a `$` name.
            let skip = |label: &str| frame.depth == 0 && skip_dollar && label.starts_with('$');
            let push_children = |stack: &mut Vec<Frame<'a, V>>, want: Want<'a>| {
                for (label, child) in node.children.iter() {
                    if !skip(label) {
                        stack.push(Frame {
                            node: child,
                            depth: frame.depth + 1,
                            parent_len: len,
                            label,
                            want,
                        });
                    }
                }
            };
            match frame.want {
                Want::End => {
                    if let Some(value) = &node.value {
                        f(&name, value);
                    }
                }
                Want::All => {
                    if let Some(value) = &node.value {
                        f(&name, value);
                    }
                    push_children(&mut stack, Want::All);
                }
                Want::Levels(rest) => {
                    let (level, tail) = split_level(rest);
                    let want = tail.map_or(Want::End, Want::Levels);
                    match level {
                        "#" => {
                            // `a/#` also matches `a` itself.
                            if let Some(value) = &node.value {
                                f(&name, value);
                            }
                            push_children(&mut stack, Want::All);
                        }
                        "+" => push_children(&mut stack, want),
                        _ => {
                            // A literal first level never meets the `$` rule.
                            if let Some(child) = node.children.get(level) {
                                stack.push(Frame {
                                    node: child,
                                    depth: frame.depth + 1,
                                    parent_len: len,
                                    label: level,
                                    want,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
}

impl<V> Default for NameTrie<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Drop for NameTrie<V> {
    fn drop(&mut self) {
        std::mem::replace(&mut self.root, NameNode::new()).dismantle();
    }
}

impl<V: Clone> Clone for NameTrie<V> {
    fn clone(&self) -> Self {
        let mut copy = Self::new();
        self.for_each(|name, value| {
            copy.insert(name, value.clone());
        });
        copy
    }
}

impl<V> fmt::Debug for NameTrie<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameTrie")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// (filter, name, expected) — each row is checked against `matches`, a one-entry
    /// `FilterTrie` and a one-entry `NameTrie`.
    const TABLE: &[(&str, &str, bool)] = &[
        // `#` matches everything except `$` names.
        ("#", "a", true),
        ("#", "a/b/c", true),
        ("#", "/a", true),
        ("#", "/", true),
        ("#", "$SYS/x", false),
        ("#", "$SYS", false),
        // `$SYS/#` matches `$SYS` topics, including the parent level.
        ("$SYS/#", "$SYS/x", true),
        ("$SYS/#", "$SYS", true),
        ("$SYS/#", "$SYS/x/y", true),
        ("$SYS/#", "SYS/x", false),
        ("$SYS/+", "$SYS/x", true),
        ("$SYS", "$SYS", true),
        // A leading `+` does not match `$` names either; a later one does.
        ("+/x", "$SYS/x", false),
        ("+", "$SYS", false),
        ("+/#", "$SYS/x", false),
        ("+/x", "a/x", true),
        ("a/+", "a/$b", true),
        // The spec's sport/tennis examples.
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/tennis/player1/#", "sport/tennis", false),
        ("sport/tennis/player1/#", "sport/tennis/player2", false),
        ("sport/#", "sport", true),
        ("sport/+", "sport/tennis/player1", false),
        ("sport/+", "sport/", true),
        ("sport/+", "sport", false),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player1/tournament", false),
        // `+` is exactly one level, possibly empty.
        ("+", "a", true),
        ("+", "a/b", false),
        ("+", "/a", false),
        ("+/+", "/a", true),
        ("+/+", "a", false),
        ("/+", "/finance", true),
        ("/+", "finance", false),
        ("+/#", "a", true),
        ("+/#", "a/b/c", true),
        ("a/+/c", "a//c", true),
        ("a/+/c", "a/b/c", true),
        ("a/+/c", "a/b/d", false),
        ("a/+/c", "a/c", false),
        ("a/+/c", "a/b/c/d", false),
        ("a/b/#", "a/b/", true),
        ("/#", "/", true),
        ("/#", "a", false),
        // Exact matches.
        ("a/b", "a/b", true),
        ("a/b", "a/b/c", false),
        ("a/b", "a", false),
        ("a/b/c", "a/b", false),
        ("a//c", "a//c", true),
        ("/", "/", true),
        ("//", "/", false),
        ("a/#", "ab", false),
        ("a/+", "ab", false),
        // Case sensitive.
        ("A/b", "a/b", false),
        ("a/B", "a/b", false),
        ("ACCOUNTS", "accounts", false),
        ("ACCOUNTS", "ACCOUNTS", true),
    ];

    #[test]
    fn matching_table() {
        for &(filter, name, expected) in TABLE {
            assert_eq!(validate_topic_filter(filter, 1000, 100), Ok(()), "{filter}");
            assert_eq!(validate_topic_name(name, 1000, 100), Ok(()), "{name}");
            assert_eq!(
                matches(filter, name),
                expected,
                "matches({filter:?}, {name:?})"
            );

            let mut filters = FilterTrie::new();
            filters.insert(filter, 1u8, ());
            assert_eq!(
                filters.has_match(name),
                expected,
                "has_match {filter:?} {name:?}"
            );
            let mut found = Vec::new();
            filters.for_each_match(name, |f, k, _| found.push((f.to_owned(), *k)));
            let want = if expected {
                vec![(filter.to_owned(), 1u8)]
            } else {
                vec![]
            };
            assert_eq!(found, want, "FilterTrie {filter:?} {name:?}");

            let mut names = NameTrie::new();
            names.insert(name, 7u32);
            let mut found = Vec::new();
            names.for_each_match(filter, |n, v| found.push((n.to_owned(), *v)));
            let want = if expected {
                vec![(name.to_owned(), 7u32)]
            } else {
                vec![]
            };
            assert_eq!(found, want, "NameTrie {filter:?} {name:?}");
        }
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn nodes_are_small() {
        // A node is its children (a `Vec`-sized map) plus three pointers.
        assert_eq!(
            std::mem::size_of::<SmallMap<Box<str>, FilterNode<u32, u8>>>(),
            24
        );
        assert_eq!(std::mem::size_of::<FilterNode<u32, u8>>(), 48);
        assert_eq!(std::mem::size_of::<NameNode<std::sync::Arc<u8>>>(), 32);
    }

    #[test]
    fn is_wildcard_detects_plus_and_hash() {
        assert!(is_wildcard("a/+"));
        assert!(is_wildcard("#"));
        assert!(is_wildcard("a/#"));
        assert!(!is_wildcard("a/b"));
        assert!(!is_wildcard("$SYS/x"));
    }

    #[test]
    fn filter_validation() {
        use TopicError::*;
        let cases: &[(&str, Result<(), TopicError>)] = &[
            ("#", Ok(())),
            ("+", Ok(())),
            ("+/+", Ok(())),
            ("/", Ok(())),
            ("a//b", Ok(())),
            ("/+", Ok(())),
            ("$SYS/#", Ok(())),
            ("a/+/c/#", Ok(())),
            ("sport/tennis/#", Ok(())),
            ("a/#/b", Err(InvalidWildcard)),
            ("#/", Err(InvalidWildcard)),
            ("a#", Err(InvalidWildcard)),
            ("a/b#", Err(InvalidWildcard)),
            ("a+/b", Err(InvalidWildcard)),
            ("+a", Err(InvalidWildcard)),
            ("a/++", Err(InvalidWildcard)),
            ("+#", Err(InvalidWildcard)),
            ("", Err(Empty)),
            ("a\0b", Err(NullCharacter)),
            ("abcdefghijklmnopqrstu", Err(TooLong { len: 21, max: 20 })),
            ("a/b/c/d/e", Err(TooManyLevels { levels: 5, max: 4 })),
            ("+/+/+/+/#", Err(TooManyLevels { levels: 5, max: 4 })),
        ];
        for (filter, expected) in cases {
            assert_eq!(
                &validate_topic_filter(filter, 20, 4),
                expected,
                "{filter:?}"
            );
        }
    }

    #[test]
    fn name_validation() {
        use TopicError::*;
        let cases: &[(&str, Result<(), TopicError>)] = &[
            ("a", Ok(())),
            ("/", Ok(())),
            ("a//b", Ok(())),
            ("$SYS/x", Ok(())),
            (" ", Ok(())),
            ("çé/ü", Ok(())),
            ("", Err(Empty)),
            ("a/+", Err(WildcardInName)),
            ("a/#", Err(WildcardInName)),
            ("a#b", Err(WildcardInName)),
            ("+", Err(WildcardInName)),
            ("a\0", Err(NullCharacter)),
            ("a/b/c/d", Err(TooManyLevels { levels: 4, max: 3 })),
        ];
        for (name, expected) in cases {
            assert_eq!(&validate_topic_name(name, 10, 3), expected, "{name:?}");
        }
        // Length is counted in UTF-8 bytes: "üüü" is 6 bytes.
        assert_eq!(validate_topic_name("üüü", 6, 3), Ok(()));
        assert_eq!(
            validate_topic_name("üüü", 5, 3),
            Err(TooLong { len: 6, max: 5 })
        );
        assert_eq!(
            validate_topic_filter("a", 0, 3),
            Err(TooLong { len: 1, max: 0 })
        );
    }

    #[test]
    fn errors_cite_the_spec() {
        let cases = [
            (TopicError::Empty, "[MQTT-4.7.3-1]"),
            (TopicError::TooLong { len: 9, max: 8 }, "[MQTT-4.7.3-3]"),
            (
                TopicError::TooManyLevels { levels: 9, max: 8 },
                "max_topic_levels",
            ),
            (TopicError::WildcardInName, "[MQTT-4.7.1-1]"),
            (TopicError::InvalidWildcard, "[MQTT-4.7.1-2]"),
            (TopicError::NullCharacter, "[MQTT-4.7.3-2]"),
        ];
        for (error, clause) in cases {
            assert!(error.to_string().contains(clause), "{error}");
        }
        assert!(TopicError::TooLong { len: 9, max: 8 }
            .to_string()
            .contains("9 bytes"));
    }

    /// Number of nodes in a filter trie, root included.
    fn filter_nodes<K, V>(trie: &FilterTrie<K, V>) -> usize {
        let mut count = 0;
        let mut stack = vec![&trie.root];
        while let Some(node) = stack.pop() {
            count += 1;
            stack.extend(node.children.iter().map(|(_, c)| c));
            stack.extend(node.plus.as_deref());
        }
        count
    }

    /// Number of nodes in a name trie, root included.
    fn name_nodes<V>(trie: &NameTrie<V>) -> usize {
        let mut count = 0;
        let mut stack = vec![&trie.root];
        while let Some(node) = stack.pop() {
            count += 1;
            stack.extend(node.children.iter().map(|(_, c)| c));
        }
        count
    }

    fn matched<K: Eq + Hash + Copy + Ord, V: Copy + Ord>(
        trie: &FilterTrie<K, V>,
        name: &str,
    ) -> BTreeSet<(String, K, V)> {
        let mut out = BTreeSet::new();
        trie.for_each_match(name, |f, k, v| {
            assert!(out.insert((f.to_owned(), *k, *v)), "reported twice: {f}");
        });
        out
    }

    #[test]
    fn filter_trie_insert_get_remove_prune() {
        let mut trie = FilterTrie::new();
        assert!(trie.is_empty());
        assert_eq!(trie.insert("a/b/c", "c1", 0), None);
        assert_eq!(trie.insert("a/b/c", "c1", 1), Some(0));
        assert_eq!(trie.len(), 1);
        assert_eq!(trie.get("a/b/c", &"c1"), Some(&1));
        assert_eq!(trie.get("a/b", &"c1"), None);
        assert_eq!(trie.get("a/b/c", &"c2"), None);
        if let Some(v) = trie.get_mut("a/b/c", &"c1") {
            *v = 2;
        }
        assert_eq!(trie.get("a/b/c", &"c1"), Some(&2));
        assert_eq!(filter_nodes(&trie), 4);

        trie.insert("a/b", "c1", 0);
        trie.insert("a/+/#", "c1", 0);
        assert_eq!(trie.len(), 3);
        assert_eq!(trie.remove("a/b/c", &"c2"), None);
        assert_eq!(trie.remove("a/b/x", &"c1"), None);
        assert_eq!(trie.remove("a/b/c", &"c1"), Some(2));
        assert_eq!(trie.remove("a/b/c", &"c1"), None);
        assert_eq!(trie.len(), 2);
        // root, a, a/b, a/+ remain; a/b/c is pruned.
        assert_eq!(filter_nodes(&trie), 4);
        assert!(!trie.has_match("a/b/c/d") || matches("a/+/#", "a/b/c/d"));
        assert_eq!(trie.remove("a/+/#", &"c1"), Some(0));
        assert_eq!(filter_nodes(&trie), 3);
        assert!(!trie.has_match("a/b/c"));
        assert!(trie.has_match("a/b"));
        assert_eq!(trie.remove("a/b", &"c1"), Some(0));
        assert!(trie.is_empty());
        assert_eq!(filter_nodes(&trie), 1);
        assert!(trie.root.is_empty());
        assert!(!trie.has_match("a/b"));

        // `#` lives at the root; removing it leaves nothing behind.
        trie.insert("#", "c1", 5);
        assert!(trie.has_match("x"));
        assert_eq!(trie.remove("#", &"c1"), Some(5));
        assert!(trie.root.is_empty());
    }

    #[test]
    fn filter_trie_multiple_keys_per_filter() {
        let mut trie = FilterTrie::new();
        for client in 0..20u32 {
            trie.insert("a/+", client, client % 3);
        }
        assert_eq!(trie.len(), 20);
        let found = matched(&trie, "a/x");
        let want: BTreeSet<_> = (0..20u32).map(|c| ("a/+".to_owned(), c, c % 3)).collect();
        assert_eq!(found, want);
        let mut keys = BTreeSet::new();
        trie.for_each_key("a/+", |k, _| {
            keys.insert(*k);
        });
        assert_eq!(keys.len(), 20);
        for client in 0..19u32 {
            assert_eq!(trie.remove("a/+", &client), Some(client % 3));
        }
        assert_eq!(
            matched(&trie, "a/x"),
            BTreeSet::from([("a/+".to_owned(), 19, 1)])
        );
        assert_eq!(filter_nodes(&trie), 3);
    }

    #[test]
    fn filter_trie_reports_all_overlapping_filters() {
        let mut trie = FilterTrie::new();
        let filters = [
            "#", "a/#", "a/+", "a/b", "+/b", "+/+", "a/b/#", "+/#", "+/b/#", "b/#", "a/c", "a/b/c",
            "+", "$SYS/#",
        ];
        for (i, filter) in filters.iter().enumerate() {
            trie.insert(filter, 1u8, i);
        }
        let want: BTreeSet<_> = filters
            .iter()
            .enumerate()
            .filter(|(_, f)| matches(f, "a/b"))
            .map(|(i, f)| (f.to_string(), 1u8, i))
            .collect();
        assert_eq!(want.len(), 9);
        assert_eq!(matched(&trie, "a/b"), want);
        assert_eq!(
            matched(&trie, "$SYS/b"),
            BTreeSet::from([("$SYS/#".to_owned(), 1, 13)])
        );
    }

    #[test]
    fn many_children_switch_to_a_map_and_back() {
        let mut trie = FilterTrie::new();
        let mut names = NameTrie::new();
        for i in 0..100 {
            trie.insert(&format!("x/{i}"), 0u8, i);
            names.insert(&format!("x/{i}"), i);
        }
        for i in 0..100 {
            assert_eq!(
                matched(&trie, &format!("x/{i}")),
                BTreeSet::from([(format!("x/{i}"), 0, i)])
            );
            assert_eq!(names.get(&format!("x/{i}")), Some(&i));
        }
        let mut count = 0;
        names.for_each_match("x/+", |_, _| count += 1);
        assert_eq!(count, 100);
        for i in 0..97 {
            assert_eq!(trie.remove(&format!("x/{i}"), &0), Some(i));
            assert_eq!(names.remove(&format!("x/{i}")), Some(i));
        }
        assert!(matches!(
            trie.root.children.get("x").map(|x| &x.children),
            Some(SmallMap::Small(_))
        ));
        for i in 97..100 {
            assert!(trie.has_match(&format!("x/{i}")));
            assert_eq!(names.get(&format!("x/{i}")), Some(&i));
        }
        assert!(!trie.has_match("x/5"));
        assert_eq!(names.get("x/5"), None);
    }

    #[test]
    fn name_trie_insert_get_remove_prune() {
        let mut trie = NameTrie::new();
        assert_eq!(trie.insert("a/b/c", 1), None);
        assert_eq!(trie.insert("a/b/c", 2), Some(1));
        assert_eq!(trie.insert("a", 3), None);
        assert_eq!(trie.insert("/x", 4), None);
        assert_eq!(trie.len(), 3);
        assert_eq!(trie.get("a/b/c"), Some(&2));
        assert_eq!(trie.get("a/b"), None);
        if let Some(v) = trie.get_mut("a") {
            *v = 5;
        }
        let mut all = BTreeMap::new();
        trie.for_each(|n, v| {
            all.insert(n.to_owned(), *v);
        });
        assert_eq!(
            all,
            BTreeMap::from([
                ("a/b/c".to_owned(), 2),
                ("a".to_owned(), 5),
                ("/x".to_owned(), 4)
            ])
        );
        assert_eq!(trie.remove("a/b"), None);
        assert_eq!(trie.remove("a/b/c"), Some(2));
        assert_eq!(trie.remove("a/b/c"), None);
        // root, a, "", "/x" remain.
        assert_eq!(name_nodes(&trie), 4);
        assert_eq!(trie.remove("a"), Some(5));
        assert_eq!(trie.remove("/x"), Some(4));
        assert!(trie.is_empty());
        assert_eq!(name_nodes(&trie), 1);
    }

    #[test]
    fn name_trie_reports_reconstructed_names() {
        let mut trie = NameTrie::new();
        let stored = [
            "a", "a/b", "a/b/c", "/", "/a", "a//b", "$SYS/x", "$SYS", "b/a",
        ];
        for (i, name) in stored.iter().enumerate() {
            trie.insert(name, i);
        }
        for filter in [
            "#", "a/#", "+", "+/+", "+/#", "$SYS/#", "a/+/+", "/#", "a/b", "+/a",
        ] {
            let mut got = BTreeSet::new();
            trie.for_each_match(filter, |n, v| {
                assert_eq!(stored[*v], n);
                assert!(got.insert(n.to_owned()), "reported twice: {n}");
            });
            let want: BTreeSet<_> = stored
                .iter()
                .filter(|n| matches(filter, n))
                .map(|n| n.to_string())
                .collect();
            assert_eq!(got, want, "{filter}");
        }
    }

    #[test]
    fn clones_are_independent_and_equal() {
        let mut trie = FilterTrie::new();
        trie.insert("a/+", 1u8, 1u8);
        trie.insert("#", 2, 2);
        let mut copy = trie.clone();
        assert_eq!(matched(&copy, "a/b"), matched(&trie, "a/b"));
        copy.remove("#", &2);
        assert_eq!(trie.len(), 2);
        assert_eq!(copy.len(), 1);

        let mut names = NameTrie::new();
        names.insert("a/b", 1);
        names.insert("$x", 2);
        let copy = names.clone();
        names.remove("a/b");
        assert_eq!(copy.get("a/b"), Some(&1));
        assert_eq!(copy.get("$x"), Some(&2));
        assert_eq!(copy.len(), 2);
    }

    /// 100 000 levels on a 256 KiB stack: insert, match, remove and drop must not recurse.
    #[test]
    fn deep_topics_do_not_overflow_the_stack() {
        let worker = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let deep = vec!["a"; 100_000].join("/");
                let deep_filter = format!("{deep}/#");
                let plus_filter = vec!["+"; 100_000].join("/");

                let mut trie = FilterTrie::new();
                trie.insert(&deep, 1u8, ());
                trie.insert(&deep_filter, 2, ());
                trie.insert(&plus_filter, 3, ());
                assert!(matches(&plus_filter, &deep));
                assert_eq!(matched(&trie, &deep).len(), 3);
                assert!(trie.has_match(&format!("{deep}/b")));
                assert_eq!(trie.remove(&deep, &1), Some(()));
                assert_eq!(trie.remove(&plus_filter, &3), Some(()));
                assert_eq!(matched(&trie, &deep).len(), 1);
                assert_eq!(trie.remove(&deep_filter, &2), Some(()));
                assert_eq!(filter_nodes(&trie), 1);
                trie.insert(&deep, 1, ());
                trie.insert(&plus_filter, 1, ());
                drop(trie);

                let mut names = NameTrie::new();
                names.insert(&deep, 1);
                let mut count = 0;
                names.for_each_match("#", |n, _| {
                    assert_eq!(n, deep);
                    count += 1;
                });
                names.for_each_match(&plus_filter, |_, _| count += 1);
                assert_eq!(count, 2);
                assert_eq!(names.clone().len(), 1);
                assert_eq!(names.remove(&deep), Some(1));
                assert_eq!(name_nodes(&names), 1);
                names.insert(&deep, 1);
                drop(names);
            })
            .expect("spawn");
        assert!(
            worker.join().is_ok(),
            "deep topic test failed or overflowed"
        );
    }

    /// Independent reference matcher, recursive over level slices (small inputs only).
    fn reference_matches(filter: &str, name: &str) -> bool {
        fn go(f: &[&str], n: &[&str]) -> bool {
            match (f.first(), n.first()) {
                (Some(&"#"), _) => true,
                (Some(&"+"), Some(_)) => go(&f[1..], &n[1..]),
                (Some(a), Some(b)) => a == b && go(&f[1..], &n[1..]),
                (None, None) => true,
                _ => false,
            }
        }
        let f: Vec<&str> = filter.split('/').collect();
        let n: Vec<&str> = name.split('/').collect();
        if name.starts_with('$') && (f[0] == "+" || f[0] == "#") {
            return false;
        }
        go(&f, &n)
    }

    fn topic(alphabet: &'static [char]) -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(alphabet), 1..8)
            .prop_map(|chars| chars.into_iter().collect())
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        topic(&['a', 'b', '$', '/', '+', '#'])
            .prop_filter("valid filter", |f| validate_topic_filter(f, 64, 64).is_ok())
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        topic(&['a', 'b', '$', '/'])
            .prop_filter("valid name", |n| validate_topic_name(n, 64, 64).is_ok())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_agrees_with_reference(filter in filter_strategy(), name in name_strategy()) {
            prop_assert_eq!(matches(&filter, &name), reference_matches(&filter, &name));
        }

        #[test]
        fn filter_trie_agrees_with_matches(
            entries in prop::collection::vec((filter_strategy(), 0u8..3), 0..24),
            names in prop::collection::vec(name_strategy(), 1..16),
            removals in prop::collection::vec(any::<bool>(), 24),
        ) {
            let mut trie = FilterTrie::new();
            let mut model: BTreeMap<(String, u8), usize> = BTreeMap::new();
            for (i, (filter, key)) in entries.iter().enumerate() {
                prop_assert_eq!(trie.insert(filter, *key, i), model.insert((filter.clone(), *key), i));
            }
            let check = |trie: &FilterTrie<u8, usize>, model: &BTreeMap<(String, u8), usize>| {
                assert_eq!(trie.len(), model.len());
                for name in &names {
                    let want: BTreeSet<_> = model
                        .iter()
                        .filter(|((f, _), _)| matches(f, name))
                        .map(|((f, k), v)| (f.clone(), *k, *v))
                        .collect();
                    assert_eq!(matched(trie, name), want, "name {:?}", name);
                    assert_eq!(trie.has_match(name), !want.is_empty(), "has_match {:?}", name);
                }
                for ((f, k), v) in model {
                    assert_eq!(trie.get(f, k), Some(v));
                }
            };
            check(&trie, &model);
            check(&trie.clone(), &model);

            for ((filter, key), remove) in entries.iter().zip(&removals) {
                if *remove {
                    prop_assert_eq!(trie.remove(filter, key), model.remove(&(filter.clone(), *key)));
                }
            }
            check(&trie, &model);

            for (filter, key) in &entries {
                prop_assert_eq!(trie.remove(filter, key), model.remove(&(filter.clone(), *key)));
            }
            prop_assert!(trie.is_empty());
            prop_assert_eq!(filter_nodes(&trie), 1);
        }

        #[test]
        fn name_trie_agrees_with_matches(
            stored in prop::collection::vec(name_strategy(), 0..24),
            filters in prop::collection::vec(filter_strategy(), 1..16),
            removals in prop::collection::vec(any::<bool>(), 24),
        ) {
            let mut trie = NameTrie::new();
            let mut model: BTreeMap<String, usize> = BTreeMap::new();
            for (i, name) in stored.iter().enumerate() {
                prop_assert_eq!(trie.insert(name, i), model.insert(name.clone(), i));
            }
            let check = |trie: &NameTrie<usize>, model: &BTreeMap<String, usize>| {
                assert_eq!(trie.len(), model.len());
                for filter in &filters {
                    let want: BTreeSet<_> = model
                        .iter()
                        .filter(|(n, _)| matches(filter, n))
                        .map(|(n, v)| (n.clone(), *v))
                        .collect();
                    let mut got = BTreeSet::new();
                    trie.for_each_match(filter, |n, v| {
                        assert!(got.insert((n.to_owned(), *v)), "reported twice: {:?}", n);
                    });
                    assert_eq!(got, want, "filter {:?}", filter);
                }
                for (n, v) in model {
                    assert_eq!(trie.get(n), Some(v));
                }
            };
            check(&trie, &model);
            check(&trie.clone(), &model);

            for (name, remove) in stored.iter().zip(&removals) {
                if *remove {
                    prop_assert_eq!(trie.remove(name), model.remove(name));
                }
            }
            check(&trie, &model);

            for name in &stored {
                prop_assert_eq!(trie.remove(name), model.remove(name));
            }
            prop_assert!(trie.is_empty());
            prop_assert_eq!(name_nodes(&trie), 1);
        }
    }
}
