//! Audit search through the admin API.

use audit_svc::{Filter, SearchQuery};
use proto::audit::v1::EventKind;
use serde_json::Value;

use super::model::{AuditPage, AuditQuery, AuditRecordView};
use super::{Action, Admin, AdminCaller, AdminError};

impl Admin {
    /// Searches the audit log, one page at a time.
    pub(crate) async fn search_audit(
        &self,
        caller: &AdminCaller,
        query: AuditQuery,
    ) -> Result<AuditPage, AdminError> {
        let outcome = async {
            let kinds = kinds(query.kind.as_deref())?;
            let filter = Filter {
                member_ids: query.member.into_iter().collect(),
                agent_client_ids: query.agent.into_iter().collect(),
                virtual_servers: query.virtual_server.into_iter().collect(),
                tools: query.tool.into_iter().collect(),
                kinds,
                ..Filter::default()
            };
            let search = SearchQuery::new(
                filter,
                query.limit.unwrap_or(100),
                query.page_token.as_deref().unwrap_or(""),
                query.newest_first,
            )
            .map_err(AdminError::Audit)?;
            let page = self
                .inner
                .audit_log
                .search(&search)
                .await
                .map_err(AdminError::Audit)?;
            Ok(AuditPage {
                events: page
                    .events
                    .iter()
                    .map(|stored| AuditRecordView {
                        sequence: stored.sequence,
                        event: serde_json::from_slice(&stored.event.canonical_json)
                            .unwrap_or(Value::Null),
                    })
                    .collect(),
                next_page_token: page.next_page_token,
            })
        }
        .await;
        let action = Action::read(EventKind::AdminChange, "search", "audit_log", "");
        self.audited(caller, &action, outcome)
    }
}

/// Returns the kind names of a comma-separated list, each checked against the event schema so
/// that a misspelt kind is refused rather than silently matching nothing.
fn kinds(list: Option<&str>) -> Result<Vec<String>, AdminError> {
    list.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            EventKind::from_str_name(name)
                .filter(|kind| *kind != EventKind::Unspecified)
                .map(|kind| kind.as_str_name().to_owned())
                .ok_or_else(|| AdminError::InvalidArgument {
                    field: "kind",
                    reason: format!("{name} is not an event kind"),
                })
        })
        .collect()
}
