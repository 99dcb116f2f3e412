//! [`AccessChecker`]: deny-first access decisions over a user's roles.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use resources::{format_go_duration, Role, Rule, WILDCARD};

use crate::matcher::{KeyTable, Selector};
use crate::traits::apply_traits;
use crate::{AccessError, RbacError, Traits};

/// One side (allow or deny) of a role, compiled.
#[derive(Debug, Clone)]
struct Side {
    app: Selector,
    app_expr: bool,
    db: Selector,
    db_expr: bool,
    db_users: Vec<String>,
    db_names: Vec<String>,
    /// Lowercased Azure identities (`*` kept as is).
    azure_lower: Vec<String>,
}

impl Side {
    fn compile(
        c: &resources::RoleConditions,
        app_keys: &mut KeyTable,
        db_keys: &mut KeyTable,
    ) -> Self {
        Self {
            app: Selector::compile(c.app_labels.as_ref(), app_keys),
            app_expr: c.app_labels_expression.is_some(),
            db: Selector::compile(c.db_labels.as_ref(), db_keys),
            db_expr: c.db_labels_expression.is_some(),
            db_users: c.db_users.clone(),
            db_names: c.db_names.clone(),
            azure_lower: c
                .azure_identities
                .iter()
                .map(|s| s.to_lowercase())
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledRole {
    allow: Side,
    deny: Side,
}

/// Largest number of identity entries kept across all precomputed TTL tiers; beyond it
/// (many distinct TTLs times many identities) answers are computed per call instead.
const AZURE_TIER_BUDGET: usize = 65_536;

/// Precomputed answers of `check_azure_identities`.
#[derive(Debug, Clone)]
struct AzureIndex {
    /// Every role's (max TTL, allow identities), by max TTL descending.
    by_ttl: Vec<(Duration, Vec<String>)>,
    /// Lowercased deny identities; `deny_all` when one is `*`.
    deny: HashSet<String>,
    deny_all: bool,
    /// One entry per distinct max TTL, descending, with the answer for TTLs in
    /// (next threshold, this threshold]: the roles counted are those with max >= TTL.
    /// `None` when over [`AZURE_TIER_BUDGET`].
    tiers: Option<Vec<(Duration, Arc<[String]>)>>,
    /// Lowercased identities the user may assume at any TTL (allow minus deny).
    allowed_lower: HashSet<String>,
}

/// Adds allow identities to `acc` (lowercase -> smallest original spelling, so role order
/// never matters); returns whether anything changed.
fn add_identities(
    acc: &mut BTreeMap<String, String>,
    ids: &[String],
    deny: &HashSet<String>,
) -> bool {
    let mut changed = false;
    for id in ids {
        let lower = id.to_lowercase();
        if id == WILDCARD || deny.contains(&lower) {
            continue;
        }
        match acc.get_mut(&lower) {
            Some(cur) if *cur <= *id => {}
            Some(cur) => {
                *cur = id.clone();
                changed = true;
            }
            None => {
                acc.insert(lower, id.clone());
                changed = true;
            }
        }
    }
    changed
}

/// The identities in case-insensitive order (the map is keyed by the lowercase form).
fn sorted_values(acc: &BTreeMap<String, String>) -> Vec<String> {
    acc.values().cloned().collect()
}

impl AzureIndex {
    fn build(roles: &[Role]) -> Self {
        let deny_all = roles
            .iter()
            .any(|r| r.spec.deny.azure_identities.iter().any(|i| i == WILDCARD));
        let deny: HashSet<String> = roles
            .iter()
            .flat_map(|r| {
                r.spec
                    .deny
                    .azure_identities
                    .iter()
                    .map(|i| i.to_lowercase())
            })
            .collect();
        let mut by_ttl: Vec<(Duration, Vec<String>)> = roles
            .iter()
            .map(|r| {
                let ids = if deny_all {
                    Vec::new()
                } else {
                    r.spec.allow.azure_identities.clone()
                };
                (r.spec.options.max_session_ttl(), ids)
            })
            .collect();
        by_ttl.sort_by_key(|e| std::cmp::Reverse(e.0));
        let mut acc = BTreeMap::new();
        let mut tiers: Vec<(Duration, Arc<[String]>)> = Vec::new();
        let mut total = 0usize;
        let mut i = 0;
        while i < by_ttl.len() {
            let threshold = by_ttl[i].0;
            let mut changed = tiers.is_empty();
            while i < by_ttl.len() && by_ttl[i].0 == threshold {
                changed |= add_identities(&mut acc, &by_ttl[i].1, &deny);
                i += 1;
            }
            let list = match tiers.last() {
                Some((_, prev)) if !changed => Arc::clone(prev),
                _ => {
                    total += acc.len();
                    Arc::from(sorted_values(&acc))
                }
            };
            tiers.push((threshold, list));
        }
        Self {
            by_ttl,
            deny,
            deny_all,
            tiers: (total <= AZURE_TIER_BUDGET).then_some(tiers),
            allowed_lower: acc.into_keys().collect(),
        }
    }

    /// `None` when no role allows `ttl`; else the identities (possibly empty).
    fn lookup(&self, ttl: Duration) -> Option<Vec<String>> {
        if let Some(tiers) = &self.tiers {
            let eligible = tiers.partition_point(|(max, _)| *max >= ttl);
            return eligible
                .checked_sub(1)
                .and_then(|i| tiers.get(i))
                .map(|(_, list)| list.to_vec());
        }
        let eligible = self.by_ttl.partition_point(|(max, _)| *max >= ttl);
        if eligible == 0 {
            return None;
        }
        let mut acc = BTreeMap::new();
        if !self.deny_all {
            for (_, ids) in &self.by_ttl[..eligible] {
                add_identities(&mut acc, ids, &self.deny);
            }
        }
        Some(sorted_values(&acc))
    }
}

/// Access decisions for one user: their roles (templates expanded with their traits)
/// compiled once, then queried on every request.
///
/// Every decision is deny-first and independent of role order.
#[derive(Debug, Clone)]
pub struct AccessChecker {
    roles: Vec<Role>,
    compiled: Vec<CompiledRole>,
    /// Label keys used by app selectors / db selectors.
    app_keys: KeyTable,
    db_keys: KeyTable,
    /// Deny app selectors that can match, contiguous for the hot path.
    app_deny: Vec<Selector>,
    /// Some role has a deny app label expression (not evaluated: denies every app).
    app_deny_expr: bool,
    /// Allow app selectors that can match (roles with an allow expression excluded).
    app_allow: Vec<Selector>,
    /// Some allow side grants every app (`'*': '*'`, no expression).
    app_allow_all: bool,
    azure: AzureIndex,
}

fn app_denied() -> AccessError {
    AccessError::denied("access to app denied. User does not have permissions.")
}

fn db_denied() -> AccessError {
    AccessError::denied("access to db denied. User does not have permissions.")
}

fn list_matches(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == WILDCARD || v == value)
}

/// Keeps the first evaluation error seen. Callers finish the pass first (a match elsewhere
/// decides) and only then report the error, so a broken role never grants and role order
/// never changes the answer.
fn first_error(slot: &mut Option<RbacError>, e: RbacError) {
    if slot.is_none() {
        *slot = Some(e);
    }
}

fn rule_matches(rule: &Rule, kind: &str, verb: &str) -> bool {
    list_matches(&rule.resources, kind) && list_matches(&rule.verbs, verb)
}

/// Allowed values (allow union minus deny; deny `*` removes all), sorted and unique.
fn allowed_minus_denied<'a>(
    allow: impl Iterator<Item = &'a String>,
    deny: impl Iterator<Item = &'a String> + Clone,
) -> Vec<String> {
    if deny.clone().any(|d| d == WILDCARD) {
        return Vec::new();
    }
    let denied: HashSet<&String> = deny.collect();
    let mut out: Vec<String> = allow.filter(|a| !denied.contains(a)).cloned().collect();
    out.sort();
    out.dedup();
    out
}

impl AccessChecker {
    /// Builds a checker from un-expanded roles: applies version defaults, expands templates
    /// with `traits`, and precompiles every matcher.
    pub fn new(roles: Vec<Role>, traits: &Traits) -> Result<Self, RbacError> {
        let mut expanded = Vec::with_capacity(roles.len());
        for mut role in roles {
            role.check_version()?;
            role.set_defaults();
            expanded.push(apply_traits(&role, traits));
        }
        Self::from_expanded(expanded)
    }

    /// Builds a checker from roles whose templates are already expanded.
    pub fn from_expanded(roles: Vec<Role>) -> Result<Self, RbacError> {
        let mut roles = roles;
        for role in &mut roles {
            role.check_version()?;
            role.set_defaults();
        }
        let mut app_keys = KeyTable::default();
        let mut db_keys = KeyTable::default();
        let compiled: Vec<CompiledRole> = roles
            .iter()
            .map(|r| CompiledRole {
                allow: Side::compile(&r.spec.allow, &mut app_keys, &mut db_keys),
                deny: Side::compile(&r.spec.deny, &mut app_keys, &mut db_keys),
            })
            .collect();
        let app_deny = compiled
            .iter()
            .filter(|c| !c.deny.app.is_never())
            .map(|c| c.deny.app.clone())
            .collect();
        let app_deny_expr = compiled.iter().any(|c| c.deny.app_expr);
        let app_allow = compiled
            .iter()
            .filter(|c| !c.allow.app_expr && !c.allow.app.is_never())
            .map(|c| c.allow.app.clone())
            .collect();
        let app_allow_all = compiled
            .iter()
            .any(|c| !c.allow.app_expr && c.allow.app.is_all());
        let azure = AzureIndex::build(&roles);
        Ok(Self {
            roles,
            compiled,
            app_keys,
            db_keys,
            app_deny,
            app_deny_expr,
            app_allow,
            app_allow_all,
            azure,
        })
    }

    /// The roles as evaluated (defaults set, templates expanded).
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// Role names, in the order given.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.metadata.name.clone()).collect()
    }

    /// Whether the user may open the app with these labels (static + dynamic).
    ///
    /// Deny first: a deny `app_labels` match (or any deny label expression, which this
    /// implementation does not evaluate) refuses; then some allow `app_labels` must match.
    pub fn check_access_to_app(
        &self,
        app_labels: &BTreeMap<String, String>,
    ) -> Result<(), AccessError> {
        if self.app_deny_expr {
            return Err(app_denied());
        }
        let resolved = self.app_keys.resolve(app_labels);
        let mut err = None;
        for deny in &self.app_deny {
            match deny.matches(&resolved) {
                Ok(true) => return Err(app_denied()),
                Ok(false) => {}
                Err(e) => first_error(&mut err, e),
            }
        }
        if let Some(e) = err {
            return Err(e.into());
        }
        if self.app_allow_all {
            return Ok(());
        }
        for allow in &self.app_allow {
            match allow.matches(&resolved) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => first_error(&mut err, e),
            }
        }
        Err(err.map_or_else(app_denied, AccessError::from))
    }

    /// Whether the user may connect to the database with these labels, as `db_user` to
    /// `db_name` (each checked only when given).
    ///
    /// Deny first: a deny label match, or a deny `db_users`/`db_names` entry equal to the
    /// requested one (or `*`), refuses. Then one role must allow the labels and the user
    /// and the name (`*` accepts any).
    pub fn check_access_to_db(
        &self,
        db_labels: &BTreeMap<String, String>,
        db_user: Option<&str>,
        db_name: Option<&str>,
    ) -> Result<(), AccessError> {
        let resolved = self.db_keys.resolve(db_labels);
        self.deny_then_allow(
            &resolved,
            |deny| {
                let outright = deny.db_expr
                    || db_user.is_some_and(|u| list_matches(&deny.db_users, u))
                    || db_name.is_some_and(|n| list_matches(&deny.db_names, n));
                (!outright).then_some(&deny.db)
            },
            |allow| {
                let left_out = allow.db_expr
                    || db_user.is_some_and(|u| !list_matches(&allow.db_users, u))
                    || db_name.is_some_and(|n| !list_matches(&allow.db_names, n));
                (!left_out).then_some(&allow.db)
            },
            db_denied,
        )
    }

    /// Every role's deny side first, then its allow side. `deny` gives a deny side's label
    /// selector, or `None` when its other conditions refuse outright; a label match refuses
    /// too. `allow` gives an allow side's selector, or `None` when its other conditions leave
    /// the role out; one label match grants. A selector that fails to evaluate refuses with
    /// its error (the first) unless a role grants; `denied` is the refusal otherwise.
    fn deny_then_allow<'a>(
        &'a self,
        resolved: &[Option<&str>],
        deny: impl Fn(&'a Side) -> Option<&'a Selector>,
        allow: impl Fn(&'a Side) -> Option<&'a Selector>,
        denied: fn() -> AccessError,
    ) -> Result<(), AccessError> {
        let mut err = None;
        for c in &self.compiled {
            let Some(selector) = deny(&c.deny) else {
                return Err(denied());
            };
            match selector.matches(resolved) {
                Ok(true) => return Err(denied()),
                Ok(false) => {}
                Err(e) => first_error(&mut err, e),
            }
        }
        if let Some(e) = err {
            return Err(e.into());
        }
        for c in &self.compiled {
            let Some(selector) = allow(&c.allow) else {
                continue;
            };
            match selector.matches(resolved) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => first_error(&mut err, e),
            }
        }
        Err(err.map_or_else(denied, AccessError::from))
    }

    /// The Azure identities the user may assume with a certificate valid for `ttl`.
    ///
    /// Allow: the union over roles whose `max_session_ttl` is at least `ttl` (`*` ignored);
    /// deny: over all roles, compared case-insensitively, `*` removes everything. Errors:
    /// no role allows `ttl` → AccessDenied `this user cannot access Azure API for <ttl>`;
    /// nothing left → NotFound `this user cannot access Azure API, has no assigned
    /// identities`. The result is sorted and de-duplicated case-insensitively, in original
    /// case (of duplicates differing only in case, the smallest spelling is kept).
    pub fn check_azure_identities(&self, ttl: Duration) -> Result<Vec<String>, AccessError> {
        let Some(list) = self.azure.lookup(ttl) else {
            return Err(AccessError::denied(format!(
                "this user cannot access Azure API for {}",
                format_go_duration(ttl)
            )));
        };
        if list.is_empty() {
            return Err(AccessError::not_found(
                "this user cannot access Azure API, has no assigned identities",
            ));
        }
        Ok(list)
    }

    /// Whether the user may assume this one Azure identity (case-insensitive; deny first,
    /// deny `*` refuses all, allow `*` grants nothing). Used to re-check a request.
    pub fn check_azure_identity(&self, identity: &str) -> Result<(), AccessError> {
        if self.azure.allowed_lower.contains(&identity.to_lowercase()) {
            Ok(())
        } else {
            Err(AccessError::denied(format!(
                "access to Azure identity {identity:?} denied. User does not have permissions."
            )))
        }
    }

    /// Teleport's per-request check of the Azure CLI app: the app's labels and the identity
    /// together. Deny: a deny `app_labels` match, or a deny identity equal to `identity`
    /// (or `*`). Allow: one role whose `app_labels` match and whose allow identities
    /// contain `identity`.
    pub fn check_app_azure_identity(
        &self,
        app_labels: &BTreeMap<String, String>,
        identity: &str,
    ) -> Result<(), AccessError> {
        let lower = identity.to_lowercase();
        let has = |list: &[String], wildcard: bool| {
            list.iter()
                .any(|i| *i == lower || (wildcard && i == WILDCARD))
        };
        let resolved = self.app_keys.resolve(app_labels);
        self.deny_then_allow(
            &resolved,
            |deny| (!(deny.app_expr || has(&deny.azure_lower, true))).then_some(&deny.app),
            |allow| (!allow.app_expr && has(&allow.azure_lower, false)).then_some(&allow.app),
            app_denied,
        )
    }

    /// Whether the admin API may run `verb` on `resource_kind`, from the roles' `rules`.
    ///
    /// Deny rules first (`*` matches any kind/verb; rules with a `where` clause, which is
    /// not evaluated, still deny); then an allow rule without `where` must match.
    pub fn check_rule(&self, resource_kind: &str, verb: &str) -> Result<(), AccessError> {
        let denied = || {
            AccessError::denied(format!(
                "access denied to perform action {verb:?} on {resource_kind:?}"
            ))
        };
        if self
            .roles
            .iter()
            .flat_map(|r| &r.spec.deny.rules)
            .any(|rule| rule_matches(rule, resource_kind, verb))
        {
            return Err(denied());
        }
        if self
            .roles
            .iter()
            .flat_map(|r| &r.spec.allow.rules)
            .any(|rule| rule.r#where.is_none() && rule_matches(rule, resource_kind, verb))
        {
            return Ok(());
        }
        Err(denied())
    }

    /// The smallest `max_session_ttl` over the roles (30h for roles that leave it unset).
    pub fn max_session_ttl(&self) -> Duration {
        self.roles
            .iter()
            .map(|r| r.spec.options.max_session_ttl())
            .min()
            .unwrap_or(resources::DEFAULT_MAX_SESSION_TTL)
    }

    /// `requested`, capped by every role's `max_session_ttl`.
    pub fn adjust_session_ttl(&self, requested: Duration) -> Duration {
        self.roles
            .iter()
            .map(|r| r.spec.options.max_session_ttl())
            .fold(requested, Duration::min)
    }

    /// SSH logins: allow union minus deny (deny `*` removes all), sorted.
    pub fn logins(&self) -> Vec<String> {
        allowed_minus_denied(
            self.roles.iter().flat_map(|r| &r.spec.allow.logins),
            self.roles.iter().flat_map(|r| &r.spec.deny.logins),
        )
    }

    /// Database users for display: allow union minus deny (deny `*` removes all), sorted.
    pub fn db_users(&self) -> Vec<String> {
        allowed_minus_denied(
            self.roles.iter().flat_map(|r| &r.spec.allow.db_users),
            self.roles.iter().flat_map(|r| &r.spec.deny.db_users),
        )
    }

    /// Database names for display: allow union minus deny (deny `*` removes all), sorted.
    pub fn db_names(&self) -> Vec<String> {
        allowed_minus_denied(
            self.roles.iter().flat_map(|r| &r.spec.allow.db_names),
            self.roles.iter().flat_map(|r| &r.spec.deny.db_names),
        )
    }
}
