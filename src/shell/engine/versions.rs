//! Pinned workflow versions at run time (see `workflow::version`). A ticket is served by the
//! version it was opened under: the current one (this process's files) or an older one
//! loaded from `sk_workflow_versions` and kept in memory by hash. Versions are content, so
//! a cached one never goes stale, and any number of workers started with different files
//! agree on what serves each ticket.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::context::{Engine, Version, VersionError};
use crate::core::event::EventError;
use crate::shell::db::DbError;
use crate::shell::store;
use crate::shell::store::Tx;
use crate::workflow::version::{self, short};
use crate::workflow::{load_version, render_diags};

impl Engine {
    /// The current version of `name`: the files this process loaded.
    pub(crate) fn current_version(&self, name: &str) -> Result<Arc<Version>, EventError> {
        let unknown = || {
            EventError::new(
                "unknown_workflow",
                Some("ticket"),
                format!("the ticket's workflow `{name}` is not loaded; restore its file"),
            )
        };
        let hash = self.cfg.versions.get(name).ok_or_else(unknown)?;
        if let Some(v) = self.versions.get(hash) {
            return Ok(v);
        }
        let wf = self.cfg.catalog.get(name).cloned().ok_or_else(unknown)?;
        Ok(self.versions.keep(Arc::new(Version {
            hash: hash.clone(),
            wf,
            cfg: self.cfg.clone(),
        })))
    }

    /// The version serving a ticket of `workflow` pinned to `pinned`. A ticket without a
    /// version (opened before versions were kept, and not yet pinned by `serve`'s start) is
    /// served by the current files.
    pub(crate) async fn version(
        &self,
        workflow: &str,
        pinned: Option<&str>,
    ) -> Result<Arc<Version>, VersionError> {
        let current = self.cfg.versions.get(workflow).map(String::as_str);
        let hash = match pinned {
            None => {
                return self
                    .current_version(workflow)
                    .map_err(|e| VersionError::Unavailable(e.message));
            }
            Some(h) if Some(h) == current => {
                return self
                    .current_version(workflow)
                    .map_err(|e| VersionError::Unavailable(e.message));
            }
            Some(h) => h,
        };
        if let Some(v) = self.versions.get(hash) {
            return Ok(v);
        }
        let v = self.load_stored_version(workflow, hash).await?;
        Ok(self.versions.keep(Arc::new(v)))
    }

    /// Load a version from its stored files with the same loader the directory goes
    /// through, checking that the files still hash to it.
    async fn load_stored_version(
        &self,
        workflow: &str,
        hash: &str,
    ) -> Result<Version, VersionError> {
        let gone = |why: String| {
            VersionError::Unavailable(format!(
                "workflow `{workflow}` version {}: {why}",
                short(hash)
            ))
        };
        let Some((_, files)) = store::workflow_version(&self.db, hash).await? else {
            return Err(gone(
                "not in sk_workflow_versions; restore the database or run `slakeeper replan` \
                 to move its tickets to the current files"
                    .into(),
            ));
        };
        let files: crate::workflow::load::Tree = serde_json::from_str(&files)
            .map_err(|e| gone(format!("stored files unreadable: {e}")))?;
        if version::hash(&files) != hash {
            return Err(gone("stored files do not match their hash".into()));
        }
        let label = format!("version {}", short(hash));
        let cfg = load_version(&label, files)
            .map_err(|d| gone(format!("stored files do not load:\n{}", render_diags(&d))))?;
        let wf = cfg
            .catalog
            .get(workflow)
            .cloned()
            .ok_or_else(|| gone("its files hold no such workflow".into()))?;
        tracing::info!(%workflow, version = %short(hash), "loaded a pinned workflow version");
        Ok(Version {
            hash: hash.to_string(),
            wf,
            cfg: Arc::new(cfg),
        })
    }

    /// Store `v`'s files unless this process knows they are stored. Returns the hash when it
    /// wrote the row, to be marked stored once the transaction commits.
    pub(crate) async fn store_version(
        &self,
        tx: &mut Tx,
        v: &Version,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, DbError> {
        if self.versions.is_stored(&v.hash) {
            return Ok(None);
        }
        let files = v.cfg.version_files(&v.wf.name).unwrap_or_default();
        let json = serde_json::to_string(&files).map_err(DbError::json("workflow version"))?;
        store::insert_workflow_version(tx, &v.hash, &v.wf.name, &json, now).await?;
        Ok(Some(v.hash.clone()))
    }

    /// At start: store the current version of every workflow and pin the tickets that have
    /// none (opened before versions were kept) to it. Returns how many tickets were pinned.
    pub async fn pin_unversioned(&self) -> Result<u64, DbError> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let mut written = Vec::new();
        let mut pinned = 0;
        for name in self.cfg.catalog.workflows.keys() {
            let Ok(v) = self.current_version(name) else {
                continue;
            };
            written.extend(self.store_version(&mut tx, &v, now).await?);
            pinned += store::pin_unversioned(&mut tx, name, &v.hash).await?;
        }
        tx.commit().await?.record();
        self.versions.mark_stored(written);
        if pinned > 0 {
            tracing::info!(
                tickets = pinned,
                "pinned tickets opened before workflow versions to the current files"
            );
        }
        Ok(pinned)
    }
}
