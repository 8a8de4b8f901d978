//! Renders stored events for sinks: the canonical JSON as hashed, OCSF 1.8.0 API
//! Activity (class 6003), or CEF. The mappings read the proto3 JSON names of
//! `gatehouse.audit.v1.AuditEvent` through a typed view of the stored bytes.

use crate::event::StoredEvent;
use crate::sinks::config::Shape;

mod cef;
mod ocsf;
#[cfg(test)]
mod tests;
mod view;

pub(crate) use cef::cef;
pub(crate) use ocsf::ocsf;

/// Is the OCSF schema version the mapping follows.
pub(crate) const OCSF_VERSION: &str = "1.8.0";

/// Is one event rendered for a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    /// Holds the rendering: a JSON document (native, OCSF) or a CEF line.
    pub(crate) text: String,
    /// Says whether `text` is a JSON document (HEC embeds it as an object).
    pub(crate) is_json: bool,
}

/// Returns `record` rendered in `shape`.
pub(crate) fn render(shape: Shape, record: &StoredEvent) -> Rendered {
    match shape {
        Shape::Native => Rendered {
            text: String::from_utf8_lossy(&record.event.canonical_json).into_owned(),
            is_json: true,
        },
        Shape::Ocsf => Rendered {
            text: ocsf(record),
            is_json: true,
        },
        Shape::Cef => Rendered {
            text: cef(record),
            is_json: false,
        },
    }
}
