//! Group commit across requests. One transaction per HTTP request caps ingest at the disk's
//! commit rate (SQLite FULL: one fsync each); instead, requests that arrive while a commit
//! is in flight wait in a queue, and a committer applies all of them in one transaction,
//! each in its own savepoint, then commits once and answers each. A request that is bad
//! input rolls back to its savepoint and gets its own error; the others are unaffected.
//! Every 202 still comes after the commit that holds its events.
//!
//! A group is whatever is waiting when the committer is free, so a lone request is not
//! delayed. SQLite has one committer (one writer anyway); PostgreSQL a few, whose groups
//! lock their tickets in sorted order like any ingest, so they never deadlock.

use std::sync::{Arc, Weak};

use tokio::sync::{Mutex, mpsc};
use tracing::Instrument;

use super::context::{After, Engine, IngestError, Ingested, Req};
use crate::core::ids::TicketId;
use crate::shell::db::DbError;
use crate::shell::{metrics, store};

/// Requests per group, and events per group (a group is one transaction).
const MAX_REQUESTS: usize = 128;
const MAX_EVENTS: usize = 5_000;

type Outcomes = Vec<Result<(Ingested, After), IngestError>>;

impl Engine {
    /// Start `committers` group committers (a second call does nothing). They hold the
    /// engine weakly and stop when it is dropped.
    pub fn start_group_commit(self: &Arc<Self>, committers: usize) {
        let (tx, rx) = mpsc::channel::<Req>(MAX_REQUESTS * 8);
        if self.group.queue.set(tx).is_err() {
            return;
        }
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..committers.max(1) {
            tokio::spawn(committer(Arc::downgrade(self), rx.clone()));
        }
    }

    async fn commit_group(&self, group: Vec<Req>) {
        let events: usize = group.iter().map(|r| r.events.len()).sum();
        let span = tracing::info_span!("ingest_group", requests = group.len(), events);
        match self.group_once(&group).instrument(span).await {
            Ok(outcomes) => {
                metrics::ingest_group(group.len());
                for (req, r) in group.into_iter().zip(outcomes) {
                    let _ = req.reply.send(r.map(|(res, after)| {
                        after.record(self);
                        res
                    }));
                }
            }
            Err(e) => {
                // Contention or a broken connection: each request on its own, with the
                // usual retries, so none of them fails because of another.
                tracing::warn!(error = %e, requests = group.len(), "group commit failed; one by one");
                for req in group {
                    let r = self.ingest_direct(&req.events, req.batch).await;
                    let _ = req.reply.send(r);
                }
            }
        }
    }

    async fn group_once(&self, group: &[Req]) -> Result<Outcomes, DbError> {
        let mut tx = self.db.begin().await?;
        let tickets: Vec<&TicketId> = group
            .iter()
            .flat_map(|r| r.events.iter().map(|e| &e.ticket))
            .collect();
        store::lock_tickets(&mut tx, &tickets).await?;
        // Read once for the whole group: which event ids are stored (new events are then
        // buffered and written in one statement at commit, not one INSERT each), which
        // tickets exist and their stored events (not two statements per new ticket).
        let mut known = store::prefetch_for(&mut tx, group.iter().flat_map(|r| &r.events)).await?;
        let mut out = Vec::with_capacity(group.len());
        let mut floor = None;
        // A lone request needs no savepoint: its error rolls back the whole transaction.
        let alone = group.len() == 1;
        for req in group {
            // Arrival times follow the order of application, never backwards in a group.
            let now = floor.map_or(self.now(), |f| self.now().max(f));
            floor = Some(now);
            if !alone {
                store::savepoint(&mut tx).await?;
            }
            match self
                .ingest_in(&mut tx, &req.events, req.batch, now, Some(&mut known))
                .await
            {
                Ok(r) => {
                    if !alone {
                        store::release_savepoint(&mut tx).await?;
                    }
                    out.push(Ok(r));
                }
                Err(IngestError::Db(e)) => return Err(e),
                Err(e) if alone => {
                    tx.rollback().await?;
                    return Ok(vec![Err(e)]);
                }
                Err(e) => {
                    store::rollback_to_savepoint(&mut tx).await?;
                    out.push(Err(e));
                }
            }
        }
        tx.commit().await?.record();
        Ok(out)
    }
}

async fn committer(engine: Weak<Engine>, rx: Arc<Mutex<mpsc::Receiver<Req>>>) {
    loop {
        let group = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut n = first.events.len();
            let mut group = vec![first];
            while group.len() < MAX_REQUESTS && n < MAX_EVENTS {
                match rx.try_recv() {
                    Ok(r) => {
                        n += r.events.len();
                        group.push(r);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        let Some(engine) = engine.upgrade() else {
            return;
        };
        engine.commit_group(group).await;
    }
}
