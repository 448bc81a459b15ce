//! Group commit: the same statement wanted by many concurrent callers, written once for all of
//! them. Each caller submits its item and waits for the outcome of the statement that carried
//! it; one task writes whatever is waiting at each moment in one statement, so while a statement
//! runs the next group gathers: the busier the service, the fewer statements per item, and an
//! idle service writes each item at once.

use std::future::Future;

use sea_orm::DbErr;
use tokio::sync::{mpsc, oneshot};

/// Submits items to the task that writes them in groups. The task ends when the last clone is
/// dropped, after writing what was submitted.
pub struct Grouped<T, R> {
    queue: mpsc::Sender<Waiting<T, R>>,
}

impl<T, R> Clone for Grouped<T, R> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

struct Waiting<T, R> {
    item: T,
    outcome: oneshot::Sender<Result<R, String>>,
}

impl<T: Send + 'static, R: Send + 'static> Grouped<T, R> {
    /// Starts the writer: `write` gets up to `max` items and answers one `R` per item, in order.
    pub fn start<W, F>(max: usize, mut write: W) -> Self
    where
        W: FnMut(Vec<T>) -> F + Send + 'static,
        F: Future<Output = Result<Vec<R>, DbErr>> + Send,
    {
        let max = max.max(1);
        let (queue, mut waiting) = mpsc::channel::<Waiting<T, R>>(max * 4);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(max);
            while waiting.recv_many(&mut group, max).await > 0 {
                let (items, outcomes): (Vec<T>, Vec<_>) = group
                    .drain(..)
                    .map(|waiting| (waiting.item, waiting.outcome))
                    .unzip();
                let expected = items.len();
                match write(items).await {
                    Ok(results) if results.len() == expected => {
                        for (outcome, result) in outcomes.into_iter().zip(results) {
                            // A caller that gave up (its request was cancelled) needs no answer.
                            let _ = outcome.send(Ok(result));
                        }
                    }
                    Ok(results) => {
                        let error = format!("{} results for {expected} items", results.len());
                        for outcome in outcomes {
                            let _ = outcome.send(Err(error.clone()));
                        }
                    }
                    Err(e) => {
                        let error = e.to_string();
                        for outcome in outcomes {
                            let _ = outcome.send(Err(error.clone()));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Returns once the statement carrying `item` has run (committed, or failed for all).
    pub async fn submit(&self, item: T) -> Result<R, DbErr> {
        let (outcome, result) = oneshot::channel();
        let gone = || DbErr::Custom("the group writer has stopped".into());
        self.queue
            .send(Waiting { item, outcome })
            .await
            .map_err(|_| gone())?;
        result.await.map_err(|_| gone())?.map_err(DbErr::Custom)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn concurrent_items_share_statements_and_each_gets_its_own_result() {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let seen = groups.clone();
        let doubler = Grouped::start(8, move |items: Vec<u32>| {
            seen.lock().unwrap().push(items.len());
            async move {
                tokio::task::yield_now().await;
                Ok(items.into_iter().map(|n| n * 2).collect())
            }
        });
        let calls = (0..20).map(|n| {
            let doubler = doubler.clone();
            async move { (n, doubler.submit(n).await.unwrap()) }
        });
        for (n, doubled) in futures_util::future::join_all(calls).await {
            assert_eq!(doubled, n * 2);
        }
        let groups = groups.lock().unwrap();
        assert_eq!(groups.iter().sum::<usize>(), 20);
        assert!(groups.iter().all(|&n| n <= 8), "{groups:?}");
        assert!(
            groups.len() < 20,
            "no two items shared a statement: {groups:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_statement_fails_every_item_it_carried() {
        let failing = Grouped::start(4, |_: Vec<u32>| async {
            Err::<Vec<()>, _>(DbErr::Custom("database away".into()))
        });
        let (a, b) = tokio::join!(failing.submit(1), failing.submit(2));
        for outcome in [a, b] {
            assert!(outcome.unwrap_err().to_string().contains("database away"));
        }
    }
}
