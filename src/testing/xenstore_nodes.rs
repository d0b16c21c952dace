//! The node tree of the in-memory xenstore: nodes by path in a hash table
//! (FNV-1a hashes, chained buckets), each node holding the names of its
//! children in byte order. Finding a node costs one hash and one string
//! comparison, listing a directory reads one node, and removing a subtree
//! follows the children: no scan over every path.
#![forbid(unsafe_code)]

use crate::xen::xenstore::wire::Perm;
use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// One node.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its value.
    pub value: Vec<u8>,
    /// Its permissions, owner first.
    pub perms: Vec<Perm>,
    /// The names of its children.
    children: BTreeSet<String>,
}

/// The parent of `path` (`/` for a top-level node), none for `/` and for
/// a relative path without a `/`.
fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) if path.len() > 1 => Some("/"),
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

/// The name of `path` inside `parent`.
fn name<'a>(path: &'a str, parent: &str) -> &'a str {
    if parent == "/" { &path[1..] } else { &path[parent.len() + 1..] }
}

/// `path`'s child `name`.
fn child(path: &str, name: &str) -> String {
    if path == "/" { alloc::format!("/{name}") } else { alloc::format!("{path}/{name}") }
}

fn fnv1a(path: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in path.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Every node, by path.
#[derive(Debug, Clone)]
pub struct Nodes {
    buckets: Vec<Vec<(u64, String, Node)>>,
    len: usize,
}

impl Default for Nodes {
    fn default() -> Self {
        Self { buckets: alloc::vec![Vec::new(); 64], len: 0 }
    }
}

impl Nodes {
    fn bucket(&self, hash: u64) -> usize {
        (hash as usize) & (self.buckets.len() - 1)
    }

    /// The bucket of `path` and its place there.
    fn find(&self, path: &str) -> (usize, Option<usize>) {
        let hash = fnv1a(path);
        let b = self.bucket(hash);
        (b, self.buckets[b].iter().position(|(h, p, _)| *h == hash && p == path))
    }

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        let (b, i) = self.find(path);
        i.map(|i| &self.buckets[b][i].2)
    }

    /// The node at `path`, to change.
    pub fn get_mut(&mut self, path: &str) -> Option<&mut Node> {
        let (b, i) = self.find(path);
        i.map(|i| &mut self.buckets[b][i].2)
    }

    /// The names of the children of `path`, in byte order.
    pub fn children(&self, path: &str) -> impl Iterator<Item = &str> {
        self.get(path).into_iter().flat_map(|n| n.children.iter().map(String::as_str))
    }

    /// Sets `path`'s value and permissions (its children stay), creating
    /// it and its missing ancestors, these empty and with `perms`.
    pub fn set(&mut self, path: &str, value: &[u8], perms: Vec<Perm>) {
        if let Some(n) = self.get_mut(path) {
            n.value.clear();
            n.value.extend_from_slice(value);
            n.perms = perms;
            return;
        }
        // A node's ancestors exist, so the walk up stops at the first one
        // found.
        let mut at = path;
        while let Some(up) = parent(at) {
            let found = match self.get_mut(up) {
                Some(n) => {
                    n.children.insert(name(at, up).to_string());
                    true
                }
                None => false,
            };
            if found {
                break;
            }
            let mut n = Node { value: Vec::new(), perms: perms.clone(), children: BTreeSet::new() };
            n.children.insert(name(at, up).to_string());
            self.insert(up, n);
            at = up;
        }
        self.insert(path, Node { value: value.to_vec(), perms, children: BTreeSet::new() });
    }

    fn insert(&mut self, path: &str, node: Node) {
        if self.len >= self.buckets.len() * 2 {
            self.grow();
        }
        let hash = fnv1a(path);
        let b = self.bucket(hash);
        self.buckets[b].push((hash, path.to_string(), node));
        self.len += 1;
    }

    fn grow(&mut self) {
        let wider = alloc::vec![Vec::new(); self.buckets.len() * 2];
        let old = core::mem::replace(&mut self.buckets, wider);
        for (hash, path, node) in old.into_iter().flatten() {
            let b = self.bucket(hash);
            self.buckets[b].push((hash, path, node));
        }
    }

    /// Removes `path` and everything below it.
    pub fn remove(&mut self, path: &str) {
        if let Some(up) = parent(path)
            && let Some(n) = self.get_mut(up)
        {
            n.children.remove(name(path, up));
        }
        let mut doomed = alloc::vec![path.to_string()];
        while let Some(p) = doomed.pop() {
            let (b, Some(i)) = self.find(&p) else { continue };
            let (_, _, node) = self.buckets[b].swap_remove(i);
            self.len -= 1;
            doomed.extend(node.children.iter().map(|c| child(&p, c)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::xenstore::wire::PermKind;

    fn perms() -> Vec<Perm> {
        alloc::vec![Perm { kind: PermKind::None, domid: 0 }]
    }

    fn list(n: &Nodes, path: &str) -> Vec<String> {
        n.children(path).map(String::from).collect()
    }

    #[test]
    fn set_creates_ancestors_and_lists_children_in_order() {
        let mut n = Nodes::default();
        n.set("/a/b/c", b"1", perms());
        n.set("/a/b/a", b"2", perms());
        n.set("/a/x", b"3", perms());
        assert_eq!(list(&n, "/"), ["a"]);
        assert_eq!(list(&n, "/a"), ["b", "x"]);
        assert_eq!(list(&n, "/a/b"), ["a", "c"]);
        assert_eq!(n.get("/a/b").map(|x| x.value.clone()), Some(Vec::new()));
        assert_eq!(n.get("/a/b/c").map(|x| x.value.clone()), Some(b"1".to_vec()));
    }

    #[test]
    fn set_keeps_children_and_replaces_value() {
        let mut n = Nodes::default();
        n.set("/a/b", b"1", perms());
        n.set("/a", b"top", perms());
        assert_eq!(list(&n, "/a"), ["b"]);
        assert_eq!(n.get("/a").map(|x| x.value.clone()), Some(b"top".to_vec()));
    }

    #[test]
    fn remove_takes_the_subtree_and_leaves_siblings() {
        let mut n = Nodes::default();
        for p in ["/a/b/c", "/a/b/d/e", "/a/b-x", "/a/bb"] {
            n.set(p, b"v", perms());
        }
        n.remove("/a/b");
        for p in ["/a/b", "/a/b/c", "/a/b/d", "/a/b/d/e"] {
            assert!(n.get(p).is_none(), "{p} left");
        }
        assert_eq!(list(&n, "/a"), ["b-x", "bb"]);
        n.set("/a/b/c", b"again", perms());
        assert_eq!(list(&n, "/a/b"), ["c"]);
        assert!(n.get("/a/b/d").is_none());
    }

    #[test]
    fn many_nodes_survive_growth() {
        let mut n = Nodes::default();
        for i in 0..1000 {
            n.set(&alloc::format!("/d/{i}/k"), i.to_string().as_bytes(), perms());
        }
        for i in 0..1000 {
            let v = n.get(&alloc::format!("/d/{i}/k")).map(|x| x.value.clone());
            assert_eq!(v, Some(i.to_string().into_bytes()));
        }
        assert_eq!(list(&n, "/d").len(), 1000);
    }

    #[test]
    fn odd_paths_keep_their_shape() {
        let mut n = Nodes::default();
        n.set("/a/", b"slash", perms());
        n.set("/a//x", b"x", perms());
        n.set("rel/y", b"y", perms());
        assert_eq!(list(&n, "/a"), [""]);
        assert_eq!(list(&n, "/a/"), ["x"]);
        assert_eq!(list(&n, "rel"), ["y"]);
        n.remove("/a");
        assert!(n.get("/a//x").is_none());
    }
}
