//! A table of descriptor numbers: the lowest free number on insert (as
//! `open` hands them out), or a number chosen by the caller, and a lookup
//! that costs one atomic load while the table is empty.

use parking_lot::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Numbers above this are refused (`EMFILE`).
pub const MAX_DESCRIPTORS: usize = 1 << 20;

/// Descriptor numbers → shared values.
pub struct Table<T> {
    slots: RwLock<Vec<Option<Arc<T>>>>,
    used: AtomicUsize,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table::new()
    }
}

impl<T> Table<T> {
    /// An empty table.
    pub const fn new() -> Table<T> {
        Table { slots: RwLock::new(Vec::new()), used: AtomicUsize::new(0) }
    }

    /// Stores `v` under the lowest free number; `None` when the table is full.
    pub fn insert(&self, v: Arc<T>) -> Option<i32> {
        let mut slots = self.slots.write();
        let n = match slots.iter().position(Option::is_none) {
            Some(n) => n,
            None if slots.len() < MAX_DESCRIPTORS => {
                slots.push(None);
                slots.len() - 1
            }
            None => return None,
        };
        slots[n] = Some(v);
        self.used.fetch_add(1, Ordering::Release);
        Some(n as i32)
    }

    /// Stores `v` under `n`, returning what was there.
    pub fn insert_at(&self, n: i32, v: Arc<T>) -> Option<Arc<T>> {
        let n = usize::try_from(n).ok().filter(|n| *n < MAX_DESCRIPTORS)?;
        let mut slots = self.slots.write();
        if slots.len() <= n {
            slots.resize_with(n + 1, || None);
        }
        let old = slots[n].replace(v);
        if old.is_none() {
            self.used.fetch_add(1, Ordering::Release);
        }
        old
    }

    /// The value under `n`.
    pub fn get(&self, n: i32) -> Option<Arc<T>> {
        if self.used.load(Ordering::Acquire) == 0 || n < 0 {
            return None;
        }
        self.slots.read().get(n as usize)?.clone()
    }

    /// Removes and returns the value under `n`.
    pub fn remove(&self, n: i32) -> Option<Arc<T>> {
        if n < 0 {
            return None;
        }
        let v = self.slots.write().get_mut(n as usize)?.take();
        if v.is_some() {
            self.used.fetch_sub(1, Ordering::Release);
        }
        v
    }

    /// Removes every value for which `drop_it` is true; returns them.
    pub fn remove_where(&self, mut drop_it: impl FnMut(&T) -> bool) -> Vec<Arc<T>> {
        let mut out = Vec::new();
        let mut slots = self.slots.write();
        for s in slots.iter_mut() {
            if s.as_deref().is_some_and(&mut drop_it) {
                out.extend(s.take());
            }
        }
        self.used.fetch_sub(out.len(), Ordering::Release);
        out
    }

    /// Numbers in use.
    pub fn len(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// True when no number is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_number_first() {
        let t = Table::new();
        assert_eq!(t.insert(Arc::new("a")), Some(0));
        assert_eq!(t.insert(Arc::new("b")), Some(1));
        assert_eq!(t.insert(Arc::new("c")), Some(2));
        assert_eq!(t.remove(1).as_deref(), Some(&"b"));
        assert_eq!(t.get(1), None);
        assert_eq!(t.insert(Arc::new("d")), Some(1));
        assert_eq!(t.insert_at(10, Arc::new("e")), None);
        assert_eq!(t.get(10).as_deref(), Some(&"e"));
        assert_eq!(t.len(), 4);
        assert_eq!(t.remove_where(|v| *v == "a" || *v == "e").len(), 2);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(-1), None);
    }
}
