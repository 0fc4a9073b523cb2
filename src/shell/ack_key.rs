//! The acknowledge-link key, with no set-up: `--ack-secret` when given, else derived from the
//! webhook secret or the API token (links signed before keep working), else a random key
//! generated on the first start and kept in the database (`sk_keys`), so every process on a
//! shared database signs and checks the same links.
//!
//! Two first starts racing each other both try to insert; the primary key lets one insert
//! win, the other's is ignored (`ON CONFLICT DO NOTHING`, on both databases), and both then
//! read the one stored row.
//!
//! The SQL lives here rather than in `store`: one table, two statements, owned by this use.

use chrono::{DateTime, Utc};

use crate::shell::db::{Db, DbError};
use crate::shell::secret::Secret;
use crate::shell::settings::ServeSettings;
use crate::{db_exec, db_opt};

const NAME: &str = "ack_links";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no random bytes for the acknowledge-link key")]
    Random,
    #[error("keeping the acknowledge-link key in the database: {0}")]
    Db(#[from] DbError),
    #[error("the acknowledge-link key was not stored (sk_keys)")]
    Missing,
}

/// The key of these settings and database (see the module comment).
pub async fn key(s: &ServeSettings, db: &Db, now: DateTime<Utc>) -> Result<Secret, KeyError> {
    let configured = crate::shell::links::key(
        s.ack.secret.as_ref(),
        s.webhook_secret.as_ref(),
        s.api_token.as_ref(),
    );
    match configured {
        Some(k) => Ok(k),
        None => stored(db, now).await,
    }
}

/// The stored key, generating it first if this is the first start.
pub async fn stored(db: &Db, now: DateTime<Utc>) -> Result<Secret, KeyError> {
    if let Some(k) = read(db).await? {
        return Ok(k);
    }
    let fresh = random_hex()?;
    db_exec!(
        db,
        "INSERT INTO sk_keys (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        NAME,
        fresh.expose(),
        now.timestamp_millis()
    )
    .map_err(DbError::from)?;
    // Whoever won the insert, this is the key everyone uses.
    read(db).await?.ok_or(KeyError::Missing)
}

async fn read(db: &Db) -> Result<Option<Secret>, DbError> {
    let row: Option<(String,)> = db_opt!(
        db,
        (String,),
        "SELECT value FROM sk_keys WHERE name = $1",
        NAME
    )?;
    Ok(row.map(|(v,)| Secret::new(v)))
}

/// 32 random bytes as hex, from the operating system's generator (through the crypto
/// provider rustls already carries, so no other dependency).
fn random_hex() -> Result<Secret, KeyError> {
    let mut buf = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut buf)
        .map_err(|_| KeyError::Random)?;
    Ok(Secret::new(hex::encode(buf)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_keys_differ() {
        let a = random_hex().map(|s| s.expose().to_string()).ok();
        let b = random_hex().map(|s| s.expose().to_string()).ok();
        assert_eq!(a.as_ref().map(String::len), Some(64));
        assert_ne!(a, b);
    }
}
