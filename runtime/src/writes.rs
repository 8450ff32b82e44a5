//! The writes of one group commit, gathered in memory and written to sled as one transaction.
//!
//! Why not a sled transaction per input: each one seals and writes sled's log buffer on its
//! own (twice: before and after it pins the log), so a batch of a hundred inputs cost two
//! hundred log writes before the one flush that made them durable. Here a batch costs one
//! transaction ([`Writes::commit`]) and one flush, whatever its size.
//!
//! [`Writes`] nest. The pipeline opens one for the batch and a child for each input; an input
//! keeps its writes only if it succeeds ([`Writes::keep`]), so a command the books refuse, or an
//! input that is dead-lettered, leaves nothing behind — what a sled transaction's abort gave us
//! before. Reads see, in order, the input's own writes, then the batch's, then the tree: an
//! input sees everything the inputs before it in the batch did.
//!
//! Nothing here is visible to other readers (the HTTP API, the relay) until the commit, and
//! nothing is durable until the flush after it.

use std::cell::RefCell;
use std::collections::BTreeMap;

use sled::IVec;

/// Pending writes to the trees of one database: `None` removes the key.
#[derive(Default)]
pub struct Writes<'parent> {
    parent: Option<&'parent Writes<'parent>>,
    trees: RefCell<Vec<Pending>>,
}

/// The pending writes of one tree.
struct Pending {
    tree: sled::Tree,
    writes: BTreeMap<IVec, Option<IVec>>,
}

impl Writes<'static> {
    /// The writes of a new batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes the batch as one sled transaction: after a crash, all of it is recovered or
    /// none. Not durable until the flush after it ([`Db::make_durable`](crate::db::Db::make_durable)).
    /// Returns how many keys it wrote (inserted or removed) in each tree, by the tree's name:
    /// a key is what sled pays for, whatever its size.
    pub fn commit(self) -> sled::Result<Vec<(String, usize)>> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        use sled::Transactional;
        let pending = self.trees.into_inner();
        if pending.iter().all(|p| p.writes.is_empty()) {
            return Ok(Vec::new());
        }
        let keys = pending
            .iter()
            .map(|p| (String::from_utf8_lossy(&p.tree.name()).into_owned(), p.writes.len()))
            .collect();
        let trees: Vec<sled::Tree> = pending.iter().map(|p| p.tree.clone()).collect();
        trees
            .as_slice()
            .transaction(|views| {
                for (view, p) in views.iter().zip(&pending) {
                    for (key, value) in &p.writes {
                        match value {
                            Some(value) => view.insert(key, value.clone())?,
                            None => view.remove(key)?,
                        };
                    }
                }
                Ok::<_, ConflictableTransactionError<std::convert::Infallible>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => e,
                TransactionError::Abort(never) => match never {},
            })?;
        Ok(keys)
    }
}

impl<'parent> Writes<'parent> {
    /// Writes that land in these only if [`kept`](Self::keep).
    pub fn child(&self) -> Writes<'_> {
        Writes { parent: Some(self), trees: RefCell::default() }
    }

    /// Adds a child's writes to its parent's.
    pub fn keep(self) {
        let parent = self.parent.expect("only a child is kept; a batch is committed");
        let mut into = parent.trees.borrow_mut();
        for pending in self.trees.into_inner() {
            match into.iter_mut().find(|p| p.tree.name() == pending.tree.name()) {
                Some(p) => p.writes.extend(pending.writes),
                None => into.push(pending),
            }
        }
    }

    /// Runs `f` over a child, and keeps its writes only if `f` succeeds.
    pub fn scope<T, E>(&self, f: impl FnOnce(&Writes<'_>) -> Result<T, E>) -> Result<T, E> {
        let child = self.child();
        let result = f(&child);
        if result.is_ok() {
            child.keep();
        }
        result
    }

    /// Takes out the pending writes of `tree`, in key order, to be written back in another
    /// form (the outbox turns a batch's entries into records of several).
    pub fn take(&self, tree: &sled::Tree) -> BTreeMap<IVec, Option<IVec>> {
        let mut trees = self.trees.borrow_mut();
        match trees.iter().position(|p| p.tree.name() == tree.name()) {
            Some(i) => trees.swap_remove(i).writes,
            None => BTreeMap::new(),
        }
    }

    /// True when nothing is written here (a child's parent not counted).
    pub fn is_empty(&self) -> bool {
        self.trees.borrow().iter().all(|p| p.writes.is_empty())
    }

    /// The value of `key` in `tree` as these writes leave it.
    pub fn get(&self, tree: &sled::Tree, key: &[u8]) -> sled::Result<Option<IVec>> {
        if let Some(pending) = self.trees.borrow().iter().find(|p| p.tree.name() == tree.name()) {
            if let Some(value) = pending.writes.get(key) {
                return Ok(value.clone());
            }
        }
        match self.parent {
            Some(parent) => parent.get(tree, key),
            None => tree.get(key),
        }
    }

    pub fn insert(&self, tree: &sled::Tree, key: impl Into<IVec>, value: impl Into<IVec>) {
        self.write(tree, key.into(), Some(value.into()));
    }

    pub fn remove(&self, tree: &sled::Tree, key: impl Into<IVec>) {
        self.write(tree, key.into(), None);
    }

    fn write(&self, tree: &sled::Tree, key: IVec, value: Option<IVec>) {
        let mut trees = self.trees.borrow_mut();
        let index = match trees.iter().position(|p| p.tree.name() == tree.name()) {
            Some(i) => i,
            None => {
                trees.push(Pending { tree: tree.clone(), writes: BTreeMap::new() });
                trees.len() - 1
            }
        };
        trees[index].writes.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[test]
    fn a_child_sees_its_parent_and_lands_only_when_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let tree = db.sled().open_tree("t").unwrap();
        tree.insert("stored", "old").unwrap();
        let batch = Writes::new();
        batch.insert(&tree, "a", "1");

        let kept = batch.child();
        assert_eq!(kept.get(&tree, b"a").unwrap().as_deref(), Some(&b"1"[..]));
        kept.insert(&tree, "b", "2");
        kept.remove(&tree, "stored");
        assert_eq!(kept.get(&tree, b"stored").unwrap(), None);
        kept.keep();

        let refused: Result<(), &str> = batch.scope(|w| {
            w.insert(&tree, "c", "3");
            Err("refused")
        });
        assert!(refused.is_err());
        assert_eq!(batch.get(&tree, b"c").unwrap(), None);
        // Nothing reaches the tree before the commit.
        assert_eq!(tree.get("a").unwrap(), None);
        assert_eq!(tree.get("stored").unwrap().as_deref(), Some(&b"old"[..]));

        batch.commit().unwrap();
        assert_eq!(tree.get("a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(tree.get("b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(tree.get("c").unwrap(), None);
        assert_eq!(tree.get("stored").unwrap(), None);
    }
}
