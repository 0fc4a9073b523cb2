//! What every HTTP handler shares: the API's (`http`), the acknowledge links' (`ack`) and
//! the staff pages' (`ui`). Its own file so those three import it from below instead of
//! from each other (`http` assembles the router from the other two).

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::shell::auth;
use crate::shell::engine::Engine;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Who may call what (checked by `auth::protect` before any handler runs).
    pub tokens: auth::Tokens,
    pub metrics: Option<PrometheusHandle>,
}
