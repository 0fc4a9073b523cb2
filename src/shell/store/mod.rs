//! The store: slakeeper's own tables (see `migrations/`), one function per statement, each
//! usable inside a [`Tx`] on either backend. Transaction boundaries are decided by the caller
//! (`engine`), never here.
//!
//! [`unit`] is the unit of work ([`Tx`]: the transaction and the rows it buffers); each
//! family file owns its tables' SQL and the flush of its buffered rows; this file only
//! re-exports them and commits. Imports go one way: `mod.rs` → families → `unit`, `sql`.

mod deliveries;
mod events;
mod facts;
mod leases;
mod read;
mod reviews;
mod sql;
mod tickets;
mod timeline;
mod timers;
pub mod unit;
mod versions;

pub use deliveries::*;
pub use events::*;
pub use facts::*;
pub use leases::*;
pub use read::*;
pub use reviews::*;
pub use sql::{from_ms, ms};
pub use tickets::*;
pub use timeline::*;
pub use timers::*;
pub use unit::{Committed, Tx, release_savepoint, rollback_to_savepoint, savepoint};
pub use versions::*;

use crate::shell::db::DbError;

// Written here, not in `unit`: committing needs every family's flush, and the families
// import `unit`.
impl Tx {
    /// Write what is buffered (events, facts, tickets, timers, then the timeline in order, a
    /// few hundred rows per statement), then commit. What it returns are the metrics counted
    /// in this transaction: record them (they are lost otherwise).
    pub async fn commit(mut self) -> Result<Committed, DbError> {
        events::flush_events(&mut self).await?;
        facts::flush_facts(&mut self).await?;
        tickets::flush_tickets(&mut self).await?;
        timers::flush_timers(&mut self).await?;
        timeline::flush_timeline(&mut self).await?;
        self.conn.commit().await?;
        Ok(Committed {
            metrics: self.metrics,
        })
    }
}
