//! Pure access decisions for Teleport-style RBAC: label matching (globs, regexes), role
//! templates (`{{internal.x}}`, `{{external.x}}`, functions), deny-first checks for apps,
//! databases, Azure identities and admin API rules. No I/O, no async.
//!
//! Build an [`AccessChecker`] once per user (at login or per certificate) with
//! [`AccessChecker::new`]; it expands templates and precompiles matchers so the decision
//! path never compiles a regex.

mod checker;
mod error;
mod matcher;
mod template;
mod traits;
mod validate;

use std::collections::BTreeMap;

pub use checker::AccessChecker;
pub use error::{AccessError, AccessErrorKind, RbacError, TemplateError};
pub use matcher::{match_labels, match_value};
pub use template::{interpolate, parse_template, Template};
pub use traits::apply_traits;
pub use validate::validate_role;

/// A user's traits: name → values (`logins`, `azure_identities`, external claims...).
pub type Traits = BTreeMap<String, Vec<String>>;

#[cfg(test)]
mod tests;
