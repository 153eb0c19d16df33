//! Interned strings: configuration text that every request would otherwise share through a
//! reference count (a write to one cache line from every thread), made `'static` once.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};

/// How many distinct strings a process interns; past that, callers keep their own copy.
const MAX_INTERNED: usize = 512;

static INTERNED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// `text` as a `'static` string, or `None` once [`MAX_INTERNED`] distinct strings are held.
/// For configuration only (set in code, never by a request): each distinct string is kept
/// for the life of the process.
pub(crate) fn intern(text: &str) -> Option<&'static str> {
    let mut interned = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = interned.iter().find(|known| **known == text) {
        return Some(known);
    }
    if interned.len() >= MAX_INTERNED {
        return None;
    }
    let text: &'static str = Box::leak(text.into());
    interned.push(text);
    Some(text)
}

/// Configuration text: interned when the table has room, else shared through an `Arc`.
#[derive(Clone)]
pub(crate) enum Text {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Text {
    pub(crate) fn new(text: &str) -> Self {
        intern(text).map_or_else(|| Self::Shared(Arc::from(text)), Self::Static)
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Shared(s) => s,
        }
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
pub(crate) fn interned_len() -> usize {
    INTERNED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_str_up_to_a_bound() {
        let a = intern("intern-test").unwrap();
        assert!(std::ptr::eq(a, intern("intern-test").unwrap()));
        for i in 0..MAX_INTERNED + 10 {
            let text = format!("intern-test-{i}");
            if let Some(s) = intern(&text) {
                assert_eq!(s, text);
            }
        }
        assert_eq!(interned_len(), MAX_INTERNED);
        // Known text is still found when the table is full.
        assert!(std::ptr::eq(a, intern("intern-test").unwrap()));
        assert_eq!(intern("intern-test-new"), None);
    }
}
