//! Which workflow a new ticket belongs to: named by its opening event, or chosen by the
//! workflows' `match` rules. The runtime's ingest and the simulator both decide it here, so
//! a ticket lands in the same workflow in both.

use std::sync::Arc;

use crate::core::event::{Event, EventError};
use crate::core::model::{Catalog, Workflow};

/// Choose the workflow of a ticket from its opening event.
pub fn choose_workflow<'a>(
    catalog: &'a Catalog,
    ev: &Event,
) -> Result<&'a Arc<Workflow>, EventError> {
    match &ev.workflow {
        Some(name) => catalog.get(name).ok_or_else(|| {
            EventError::new(
                "unknown_workflow",
                Some("workflow"),
                format!(
                    "unknown workflow `{name}` (loaded: {})",
                    catalog
                        .workflows
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        }),
        None => catalog
            .select(
                ev.category.as_deref(),
                ev.channel.as_deref(),
                &ev.attributes,
            )
            .ok_or_else(|| {
                EventError::new(
                    "no_workflow",
                    Some("category"),
                    format!(
                        "no workflow matches category `{}`{}; name one with `workflow`",
                        ev.category.as_deref().unwrap_or("(none)"),
                        ev.channel
                            .as_deref()
                            .map(|c| format!(" and channel `{c}`"))
                            .unwrap_or_default()
                    ),
                )
            }),
    }
}
