//! One PutEvents for a batch: the handlers of one SQS batch share their publish requests.
//!
//! Each handler still publishes its own events and waits for their outcome, so nothing about
//! exactly-once changes: a handler returns only after its events were accepted (or fails,
//! and SQS redelivers its message). What changes is when the request goes out. Inside a
//! batch ([`scoped`], which [`crate::BatchProcessor`] wraps around every batch), a publish
//! waits until every handler that is still running is either waiting to publish as well or
//! has finished; then one of them sends everyone's entries together, in as few PutEvents
//! requests as the limits allow (10 entries, 256 KiB), and each handler gets the outcome of
//! its own entries. A batch of ten orders thus costs one PutEvents instead of ten.
//!
//! Why waiting cannot deadlock: a handler counts as running only between its start and its
//! end ([`running`]), and the only thing a waiting handler waits for is the others reaching
//! a publish or their end. Handlers that wait on one another otherwise (messages of one
//! order run one after the other) are started one at a time, so the later one does not
//! count until the earlier one has ended. Outside a batch (stream consumers, the CLI, tests)
//! there is no scope and a publish goes out at once.
//!
//! Why not a time-based linger (collect for N ms, then send): it delays every publish by the
//! linger even when nothing else is coming, and how much it gathers depends on timing. This
//! sends as soon as the batch has nothing more to add.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The publish state of one batch: how many handlers run, and how many of them wait for a
/// shared publish.
#[derive(Debug, Default)]
pub struct PublishScope {
    counts: Mutex<Counts>,
    /// Signalled when a handler ends or a shared publish completes, so that waiting
    /// handlers look again whether it is their turn to send.
    changed: Notify,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    running: usize,
    waiting: usize,
}

tokio::task_local! {
    static SCOPE: Arc<PublishScope>;
}

/// Runs `batch` with a fresh scope: publishes made while it runs (in this task) are shared.
pub async fn scoped<F: Future>(batch: F) -> F::Output {
    SCOPE.scope(Arc::new(PublishScope::default()), batch).await
}

/// The scope of the batch being processed by this task, if any.
pub fn current() -> Option<Arc<PublishScope>> {
    SCOPE.try_with(Arc::clone).ok()
}

/// Marks a handler as running in the current batch until the guard is dropped. Without a
/// scope it does nothing.
pub fn running() -> Running {
    let scope = current();
    if let Some(scope) = &scope {
        scope.counts().running += 1;
    }
    Running { scope }
}

/// A handler in progress; see [`running`].
#[must_use = "the handler counts as running only while the guard lives"]
pub struct Running {
    scope: Option<Arc<PublishScope>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(scope) = &self.scope {
            let mut counts = scope.counts();
            counts.running = counts.running.saturating_sub(1);
            drop(counts);
            // The handlers still waiting may now be all that is left running.
            scope.changed.notify_waiters();
        }
    }
}

impl PublishScope {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Counts stay consistent whatever panicked while holding the lock: two integers.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A handler starts waiting for a shared publish.
    pub(crate) fn wait(&self) {
        self.counts().waiting += 1;
    }

    /// Whether every running handler now waits to publish: time to send.
    pub(crate) fn all_waiting(&self) -> bool {
        let counts = self.counts();
        counts.waiting > 0 && counts.waiting >= counts.running
    }

    /// `n` waiting handlers are being served by a send.
    pub(crate) fn served(&self, n: usize) {
        let mut counts = self.counts();
        counts.waiting = counts.waiting.saturating_sub(n);
    }

    /// A shared send finished.
    pub(crate) fn sent(&self) {
        self.changed.notify_waiters();
    }

    /// Resolves at the next [`Self::sent`] or handler end after it is enabled.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_scope_nothing_is_counted() {
        assert!(current().is_none());
        let _running = running();
        assert!(current().is_none());
    }

    #[tokio::test]
    async fn handlers_count_as_running_while_their_guard_lives() {
        scoped(async {
            let scope = current().expect("a scope");
            let first = running();
            let second = running();
            scope.wait();
            assert!(!scope.all_waiting(), "one of two handlers still works");
            drop(second);
            assert!(scope.all_waiting(), "the only running handler waits");
            scope.served(1);
            assert!(!scope.all_waiting(), "nobody waits any more");
            drop(first);
            assert_eq!(*scope.counts(), Counts::default());
        })
        .await;
    }

    #[tokio::test]
    async fn each_batch_gets_its_own_scope() {
        let first = scoped(async { current().expect("a scope") }).await;
        let second = scoped(async { current().expect("a scope") }).await;
        assert!(!Arc::ptr_eq(&first, &second));
    }
}
