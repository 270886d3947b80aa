//! [`Guard`]: what may end one attempt at a statement early — the pool closing, the node
//! leaving the rotation, `statement_timeout` — armed once per attempt, not per result.

use std::future::Future;
use std::time::Duration;

use super::shared::Shared;
use crate::backend::Backend;
use crate::cluster::Cluster;
use crate::node::Node;

/// Why one attempt at a statement ended early.
pub(super) enum Failure {
    /// The driver's error.
    Db(sqlx::Error),
    /// `statement_timeout` passed waiting for the next result.
    Timeout(Duration),
    /// The replica left the rotation (down, hung, lagging) while the statement ran on it.
    LeftRotation,
    /// The pool is closing; `sent` when the statement had been handed to the driver.
    Closed { sent: bool },
}

pin_project_lite::pin_project! {
    /// What may end one attempt early: the pool closing, the node leaving the rotation (only
    /// when `watch`: reads on replicas), or `statement_timeout` passing while waiting for the
    /// next result.
    ///
    /// Armed once per attempt, not per result: a result that is already buffered (most rows
    /// of a large result) costs one atomic load and a flag. Only when the driver has to wait does the
    /// guard register for wake-ups and start the timer. (Arming a `select!` of fresh
    /// `Notified` futures and a timer for every row cost a third of the throughput of a
    /// 100k-row `fetch`; see `examples/cost.rs`.)
    pub(super) struct Guard<'a, DB: Backend> {
        node: &'a Node<DB>,
        index: usize,
        cluster: &'a Cluster<DB>,
        watch: bool,
        // Whether the node still answers, as of the view read when the guard was made or
        // when `left` last fired.
        answers: bool,
        // Created before the flags are first read, so a notification in between is not lost.
        // Fired when the node leaves the rotation, and when the pool is closing.
        #[pin]
        left: tokio::sync::futures::Notified<'a>,
        #[pin]
        timer: Option<tokio::time::Sleep>,
        limit: Option<Duration>,
        // Something has been handed to the driver.
        sent: bool,
    }
}

impl<'a, DB: Backend> Guard<'a, DB> {
    /// The guard of one attempt on member `index` (`node`); `watch`: end it when the node
    /// stops answering (reads on replicas).
    pub(super) fn new(
        shared: &'a Shared<DB>,
        index: usize,
        node: &'a Node<DB>,
        watch: bool,
    ) -> Self {
        let cluster = &*shared.cluster;
        let left = node.left_rotation();
        // Read after `left` exists: a change in between wakes it.
        let answers = !watch || cluster.snapshot().view.answers(index);
        Guard {
            node,
            index,
            cluster,
            watch,
            answers,
            left,
            timer: None,
            limit: cluster.settings.statement_timeout,
            sent: false,
        }
    }

    /// Waits for `work` (the next result) under the guard.
    pub(super) async fn next<T>(
        mut self: std::pin::Pin<&mut Self>,
        work: impl Future<Output = T>,
    ) -> Result<T, Failure> {
        use std::task::Poll;
        let mut work = std::pin::pin!(work);
        let mut timer_armed = false;
        std::future::poll_fn(move |cx| {
            let mut this = self.as_mut().project();
            if this.cluster.is_closing() {
                return Poll::Ready(Err(Failure::Closed { sent: *this.sent }));
            }
            if !*this.answers {
                return Poll::Ready(Err(Failure::LeftRotation));
            }
            *this.sent = true;
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            // The driver waits: wake up for whatever may end the attempt.
            if this.left.as_mut().poll(cx).is_ready() {
                if this.cluster.is_closing() {
                    return Poll::Ready(Err(Failure::Closed { sent: true }));
                }
                if *this.watch && !this.cluster.snapshot().view.answers(*this.index) {
                    *this.answers = false;
                    return Poll::Ready(Err(Failure::LeftRotation));
                }
                // Not closing, and (for a read) it left the rotation but still answers
                // (promoted, lagging), or the statement is not watched (a write): it runs to
                // its end; keep watching.
                this.left.set(this.node.left_rotation());
                let _ = this.left.as_mut().poll(cx);
            }
            if let Some(limit) = *this.limit {
                let mut timer = this.timer;
                if !timer_armed {
                    let deadline = tokio::time::Instant::now() + limit;
                    match timer.as_mut().as_pin_mut() {
                        Some(t) => t.reset(deadline),
                        None => timer.set(Some(tokio::time::sleep_until(deadline))),
                    }
                    timer_armed = true;
                }
                if let Some(t) = timer.as_pin_mut()
                    && t.poll(cx).is_ready()
                {
                    return Poll::Ready(Err(Failure::Timeout(limit)));
                }
            }
            Poll::Pending
        })
        .await
    }
}
