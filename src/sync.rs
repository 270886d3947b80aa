//! [`lock`]: a `std` mutex's guard whether or not a holder panicked.
//!
//! partypool's mutexes guard short-held state (counters, the current credential, a journal's
//! entries, a task's handle) that a panic cannot leave half-written in a way that matters: a
//! poisoned one is used as it is rather than spreading the panic to every statement.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
