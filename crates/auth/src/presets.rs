//! The roles Teleport ships and the guides rely on.
//!
//! They are created when the cluster first starts and never overwritten, so
//! an administrator's edits survive restarts.

/// YAML of the preset roles.
pub const PRESET_ROLES: &str = r#"
kind: role
version: v7
metadata:
  name: access
  description: Access cluster resources
  labels:
    teleport.internal/resource-type: preset
spec:
  options:
    max_session_ttl: 30h0m0s
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {'*': '*'}
    app_labels: {'*': '*'}
    db_labels: {'*': '*'}
    db_names: ['{{internal.db_names}}']
    db_users: ['{{internal.db_users}}']
    azure_identities: ['{{internal.azure_identities}}']
    aws_role_arns: ['{{internal.aws_role_arns}}']
    gcp_service_accounts: ['{{internal.gcp_service_accounts}}']
    kubernetes_groups: ['{{internal.kubernetes_groups}}']
    kubernetes_users: ['{{internal.kubernetes_users}}']
    rules:
    - resources: [event]
      verbs: [list, read]
---
kind: role
version: v7
metadata:
  name: editor
  description: Edit cluster configuration
  labels:
    teleport.internal/resource-type: preset
spec:
  options:
    max_session_ttl: 8h0m0s
  allow:
    rules:
    - resources: [user, role, token, app, db, app_server, db_server, cluster_name]
      verbs: [list, create, read, update, delete]
    - resources: [cert_authority]
      verbs: [list, read]
    - resources: [event]
      verbs: [list, read]
    - resources: [cluster_status]
      verbs: [read]
---
kind: role
version: v7
metadata:
  name: auditor
  description: Review cluster events
  labels:
    teleport.internal/resource-type: preset
spec:
  options:
    max_session_ttl: 30h0m0s
  allow:
    rules:
    - resources: [event, session]
      verbs: [list, read]
    - resources: [cluster_status]
      verbs: [read]
---
kind: role
version: v7
metadata:
  name: requester
  description: Request access to resources
  labels:
    teleport.internal/resource-type: preset
spec:
  options:
    max_session_ttl: 30h0m0s
  allow: {}
"#;

/// The preset roles, parsed.
pub fn preset_roles() -> Vec<resources::Role> {
    match resources::parse_resources(PRESET_ROLES) {
        Ok(list) => list
            .into_iter()
            .filter_map(|r| match r {
                resources::Resource::Role(role) => Some(role),
                _ => None,
            })
            .collect(),
        // The text above is a constant checked by the tests below.
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_validate() {
        let roles = preset_roles();
        let names: Vec<_> = roles.iter().map(|r| r.metadata.name.as_str()).collect();
        assert_eq!(names, ["access", "editor", "auditor", "requester"]);
        for r in &roles {
            rbac::validate_role(r).unwrap();
        }
    }

    #[test]
    fn access_expands_internal_traits() {
        let roles = preset_roles();
        let mut traits = rbac::Traits::new();
        traits.insert(
            "azure_identities".into(),
            vec!["/subscriptions/0/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a".into()],
        );
        let checker = rbac::AccessChecker::new(vec![roles[0].clone()], &traits).unwrap();
        let ids = checker
            .check_azure_identities(std::time::Duration::from_secs(3600))
            .unwrap();
        assert_eq!(ids.len(), 1);
        assert!(checker.check_rule("user", "create").is_err());
    }

    #[test]
    fn editor_may_edit_users() {
        let roles = preset_roles();
        let checker =
            rbac::AccessChecker::new(vec![roles[1].clone()], &rbac::Traits::new()).unwrap();
        checker.check_rule("user", "create").unwrap();
        checker.check_rule("role", "delete").unwrap();
    }
}
