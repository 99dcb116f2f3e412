//! Role validation: hard errors and warnings.

use resources::{is_valid_azure_identity, Labels, Role, RoleConditions, WILDCARD};

use crate::matcher::ValuePattern;
use crate::template::parse_template;
use crate::RbacError;

fn has_template_brackets(v: &str) -> bool {
    v.contains("{{") || v.contains("}}")
}

fn selectors(c: &RoleConditions) -> [(&'static str, Option<&Labels>); 4] {
    [
        ("app_labels", c.app_labels.as_ref()),
        ("db_labels", c.db_labels.as_ref()),
        ("node_labels", c.node_labels.as_ref()),
        ("kubernetes_labels", c.kubernetes_labels.as_ref()),
    ]
}

fn lists(c: &RoleConditions) -> [(&'static str, &[String]); 10] {
    [
        ("logins", &c.logins),
        ("windows_desktop_logins", &c.windows_desktop_logins),
        ("kubernetes_groups", &c.kubernetes_groups),
        ("kubernetes_users", &c.kubernetes_users),
        ("db_users", &c.db_users),
        ("db_names", &c.db_names),
        ("db_roles", &c.db_roles),
        ("aws_role_arns", &c.aws_role_arns),
        ("azure_identities", &c.azure_identities),
        ("gcp_service_accounts", &c.gcp_service_accounts),
    ]
}

/// Validates a role as Teleport does when it is created.
///
/// Errors: unsupported version; `*` in `allow.logins`, `allow.azure_identities` or
/// `allow.db_roles`; a `'*'` selector key with values other than `['*']`; an invalid
/// `^...$` regular expression in a selector. Warnings (returned): malformed templates,
/// malformed Azure identity ids, and fields this implementation stores but does not
/// evaluate (label expressions, rule `where` clauses).
pub fn validate_role(role: &Role) -> Result<Vec<String>, RbacError> {
    role.validate()?;
    let allow = &role.spec.allow;
    if allow.logins.iter().any(|l| l == WILDCARD) {
        return Err(RbacError::BadParameter(
            "wildcard matcher is not allowed in logins".to_string(),
        ));
    }
    if allow.azure_identities.iter().any(|l| l == WILDCARD) {
        return Err(RbacError::BadParameter(
            "wildcard matcher is not allowed in allow.azure_identities".to_string(),
        ));
    }
    if allow.db_roles.iter().any(|l| l == WILDCARD) {
        return Err(RbacError::BadParameter(
            "wildcard matcher is not allowed in allow.db_roles".to_string(),
        ));
    }
    let mut warnings = Vec::new();
    for (cond_name, cond) in [("allow", &role.spec.allow), ("deny", &role.spec.deny)] {
        for (field, labels) in selectors(cond) {
            let Some(labels) = labels else { continue };
            for (key, values) in labels {
                if key == WILDCARD && !(values.len() == 1 && values[0] == WILDCARD) {
                    return Err(RbacError::BadParameter(
                        "selector *:<val> is not supported".to_string(),
                    ));
                }
                for v in std::iter::once(key).chain(values) {
                    if has_template_brackets(v) {
                        if let Err(e) = parse_template(v) {
                            warnings.push(format!("{cond_name}.{field}: {e}"));
                        }
                    } else if let ValuePattern::Invalid(e) = ValuePattern::compile(v) {
                        return Err(e);
                    }
                }
            }
        }
        for (field, values) in lists(cond) {
            for v in values.iter().filter(|v| has_template_brackets(v)) {
                if let Err(e) = parse_template(v) {
                    warnings.push(format!("{cond_name}.{field}: {e}"));
                }
            }
        }
        for id in &cond.azure_identities {
            if id != WILDCARD && !has_template_brackets(id) && !is_valid_azure_identity(id) {
                warnings.push(format!(
                    "{cond_name}.azure_identities: {id:?} is not a valid Azure identity; expected /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>"
                ));
            }
        }
        for (field, expr) in [
            ("app_labels_expression", &cond.app_labels_expression),
            ("db_labels_expression", &cond.db_labels_expression),
        ] {
            if expr.is_some() {
                let effect = if cond_name == "allow" {
                    "this allow condition never matches"
                } else {
                    "this deny condition denies every resource of the kind"
                };
                warnings.push(format!(
                    "{cond_name}.{field} is not evaluated by this implementation: {effect}"
                ));
            }
        }
        if cond.rules.iter().any(|r| r.r#where.is_some()) {
            let effect = if cond_name == "allow" {
                "such allow rules are ignored"
            } else {
                "such deny rules always apply"
            };
            warnings.push(format!(
                "{cond_name}.rules: where clauses are not evaluated: {effect}"
            ));
        }
    }
    Ok(warnings)
}
