//! Group commit: the same statement wanted by many concurrent callers, written once for all of
//! them. Each caller submits its item and waits for the outcome of the statement that carried
//! it; one task writes whatever is waiting at each moment in one statement, so while a statement
//! runs the next group gathers: the busier the service, the fewer statements per item, and an
//! idle service writes each item at once.

use std::future::Future;

use sea_orm::DbErr;
use tokio::sync::{mpsc, oneshot};

/// Submits items to the task that writes them in groups, each item answered with an `R` (what
/// the statement returned for it, `()` when nothing). The task ends when the last clone is
/// dropped, after writing what was submitted.
pub struct Grouped<T, R = ()> {
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
    written: oneshot::Sender<Result<R, String>>,
}

impl<T: Send + 'static, R: Send + 'static> Grouped<T, R> {
    /// Starts the writer: `write` gets up to `max` items and writes them all, answering one `R`
    /// per item in the items' order, or fails for all.
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
                let (items, callers): (Vec<T>, Vec<_>) = group
                    .drain(..)
                    .map(|waiting| (waiting.item, waiting.written))
                    .unzip();
                let count = items.len();
                match write(items).await {
                    Ok(answers) if answers.len() == count => {
                        for (caller, answer) in callers.into_iter().zip(answers) {
                            // A caller that gave up (its request was cancelled) needs no answer.
                            let _ = caller.send(Ok(answer));
                        }
                    }
                    outcome => {
                        let error = match outcome {
                            Ok(answers) => format!(
                                "a grouped statement answered {} of its {count} items",
                                answers.len()
                            ),
                            Err(e) => e.to_string(),
                        };
                        for caller in callers {
                            let _ = caller.send(Err(error.clone()));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Returns, once the statement carrying `item` has run (committed, or failed for all), what
    /// it answered for `item`.
    pub async fn submit(&self, item: T) -> Result<R, DbErr> {
        let (written, outcome) = oneshot::channel();
        let gone = || DbErr::Custom("the group writer has stopped".into());
        self.queue
            .send(Waiting { item, written })
            .await
            .map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?.map_err(DbErr::Custom)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn concurrent_items_share_statements_and_each_is_written_once() {
        let groups = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let seen = groups.clone();
        let writer = Grouped::start(8, move |items: Vec<u32>| {
            let answers = items.iter().map(|n| n * 10).collect();
            seen.lock().unwrap().push(items);
            async {
                tokio::task::yield_now().await;
                Ok(answers)
            }
        });
        let calls = (0..20).map(|n| {
            let writer = writer.clone();
            async move { (n, writer.submit(n).await) }
        });
        for (n, outcome) in futures_util::future::join_all(calls).await {
            assert_eq!(
                outcome.unwrap(),
                n * 10,
                "each caller gets its own item's answer"
            );
        }
        let groups = groups.lock().unwrap();
        let mut written: Vec<u32> = groups.iter().flatten().copied().collect();
        written.sort_unstable();
        assert_eq!(written, (0..20).collect::<Vec<_>>());
        assert!(groups.iter().all(|group| group.len() <= 8), "{groups:?}");
        assert!(
            groups.len() < 20,
            "no two items shared a statement: {groups:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_statement_fails_every_item_it_carried() {
        let failing = Grouped::<u32>::start(4, |_: Vec<u32>| async {
            Err(DbErr::Custom("database away".into()))
        });
        let (a, b) = tokio::join!(failing.submit(1), failing.submit(2));
        for outcome in [a, b] {
            assert!(outcome.unwrap_err().to_string().contains("database away"));
        }
    }

    #[tokio::test]
    async fn answers_that_do_not_match_the_items_fail_them_all() {
        let short = Grouped::<u32, u32>::start(4, |items: Vec<u32>| async move {
            Ok(items.into_iter().skip(1).collect())
        });
        let (a, b) = tokio::join!(short.submit(1), short.submit(2));
        for outcome in [a, b] {
            assert!(outcome.unwrap_err().to_string().contains("answered"));
        }
    }
}
