//! Reads by id on PostgreSQL, gathered: the reads by id of one entity that a thread is asked
//! for at the same moment go to the database as one statement, `… WHERE id IN (…)`.
//!
//! A read by id costs PostgreSQL about 7 µs to execute (`pg_stat_statements`) but 44 µs of CPU
//! in all, and the service 74 µs (`GET /api/users/{id}`, `release`, 2026-11-24 17:55 UTC): most
//! of it is the round trip itself. A profile put a quarter of the machine's samples in the
//! kernel on the HTTP workers' behalf (waking the database's process, switching tasks) and
//! another eighth in the kernel on PostgreSQL's; PostgreSQL's own code was an eighth. Those costs
//! are per statement, not per row, so under load, when many reads wait at once, one statement
//! for all of them costs about what one read did.
//!
//! How the reads gather, on each thread and for each entity: the first read to find no statement
//! under way *leads*. It lets the thread run the other tasks ready at that moment (one
//! `yield_now`), so that the reads they start queue behind it, then sends one statement for the
//! ids queued (at most [`MOST`]) and answers each read with its row. Reads that queue while that
//! statement runs wait for the next: the leader hands the lead to the first of them as it
//! finishes. So a thread has at most one such statement under way per entity, and an idle
//! service sends each read at once, as before (one `yield_now` later).
//!
//! What a read waiting in a group must not suffer from another:
//! - a cancelled leader (its request gone): the reads it had taken see their answer dropped and
//!   read alone, and the lead passes on as if it had finished;
//! - a failed statement: the leader returns its error; the others read alone, so each gets its
//!   own error (a timeout is a 503, a failed query a 500), as if no group had been.
//!
//! Each read still sees every commit made before it was asked for: the statement starts after
//! every read it carries was queued.
//!
//! Alternated with the binaries before it (`release`, 1,000 users, 2 × 2 runs, 18:01–18:12 UTC):
//! `GET /api/users/{id}` from 11.2 / 10.9 % of the ceiling to 29.1 / 34.8 %, CPU from 64 + 39
//! and 62 + 36 µs (service + PostgreSQL) to 28 + 10 and 27 + 10 µs, p99 from 10 ms to 4 ms.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock};

use sea_orm::{
    ColumnTrait, DatabaseBackend, DbErr, EntityTrait, FromQueryResult, Iterable, ModelTrait,
    PrimaryKeyToColumn, QueryFilter, QueryTrait, Statement, TryIntoModel, Value,
};
use thread_local::ThreadLocal;
use tokio::sync::oneshot;

use super::Reads;

/// The most ids one statement carries.
pub(super) const MOST: usize = 64;

/// The statement sizes: powers of two up to [`MOST`] (a group is padded with its last id), so
/// that each connection prepares at most seven statements per entity.
const SIZES: usize = MOST.trailing_zeros() as usize + 1;

/// Reads by id of `E`'s rows, gathered per thread.
pub(super) struct Gathered<E: EntityTrait> {
    queues: OnceLock<ThreadLocal<Mutex<Queue<E::Model>>>>,
    /// The statement for each size, rendered once.
    sql: [OnceLock<String>; SIZES],
    /// Statements sent, for the tests.
    #[cfg(test)]
    statements: std::sync::atomic::AtomicUsize,
}

struct Queue<M> {
    waiting: VecDeque<Waiter<M>>,
    /// Whether a read leads: queued reads wait for it (or for the lead it hands on).
    leading: bool,
}

struct Waiter<M> {
    id: Value,
    answer: oneshot::Sender<Answer<M>>,
}

enum Answer<M> {
    /// The row with the waiter's id, if there is one.
    Found(Option<M>),
    /// The leader is done: the waiter leads the next group.
    Lead,
}

impl<E: EntityTrait> Gathered<E> {
    pub(super) const fn new() -> Self {
        Self {
            queues: OnceLock::new(),
            sql: [const { OnceLock::new() }; SIZES],
            #[cfg(test)]
            statements: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl<E> Gathered<E>
where
    E: EntityTrait,
    E::Model: FromQueryResult + Send + Sync,
    E::ActiveModel: TryIntoModel<E::Model>,
{
    /// The row with this id, read with the others queued on this thread at the moment; `None`
    /// if the read must go alone (its group's leader was cancelled or failed).
    pub(super) async fn read(
        &self,
        reads: &Reads,
        id: Value,
    ) -> Option<Result<Option<E::Model>, DbErr>> {
        let key = E::PrimaryKey::iter().next()?.into_column();
        let queue = self.queues.get_or_init(ThreadLocal::new).get_or(|| {
            Mutex::new(Queue {
                waiting: VecDeque::new(),
                leading: false,
            })
        });
        let (answer, mut answered) = oneshot::channel();
        let leads = {
            let mut queue = lock(queue);
            queue.waiting.push_back(Waiter {
                id: id.clone(),
                answer,
            });
            !std::mem::replace(&mut queue.leading, true)
        };
        if !leads {
            match (&mut answered).await {
                Ok(Answer::Found(row)) => return Some(Ok(row)),
                Ok(Answer::Lead) => {
                    // The previous leader took this read's place in the queue with it: queue
                    // again, first, so that the group it leads carries it.
                    let (answer, again) = oneshot::channel();
                    answered = again;
                    lock(queue).waiting.push_front(Waiter { id, answer });
                }
                Err(_) => return None,
            }
        }
        let leading = Leading { queue };
        tokio::task::yield_now().await;
        let group: Vec<Waiter<E::Model>> = {
            let mut queue = lock(queue);
            let n = queue.waiting.len().min(MOST);
            queue.waiting.drain(..n).collect()
        };
        let rows: Vec<(Value, E::Model)> = match self.rows(reads, key, &group).await {
            Ok(rows) => rows.into_iter().map(|row| (row.get(key), row)).collect(),
            Err(e) => return Some(Err(e)),
        };
        for waiter in group {
            let row = rows
                .iter()
                .find(|(id, _)| *id == waiter.id)
                .map(|(_, row)| row.clone());
            let _ = waiter.answer.send(Answer::Found(row));
        }
        drop(leading);
        match answered.try_recv() {
            Ok(Answer::Found(row)) => Some(Ok(row)),
            _ => None,
        }
    }

    /// The rows with the group's ids, in one statement.
    async fn rows(
        &self,
        reads: &Reads,
        key: E::Column,
        group: &[Waiter<E::Model>],
    ) -> Result<Vec<E::Model>, DbErr> {
        let size = group.len().next_power_of_two();
        let mut ids: Vec<Value> = group.iter().map(|waiter| waiter.id.clone()).collect();
        let last = ids.last().cloned().unwrap_or(Value::Bool(None));
        ids.resize(size, last);
        let sql = self.sql[size.trailing_zeros() as usize].get_or_init(|| {
            E::find()
                .filter(key.is_in(ids.iter().cloned()))
                .build(DatabaseBackend::Postgres)
                .sql
        });
        #[cfg(test)]
        self.statements
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        reads
            .models::<E>(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                sql.as_str(),
                ids,
            ))
            .await
    }
}

/// The lead, handed on when it ends: to the first read still waiting, or to none.
struct Leading<'a, M> {
    queue: &'a Mutex<Queue<M>>,
}

impl<M> Drop for Leading<'_, M> {
    fn drop(&mut self) {
        let mut queue = lock(self.queue);
        while let Some(next) = queue.waiting.pop_front() {
            if next.answer.send(Answer::Lead).is_ok() {
                return;
            }
        }
        queue.leading = false;
    }
}

/// The queue, whatever a panic elsewhere left in it: it holds only waiters.
fn lock<M>(queue: &Mutex<Queue<M>>) -> MutexGuard<'_, Queue<M>> {
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use futures_util::future::join_all;
    use sea_orm::entity::prelude::*;
    use sea_orm::{ConnectionTrait, TransactionTrait};

    use crate::database::{Connections, FindById, connect};
    use crate::testing::{Backend, fresh_database};

    mod person {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
        #[sea_orm(table_name = "people")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub name: String,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    const SLOW: Duration = Duration::from_millis(300);

    /// A fresh PostgreSQL database holding `n` people.
    async fn people(n: usize) -> (Connections, Vec<Uuid>) {
        let db = connect(&fresh_database(Backend::Postgres).await, "TEST")
            .await
            .expect("connects");
        db.write
            .execute_unprepared("CREATE TABLE people (id UUID PRIMARY KEY, name TEXT NOT NULL)")
            .await
            .expect("tables");
        let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
        person::Entity::insert_many(ids.iter().enumerate().map(|(i, id)| person::ActiveModel {
            id: sea_orm::Set(*id),
            name: sea_orm::Set(format!("person {i}")),
        }))
        .exec(&db.write)
        .await
        .expect("people");
        (db, ids)
    }

    /// Holds the table locked for [`SLOW`], from now: reads wait for it.
    async fn lock_people(db: &Connections) {
        let txn = db.write.begin().await.expect("begin");
        txn.execute_unprepared("LOCK TABLE people IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("lock");
        tokio::spawn(async move {
            tokio::time::sleep(SLOW).await;
            txn.commit().await.expect("commit");
        });
    }

    /// What `reads` answer, within ten times [`SLOW`].
    async fn answered<T>(reads: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(SLOW * 10, reads)
            .await
            .expect("every read is answered")
    }

    fn name_of(ids: &[Uuid], id: Uuid) -> Option<String> {
        ids.iter()
            .position(|known| *known == id)
            .map(|i| format!("person {i}"))
    }

    /// Reads asked for at once on one thread share statements, and each gets its own row, or
    /// none for an unknown id, duplicates included.
    #[tokio::test]
    async fn reads_at_once_share_statements_and_get_their_own_rows() {
        let (db, ids) = people(100).await;
        let reads = db.read;
        let by_id: FindById<person::Entity> = FindById::new();
        let mut asked: Vec<Uuid> = ids.clone();
        asked.extend((0..20).map(|_| Uuid::new_v4()));
        asked.extend(ids[..10].iter().copied());
        let found = join_all(asked.iter().map(|id| by_id.read(&reads, *id))).await;
        for (id, found) in asked.iter().zip(found) {
            let found = found.expect("read").map(|person| (person.id, person.name));
            assert_eq!(found, name_of(&ids, *id).map(|name| (*id, name)), "{id}");
        }
        let statements = by_id.gathered.statements.load(Ordering::Relaxed);
        // 130 reads: two groups of at most 64 and one of the rest.
        assert!(
            (3..=4).contains(&statements),
            "{statements} statements for 130 reads"
        );
        // One at a time, each goes at once, alone.
        for id in &ids[..3] {
            let found = by_id.read(&reads, *id).await.expect("read").expect("found");
            assert_eq!(found.id, *id);
        }
        let alone = by_id.gathered.statements.load(Ordering::Relaxed) - statements;
        assert_eq!(alone, 3);
    }

    /// Reads that queue while a group's statement runs form the next group, led by the first.
    #[tokio::test]
    async fn reads_queued_during_a_statement_go_in_the_next() {
        let (db, ids) = people(8).await;
        let reads = db.read.clone();
        let by_id: FindById<person::Entity> = FindById::new();
        lock_people(&db).await;
        let first = by_id.read(&reads, ids[0]);
        let later = async {
            tokio::time::sleep(SLOW / 3).await;
            join_all(ids[1..].iter().map(|id| by_id.read(&reads, *id))).await
        };
        let started = Instant::now();
        let (first, later) = answered(async { tokio::join!(first, later) }).await;
        assert_eq!(first.expect("read").expect("found").id, ids[0]);
        for (id, found) in ids[1..].iter().zip(later) {
            assert_eq!(found.expect("read").expect("found").id, *id);
        }
        assert_eq!(by_id.gathered.statements.load(Ordering::Relaxed), 2);
        assert!(started.elapsed() < SLOW * 3, "{:?}", started.elapsed());
    }

    /// A leader cancelled while its statement runs leaves no read waiting: those it carried read
    /// alone, and the lead passes on.
    #[tokio::test]
    async fn a_cancelled_leader_leaves_no_read_behind() {
        let (db, ids) = people(6).await;
        let reads = db.read.clone();
        let by_id: FindById<person::Entity> = FindById::new();
        lock_people(&db).await;
        let leader = tokio::time::timeout(SLOW / 3, by_id.read(&reads, ids[0]));
        let carried = join_all(ids[1..3].iter().map(|id| by_id.read(&reads, *id)));
        let later = async {
            tokio::time::sleep(SLOW / 6).await;
            join_all(ids[3..].iter().map(|id| by_id.read(&reads, *id))).await
        };
        let started = Instant::now();
        let (leader, carried, later) =
            answered(async { tokio::join!(leader, carried, later) }).await;
        assert!(leader.is_err(), "the leader was cancelled mid-statement");
        for (id, found) in ids[1..].iter().zip(carried.into_iter().chain(later)) {
            assert_eq!(found.expect("read").expect("found").id, *id);
        }
        assert!(started.elapsed() < SLOW * 5, "{:?}", started.elapsed());
        // Then the thread's queue is free again: a read goes at once.
        let before = by_id.gathered.statements.load(Ordering::Relaxed);
        let found = by_id.read(&reads, ids[0]).await.expect("read");
        assert_eq!(found.expect("found").id, ids[0]);
        assert_eq!(
            by_id.gathered.statements.load(Ordering::Relaxed),
            before + 1
        );
    }

    /// A statement that fails answers each read with an error of its own, and none hangs.
    #[tokio::test]
    async fn a_failed_statement_fails_each_read_once() {
        let (db, ids) = people(4).await;
        let reads = db.read;
        db.write
            .execute_unprepared("DROP TABLE people")
            .await
            .expect("dropped");
        let by_id: FindById<person::Entity> = FindById::new();
        let found = tokio::time::timeout(
            Duration::from_secs(10),
            join_all(ids.iter().map(|id| by_id.read(&reads, *id))),
        )
        .await
        .expect("no read hangs");
        for found in found {
            assert!(
                matches!(found, Err(DbErr::Query(_))),
                "a query error: {found:?}"
            );
        }
    }
}
