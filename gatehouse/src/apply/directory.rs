//! The `directory:` section of the gateway file: members and groups `gatehouse apply` keeps
//! the authorization server's directory at. Declaring `members` makes the list complete (an
//! undeclared active member is deactivated); declaring `groups` likewise (an undeclared group
//! is deleted). Passwords are never declared: members sign in through the identity provider.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::client::Client;
use super::{Change, Plan, Step, describe};
use crate::admin::model::{GroupView, MemberView};

/// The `directory:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DirectorySection {
    /// Every member, when declared.
    #[serde(default)]
    members: Option<Vec<DeclaredMember>>,
    /// Every group, when declared.
    #[serde(default)]
    groups: Option<Vec<DeclaredGroup>>,
}

/// One declared member.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclaredMember {
    user_name: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default = "active_by_default")]
    active: bool,
}

/// One declared group, its members by user name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclaredGroup {
    name: String,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    members: Vec<String>,
}

fn active_by_default() -> bool {
    true
}

/// Adds the directory's changes to `plan`: members first, so groups can name new ones.
pub(super) async fn plan(
    section: &DirectorySection,
    client: &Client,
    plan: &mut Plan,
) -> anyhow::Result<()> {
    let members: Vec<MemberView> = client.get("/admin/v1/members").await?;
    if let Some(declared) = &section.members {
        plan_members(declared, &members, plan);
    }
    if let Some(declared) = &section.groups {
        let groups: Vec<GroupView> = client.get("/admin/v1/groups").await?;
        plan_groups(declared, &groups, &members, plan);
    }
    Ok(())
}

fn plan_members(declared: &[DeclaredMember], running: &[MemberView], plan: &mut Plan) {
    let find = |name: &str| {
        running
            .iter()
            .find(|member| member.user_name.eq_ignore_ascii_case(name))
    };
    for member in declared {
        let body = json!({
            "user_name": member.user_name,
            "display_name": member.display_name,
            "external_id": member.external_id,
            "active": member.active,
        });
        match find(&member.user_name) {
            None => {
                describe(
                    &mut plan.text,
                    "member",
                    &Change::Create(member.user_name.clone()),
                );
                plan.steps.push(Step {
                    method: Method::POST,
                    path: "/admin/v1/members".to_owned(),
                    body: Some(body),
                });
            }
            Some(have)
                if have.display_name != member.display_name
                    || have.external_id != member.external_id
                    || have.active != member.active =>
            {
                describe(
                    &mut plan.text,
                    "member",
                    &Change::Update(member.user_name.clone()),
                );
                plan.steps.push(Step {
                    method: Method::PUT,
                    path: format!("/admin/v1/members/{}", have.id),
                    body: Some(body),
                });
            }
            Some(_) => {}
        }
    }
    for have in running {
        let kept = declared
            .iter()
            .any(|member| member.user_name.eq_ignore_ascii_case(&have.user_name));
        if !kept && have.active {
            let _ = std::fmt::Write::write_fmt(
                &mut plan.text,
                format_args!("- deactivate member {}\n", have.user_name),
            );
            plan.steps.push(Step {
                method: Method::POST,
                path: format!("/admin/v1/members/{}/deactivate", have.id),
                body: None,
            });
        }
    }
}

fn plan_groups(
    declared: &[DeclaredGroup],
    running: &[GroupView],
    members: &[MemberView],
    plan: &mut Plan,
) {
    let names: BTreeMap<&str, String> = members
        .iter()
        .map(|member| (member.id.as_str(), member.user_name.to_lowercase()))
        .collect();
    for group in declared {
        let body = json!({
            "name": group.name,
            "external_id": group.external_id,
            "members": group.members,
        });
        let wanted: BTreeSet<String> = group
            .members
            .iter()
            .map(|name| name.to_lowercase())
            .collect();
        match running.iter().find(|have| have.name == group.name) {
            None => {
                describe(&mut plan.text, "group", &Change::Create(group.name.clone()));
                plan.steps.push(Step {
                    method: Method::POST,
                    path: "/admin/v1/groups".to_owned(),
                    body: Some(body),
                });
            }
            Some(have) => {
                let current: BTreeSet<String> = have
                    .members
                    .iter()
                    .map(|id| {
                        names
                            .get(id.as_str())
                            .cloned()
                            .unwrap_or_else(|| id.clone())
                    })
                    .collect();
                if current != wanted || have.external_id != group.external_id {
                    describe(&mut plan.text, "group", &Change::Update(group.name.clone()));
                    plan.steps.push(Step {
                        method: Method::PUT,
                        path: format!("/admin/v1/groups/{}", have.id),
                        body: Some(body),
                    });
                }
            }
        }
    }
    for have in running {
        if !declared.iter().any(|group| group.name == have.name) {
            describe(&mut plan.text, "group", &Change::Delete(have.name.clone()));
            plan.steps.push(Step {
                method: Method::DELETE,
                path: format!("/admin/v1/groups/{}", have.id),
                body: None,
            });
        }
    }
}
