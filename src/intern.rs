//! Interned configuration: text and small values (scope policies) that every request would
//! otherwise share through a reference count (a write to one cache line from every thread),
//! made `'static` once.

use std::any::Any;
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

/// How many distinct configuration values (scope policies) a process interns; past that,
/// layers share theirs through an `Arc`.
const MAX_INTERNED_VALUES: usize = 256;

static INTERNED_VALUES: Mutex<Vec<&'static (dyn Any + Send + Sync)>> = Mutex::new(Vec::new());

/// `value` as a `'static` reference (an equal value interned before, or `value` itself, kept
/// for the life of the process), or `value` back once [`MAX_INTERNED_VALUES`] are held. For
/// configuration only, like [`intern`]: rebuilding a layer with the same configuration finds
/// the value already interned, so the memory kept is bounded by the distinct configurations.
fn intern_value<T: PartialEq + Send + Sync + 'static>(value: T) -> Result<&'static T, T> {
    let mut interned = INTERNED_VALUES
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let known = interned
        .iter()
        .filter_map(|known| known.downcast_ref::<T>())
        .find(|known| **known == value);
    if let Some(known) = known {
        return Ok(known);
    }
    if interned.len() >= MAX_INTERNED_VALUES {
        return Err(value);
    }
    let value: &'static T = Box::leak(Box::new(value));
    interned.push(value);
    Ok(value)
}

/// A configuration value every clone of a service reads on every request: interned when the
/// table has room (a clone is then a copy, not a write to a shared reference count, which
/// axum makes per request when it clones the layered service), else shared through an `Arc`.
pub(crate) enum Interned<T: 'static> {
    Static(&'static T),
    Shared(Arc<T>),
}

impl<T: PartialEq + Send + Sync + 'static> Interned<T> {
    pub(crate) fn new(value: T) -> Self {
        intern_value(value).map_or_else(|value| Self::Shared(Arc::new(value)), Self::Static)
    }
}

impl<T> Clone for Interned<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Static(value) => Self::Static(value),
            Self::Shared(value) => Self::Shared(Arc::clone(value)),
        }
    }
}

impl<T> Deref for Interned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            Self::Static(value) => value,
            Self::Shared(value) => value,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Interned<T> {
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

    #[test]
    fn equal_values_share_one_copy_up_to_a_bound() {
        #[derive(Debug, PartialEq)]
        struct Value(u64);
        #[derive(Debug, PartialEq)]
        struct Other(u64);
        let a = Interned::new(Value(0));
        let b = Interned::new(Value(0));
        let (Interned::Static(a), Interned::Static(b)) = (&a, &b) else {
            panic!("room in the table: interned");
        };
        assert!(std::ptr::eq(*a, *b));
        // A value of another type is never taken for an equal-looking one.
        assert!(matches!(
            Interned::new(Other(0)),
            Interned::Static(Other(0))
        ));
        let mut shared = 0;
        for i in 1..=MAX_INTERNED_VALUES as u64 + 10 {
            let v = Interned::new(Value(i));
            assert_eq!(*v, Value(i));
            shared += usize::from(matches!(v, Interned::Shared(_)));
        }
        assert!(shared >= 10, "past the bound, values are shared, not kept");
        let held = INTERNED_VALUES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        assert_eq!(held, MAX_INTERNED_VALUES);
        // Known values are still found when the table is full.
        assert!(matches!(Interned::new(Value(0)), Interned::Static(_)));
        // Clones of either kind read the same value.
        let v = Interned::new(Value(u64::MAX));
        assert_eq!(*v.clone(), Value(u64::MAX));
    }
}
