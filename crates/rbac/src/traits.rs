//! Expanding role templates with a user's traits.

use resources::{Labels, Role, RoleConditions};

use crate::template::interpolate;
use crate::Traits;

/// Expands each entry; entries whose template fails (missing trait, bad template) are
/// dropped. Duplicates are removed, first occurrence kept.
fn expand_list(values: &[String], traits: &Traits) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        if let Ok(expanded) = interpolate(v, traits) {
            for e in expanded {
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
    }
    out
}

/// Expands label keys and values as Teleport does: a key that fails to expand becomes ""
/// (matches nothing), only the first expansion of a key is used; a value that fails
/// becomes "" (matches nothing); values are de-duplicated.
fn expand_labels(labels: &Labels, traits: &Traits) -> Labels {
    let mut out = Labels::new();
    for (key, values) in labels {
        let key = interpolate(key, traits)
            .ok()
            .and_then(|v| v.into_iter().next())
            .unwrap_or_default();
        let mut vals: Vec<String> = Vec::with_capacity(values.len());
        for v in values {
            let expanded = interpolate(v, traits).unwrap_or_else(|_| vec![String::new()]);
            for e in expanded {
                if !vals.contains(&e) {
                    vals.push(e);
                }
            }
        }
        out.insert(key, vals);
    }
    out
}

fn expand_conditions(c: &mut RoleConditions, traits: &Traits) {
    for list in [
        &mut c.logins,
        &mut c.windows_desktop_logins,
        &mut c.kubernetes_groups,
        &mut c.kubernetes_users,
        &mut c.db_users,
        &mut c.db_names,
        &mut c.db_roles,
        &mut c.aws_role_arns,
        &mut c.azure_identities,
        &mut c.gcp_service_accounts,
    ] {
        *list = expand_list(list, traits);
    }
    for labels in [
        &mut c.app_labels,
        &mut c.db_labels,
        &mut c.node_labels,
        &mut c.kubernetes_labels,
    ] {
        if let Some(l) = labels.as_mut() {
            *l = expand_labels(l, traits);
        }
    }
}

/// A copy of `role` with every template in its allow and deny conditions expanded with
/// `traits` (logins, db users/names/roles, Azure identities, Kubernetes groups/users, AWS
/// ARNs, GCP accounts, Windows logins, and app/db/node/kubernetes label keys and values).
/// Absent selectors stay absent.
pub fn apply_traits(role: &Role, traits: &Traits) -> Role {
    let mut out = role.clone();
    expand_conditions(&mut out.spec.allow, traits);
    expand_conditions(&mut out.spec.deny, traits);
    out
}
