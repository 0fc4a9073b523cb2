//! What the family files share to build statements: times as epoch milliseconds, the
//! multi-row writes of the buffered rows (SQLite `VALUES` lists, PostgreSQL arrays) and
//! reads by a list of ids.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::AssertSqlSafe;

use super::unit::Tx;
use crate::core::ids::{EventId, NotificationId, TicketId};
use crate::shell::db::{Conn, DbError};

/// The ids are text columns on both databases: a statement binds `&ev.ticket` and reads
/// `(TicketId, …)` rows as it does `String`s, and the core stays free of sqlx (the impls
/// live here, in the crate that owns both the trait's use and the type).
macro_rules! text_column {
    ($($t:ty),*) => {$(
        impl<DB: sqlx::Database> sqlx::Type<DB> for $t
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $t
        where
            String: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                // An owned copy: SQLite's argument buffer keeps owned text anyway, and a
                // borrowed `&str` would need the buffer's lifetime.
                <String as sqlx::Encode<'q, DB>>::encode(self.as_str().to_owned(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $t
        where
            String: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                <String as sqlx::Decode<'r, DB>>::decode(value).map(<$t>::from)
            }
        }
    )*};
}

text_column!(TicketId, EventId, NotificationId);

/// SQLite's `VALUES` lists for a multi-row statement: `rows` groups of `cols` anonymous
/// `?`, each followed by `extra` (a constant column). Anonymous because sqlx asks SQLite
/// for each parameter's name, a linear search over the named ones: with `$N` names a
/// 2,000-parameter statement spent a third of ingest there. (PostgreSQL gets arrays.)
pub(super) fn values_list(rows: usize, cols: usize, extra: &str) -> String {
    let mut sql = String::with_capacity(rows * cols * 5);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('?');
        }
        sql.push_str(extra);
        sql.push(')');
    }
    sql
}

/// Run `sql` on a SQLite transaction with the binds `bind` adds per row (the multi-row
/// statements of the `flush_*` functions; PostgreSQL gets arrays instead). Evaluates to the rows affected.
macro_rules! sqlite_rows {
    ($conn:expr, $sql:expr, $rows:expr, |$q:ident, $r:ident| $bind:expr) => {{
        let mut $q = sqlx::query(sqlx::AssertSqlSafe($sql));
        for $r in $rows {
            $q = $bind;
        }
        $q.execute(&mut **$conn).await?.rows_affected()
    }};
}
pub(super) use sqlite_rows;

/// One column of buffered rows, as the array PostgreSQL's `UNNEST` takes.
pub(super) fn col<'a, R, T>(rows: &'a [R], f: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
}

pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// The rows of `select` whose `col` is one of `ids`, with `tail` after the condition
/// (`GROUP BY …`); `lock` adds `FOR UPDATE` on PostgreSQL (SQLite's `BEGIN IMMEDIATE` holds
/// the database already). PostgreSQL: one `= ANY($1)`, not prepared — a generic plan made
/// while a table was still empty kept seq-scanning it as it grew. SQLite: `IN (?, …)` lists
/// of up to 500 anonymous parameters.
pub(super) async fn fetch_in<T>(
    tx: &mut Tx,
    select: &str,
    col: &str,
    ids: &[&str],
    tail: &str,
    lock: bool,
) -> Result<Vec<T>, DbError>
where
    T: Send
        + Unpin
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    let mut rows = Vec::new();
    if ids.is_empty() {
        return Ok(rows);
    }
    match &mut tx.conn {
        Conn::Pg(t) => {
            let lock = if lock { " FOR UPDATE" } else { "" };
            let sql = format!("{select} WHERE {col} = ANY($1) {tail}{lock}");
            rows = sqlx::query_as(AssertSqlSafe(sql))
                .persistent(false)
                .bind(ids)
                .fetch_all(&mut **t)
                .await?;
        }
        Conn::Sqlite(t) => {
            for chunk in ids.chunks(500) {
                let list = vec!["?"; chunk.len()].join(", ");
                let sql = format!("{select} WHERE {col} IN ({list}) {tail}");
                let mut q = sqlx::query_as::<_, T>(AssertSqlSafe(sql));
                for id in chunk {
                    q = q.bind(*id);
                }
                rows.extend(q.fetch_all(&mut **t).await?);
            }
        }
    }
    Ok(rows)
}
