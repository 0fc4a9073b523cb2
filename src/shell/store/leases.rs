//! Leases (`sk_leases`): which process runs a singleton service, and `/readyz`'s write probe.

use chrono::{DateTime, Utc};

use super::sql::ms;
use crate::db_opt;
use crate::shell::db::{Db, DbError};

/// Take or renew a lease; true when `holder` holds it until `now + ttl_ms`.
pub async fn take_lease(
    db: &Db,
    name: &str,
    holder: &str,
    now: DateTime<Utc>,
    ttl_ms: i64,
) -> Result<bool, DbError> {
    let row = db_opt!(
        db,
        (String,),
        "INSERT INTO sk_leases (name, holder, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE sk_leases.holder = excluded.holder OR sk_leases.expires_at < $4
         RETURNING holder",
        name,
        holder,
        ms(now) + ttl_ms,
        ms(now)
    )?;
    Ok(row.is_some_and(|(h,)| h == holder))
}

/// `/readyz`'s write probe: rewrite one dedicated `sk_leases` row (`readyz`), so the probe
/// fails exactly when the database cannot take a write (full disk, read-only file system,
/// PostgreSQL in recovery or out of space) and costs one tiny row however often it runs.
/// The connection a probe failed on is closed rather than pooled: one that outlived the
/// fault (e.g. opened while the database was read-only) would otherwise keep failing.
pub async fn probe_write(db: &Db, holder: &str, now: DateTime<Utc>) -> Result<(), DbError> {
    const SQL: &str = "INSERT INTO sk_leases (name, holder, expires_at) VALUES ('readyz', $1, $2)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at";
    macro_rules! probe {
        ($pool:expr) => {{
            let mut conn = $pool.acquire().await?;
            let res = sqlx::query(SQL)
                .bind(holder)
                .bind(ms(now))
                .execute(&mut *conn)
                .await;
            if res.is_err() {
                conn.close_on_drop();
            }
            res?;
        }};
    }
    match db {
        Db::Sqlite(p) => probe!(p),
        Db::Pg(p) => probe!(p),
    }
    Ok(())
}
