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
//! The queue and its lead ([`Gathering`]) serve the inserts of concurrent requests as well
//! (`inserts.rs`): there the group's statement runs on a task of its own, so that a cancelled
//! leader takes no one's writes with it.
//!
//! Alternated with the binaries before it (`release`, 1,000 users, 2 × 2 runs, 18:01–18:12 UTC):
//! `GET /api/users/{id}` from 11.2 / 10.9 % of the ceiling to 29.1 / 34.8 %, CPU from 64 + 39
//! and 62 + 36 µs (service + PostgreSQL) to 28 + 10 and 27 + 10 µs, p99 from 10 ms to 4 ms.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock};

use sea_orm::{
    ColumnTrait, DatabaseBackend, DbErr, EntityTrait, FromQueryResult, ModelTrait, QueryFilter,
    QueryOrder, QueryTrait, Statement, TryIntoModel, Value,
};
use thread_local::ThreadLocal;
use tokio::sync::oneshot;

use super::Reads;

/// The most ids one statement carries.
pub(super) const MOST: usize = 64;

/// The statement sizes: powers of two up to [`MOST`] (a group is padded with its last id), so
/// that each connection prepares at most seven statements per entity.
const SIZES: usize = MOST.trailing_zeros() as usize + 1;

/// Jobs of one kind (`J`, answered with an `A`) that a thread is asked for at the same moment,
/// done together by the first of them: the queue, the lead and its hand-off described above,
/// for reads by id and for inserts (`inserts.rs`) alike.
pub(super) struct Gathering<J: Send, A: Send> {
    queues: OnceLock<ThreadLocal<Mutex<Queue<J, A>>>>,
}

struct Queue<J, A> {
    waiting: VecDeque<Waiter<J, A>>,
    /// Whether a job leads: queued jobs wait for it (or for the lead it hands on).
    leading: bool,
}

struct Waiter<J, A> {
    /// The database the job is for: a group goes to one.
    on: u64,
    job: J,
    answer: oneshot::Sender<Answer<A>>,
}

enum Answer<A> {
    /// The job's answer.
    Done(A),
    /// The leader is done: the waiter leads the next group.
    Lead,
}

/// What a leader made of its group.
pub(super) enum Outcome<A> {
    /// One answer per job, in the group's order.
    Each(Vec<A>),
    /// The leader's own answer; the others go alone.
    Leader(A),
    /// Every job goes alone, the leader's too.
    Alone,
}

/// A leader's group: its jobs, the leader's first, and where their answers go.
pub(super) struct Group<J, A> {
    jobs: Vec<J>,
    answers: Vec<oneshot::Sender<Answer<A>>>,
}

impl<J, A> Group<J, A> {
    pub(super) fn jobs(&self) -> &[J] {
        &self.jobs
    }

    /// Answers the jobs. A group dropped unanswered sends each of its jobs alone.
    pub(super) fn answer(self, outcome: Outcome<A>) {
        match outcome {
            Outcome::Each(each) => {
                for (answer, done) in self.answers.into_iter().zip(each) {
                    let _ = answer.send(Answer::Done(done));
                }
            }
            Outcome::Leader(done) => {
                if let Some(answer) = self.answers.into_iter().next() {
                    let _ = answer.send(Answer::Done(done));
                }
            }
            Outcome::Alone => {}
        }
    }
}

impl<J: Send, A: Send> Gathering<J, A> {
    pub(super) const fn new() -> Self {
        Self {
            queues: OnceLock::new(),
        }
    }
}

impl<J: Clone + Send, A: Send> Gathering<J, A> {
    /// `job`'s answer, worked out with the other jobs for the same database (`on`) queued on
    /// this thread at the moment, at most `most` of them, by whichever leads: the leader's
    /// `run` answers the group ([`Group::answer`]), and the lead passes on when `run` returns.
    /// `None` if the job must go alone (its group was dropped unanswered, or left it alone).
    pub(super) async fn join(
        &self,
        on: u64,
        job: J,
        most: usize,
        run: impl AsyncFnOnce(Group<J, A>),
    ) -> Option<A> {
        let queue = self.queues.get_or_init(ThreadLocal::new).get_or(|| {
            Mutex::new(Queue {
                waiting: VecDeque::new(),
                leading: false,
            })
        });
        let (answer, answered) = oneshot::channel();
        let leads = {
            let mut queue = lock(queue);
            queue.waiting.push_back(Waiter {
                on,
                job: job.clone(),
                answer,
            });
            !std::mem::replace(&mut queue.leading, true)
        };
        let mut waiting = Waiting { queue, answered };
        if !leads {
            match (&mut waiting.answered).await {
                Ok(Answer::Done(done)) => return Some(done),
                Ok(Answer::Lead) => {
                    // The previous leader took this job's place in the queue with it: queue
                    // again, first, so that the group it leads carries it.
                    let (answer, again) = oneshot::channel();
                    waiting.answered = again;
                    lock(queue).waiting.push_front(Waiter { on, job, answer });
                }
                Err(_) => return None,
            }
        }
        let leading = Leading { queue };
        tokio::task::yield_now().await;
        let group = {
            // The leader's job is the first of its database's: it was queued first, or, handed
            // the lead, put first.
            let mut queue = lock(queue);
            let mut group = Group {
                jobs: Vec::new(),
                answers: Vec::new(),
            };
            let mut at = 0;
            while at < queue.waiting.len() && group.jobs.len() < most {
                if queue.waiting[at].on != on {
                    at += 1;
                    continue;
                }
                if let Some(waiter) = queue.waiting.remove(at) {
                    group.jobs.push(waiter.job);
                    group.answers.push(waiter.answer);
                }
            }
            group
        };
        run(group).await;
        drop(leading);
        match (&mut waiting.answered).await {
            Ok(Answer::Done(done)) => Some(done),
            _ => None,
        }
    }
}

/// The lead, handed on when it ends: to the first job still waiting, or to none.
struct Leading<'a, J, A> {
    queue: &'a Mutex<Queue<J, A>>,
}

impl<J, A> Drop for Leading<'_, J, A> {
    fn drop(&mut self) {
        hand_on(self.queue);
    }
}

/// A job's wait for its answer. Dropped with the lead handed to it but not taken (its request
/// gone just then), it hands the lead on, or the jobs queued behind would wait for ever.
struct Waiting<'a, J, A> {
    queue: &'a Mutex<Queue<J, A>>,
    answered: oneshot::Receiver<Answer<A>>,
}

impl<J, A> Drop for Waiting<'_, J, A> {
    fn drop(&mut self) {
        if let Ok(Answer::Lead) = self.answered.try_recv() {
            hand_on(self.queue);
        }
    }
}

/// Hands the lead to the first job still waiting, or leaves it to the next job queued.
fn hand_on<J, A>(queue: &Mutex<Queue<J, A>>) {
    let mut queue = lock(queue);
    while let Some(next) = queue.waiting.pop_front() {
        if next.answer.send(Answer::Lead).is_ok() {
            return;
        }
    }
    queue.leading = false;
}

/// The queue, whatever a panic elsewhere left in it: it holds only waiters.
fn lock<J, A>(queue: &Mutex<Queue<J, A>>) -> MutexGuard<'_, Queue<J, A>> {
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads of `E`'s rows by the value of one column (its id, or an order's items by `order_id`),
/// gathered per thread.
pub(super) struct Gathered<E: EntityTrait> {
    gathering: Gathering<Value, Result<Vec<E::Model>, DbErr>>,
    /// The statement for each size, rendered once.
    sql: [OnceLock<String>; SIZES],
    /// Statements sent, for the tests.
    #[cfg(test)]
    statements: std::sync::atomic::AtomicUsize,
}

impl<E: EntityTrait> Gathered<E> {
    pub(super) const fn new() -> Self {
        Self {
            gathering: Gathering::new(),
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
    /// The rows whose `key` is `value` (in `order`), read with the others queued on this thread
    /// at the moment; `None` if the read must go alone (its group's leader was cancelled or
    /// failed). `key` and `order` must be the same on every call: the SQL is rendered once.
    pub(super) async fn read(
        &self,
        reads: &Reads,
        key: E::Column,
        order: Option<E::Column>,
        value: Value,
    ) -> Option<Result<Vec<E::Model>, DbErr>> {
        self.gathering
            .join(reads.id(), value, MOST, async |group: Group<Value, _>| {
                let outcome = match self.rows(reads, key, order, group.jobs()).await {
                    Ok(rows) => {
                        let rows: Vec<(Value, E::Model)> =
                            rows.into_iter().map(|row| (row.get(key), row)).collect();
                        let rows_of = |value: &Value| {
                            rows.iter()
                                .filter(|(found, _)| found == value)
                                .map(|(_, row)| row.clone())
                                .collect()
                        };
                        Outcome::Each(group.jobs().iter().map(|v| Ok(rows_of(v))).collect())
                    }
                    Err(e) => Outcome::Leader(Err(e)),
                };
                group.answer(outcome);
            })
            .await
    }

    /// The rows with these keys, in one statement.
    async fn rows(
        &self,
        reads: &Reads,
        key: E::Column,
        order: Option<E::Column>,
        ids: &[Value],
    ) -> Result<Vec<E::Model>, DbErr> {
        let size = ids.len().next_power_of_two();
        let mut ids = ids.to_vec();
        let last = ids.last().cloned().unwrap_or(Value::Bool(None));
        ids.resize(size, last);
        let sql = self.sql[size.trailing_zeros() as usize].get_or_init(|| {
            let select = E::find().filter(key.is_in(ids.iter().cloned()));
            match order {
                Some(order) => select.order_by_asc(key).order_by_asc(order),
                None => select,
            }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use futures_util::future::join_all;
    use sea_orm::ConnectionTrait;
    use sea_orm::entity::prelude::*;

    use crate::database::{Connections, FindAllBy, FindById, WriteLoad, connect};
    use crate::testing::{Backend, fresh_database, lock_table};

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

    mod pet {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
        #[sea_orm(table_name = "pets")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub owner_id: Uuid,
            pub position: i32,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    const SLOW: Duration = Duration::from_millis(300);

    /// A fresh PostgreSQL database holding `n` people.
    async fn people(n: usize) -> (Connections, Vec<Uuid>) {
        let db = connect(
            &fresh_database(Backend::Postgres).await,
            "TEST",
            WriteLoad::Heavy,
        )
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
        lock_table(&db.write, "people", SLOW).await;
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

    /// Reads of rows by a column asked for at once share a statement, and each gets its own
    /// rows in order: none for an owner without pets or an unknown one, duplicates included.
    #[tokio::test]
    async fn reads_by_a_column_at_once_get_their_own_rows_in_order() {
        let (db, owners) = people(30).await;
        db.write
            .execute_unprepared(
                "CREATE TABLE pets (id UUID PRIMARY KEY, owner_id UUID NOT NULL, \
                 position INTEGER NOT NULL)",
            )
            .await
            .expect("table");
        // Owner i has i % 4 pets, inserted last position first.
        let pets = owners.iter().enumerate().flat_map(|(i, owner)| {
            (0..(i % 4) as i32).rev().map(|position| pet::ActiveModel {
                id: sea_orm::Set(Uuid::new_v4()),
                owner_id: sea_orm::Set(*owner),
                position: sea_orm::Set(position),
            })
        });
        pet::Entity::insert_many(pets)
            .exec(&db.write)
            .await
            .expect("pets");
        let by_owner: FindAllBy<pet::Entity> =
            FindAllBy::new(pet::Column::OwnerId, pet::Column::Position);
        let mut asked = owners.clone();
        asked.extend((0..5).map(|_| Uuid::new_v4()));
        asked.extend(owners[..5].iter().copied());
        let found = join_all(asked.iter().map(|owner| by_owner.read(&db.read, *owner))).await;
        for (owner, found) in asked.iter().zip(found) {
            let pets = found.expect("read");
            assert!(pets.iter().all(|pet| pet.owner_id == *owner), "{owner}");
            let positions: Vec<i32> = pets.iter().map(|pet| pet.position).collect();
            let expected = owners
                .iter()
                .position(|known| known == owner)
                .map_or(0, |i| (i % 4) as i32);
            assert_eq!(positions, (0..expected).collect::<Vec<_>>(), "{owner}");
        }
        assert_eq!(by_owner.gathered.statements.load(Ordering::Relaxed), 1);
    }

    /// A read handed the lead just as it is dropped (its request gone) hands the lead on: the
    /// reads after it do not wait for ever.
    #[tokio::test]
    async fn a_read_dropped_with_the_lead_hands_it_on() {
        static BY_ID: FindById<person::Entity> = FindById::new();
        let (db, ids) = people(3).await;
        lock_people(&db).await;
        let reads = db.read.clone();
        let first = ids[0];
        let leader = tokio::spawn(async move { BY_ID.read(&reads, first).await });
        tokio::time::sleep(SLOW / 3).await;
        // Queued behind the leader, whose statement waits for the lock.
        let mut dropped = Box::pin(BY_ID.read(&db.read, ids[1]));
        assert!(futures_util::poll!(&mut dropped).is_pending());
        // The leader finishes and hands it the lead; it is dropped before it takes it.
        let found = answered(leader).await.expect("joined").expect("read");
        assert_eq!(found.expect("found").id, ids[0]);
        drop(dropped);
        let found = answered(BY_ID.read(&db.read, ids[2])).await.expect("read");
        assert_eq!(found.expect("found").id, ids[2]);
    }
}
