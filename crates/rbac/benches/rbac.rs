//! Decision latency: AccessChecker vs a naive exact-match loop over the same roles.
//!
//! Roles: label globs, a regex, deny rules on every other role, the granting role last.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use divan::{black_box, Bencher};
use rbac::{AccessChecker, Traits};
use resources::{Labels, Role};

fn main() {
    divan::main();
}

const SIZES: [usize; 2] = [10, 1000];

fn identity(i: usize) -> String {
    format!("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id{i}")
}

fn sel(pairs: &[(&str, &[&str])]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect()
}

/// `n` roles; only the last grants the target app.
fn roles(n: usize) -> Vec<Role> {
    (0..n)
        .map(|i| {
            let mut r = Role::new(format!("role-{i}"));
            if i + 1 == n {
                r.spec.allow.app_labels =
                    Some(sel(&[("env", &["prod-*"]), ("team", &["^team-(y|z)$"])]));
            } else {
                let env = format!("dev-{i}-*");
                r.spec.allow.app_labels = Some(sel(&[
                    ("env", &[env.as_str(), "stage"]),
                    ("team", &["^team-[a-c]$"]),
                ]));
            }
            if i % 2 == 0 {
                let deny = format!("secret-{i}");
                r.spec.deny.app_labels = Some(sel(&[("env", &[deny.as_str()])]));
                r.spec.deny.azure_identities = vec![identity(i + 1_000_000)];
            }
            r.spec.allow.azure_identities = vec![identity(i), identity(i + 1)];
            r
        })
        .collect()
}

fn target() -> BTreeMap<String, String> {
    [("env", "prod-eu"), ("team", "team-z"), ("tier", "web")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The baseline: exact string maps, no globs, no regexes, no templates.
struct NaiveRole {
    allow: BTreeMap<String, String>,
    deny: BTreeMap<String, String>,
    ids: Vec<String>,
    deny_ids: Vec<String>,
}

struct Naive {
    roles: Vec<NaiveRole>,
}

impl Naive {
    fn new(n: usize) -> Self {
        let roles = (0..n)
            .map(|i| {
                let allow: BTreeMap<String, String> = if i + 1 == n {
                    [("env", "prod-eu"), ("team", "team-z")]
                } else {
                    [("env", "stage"), ("team", "team-a")]
                }
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                let deny: BTreeMap<String, String> = if i % 2 == 0 {
                    [("env".to_string(), format!("secret-{i}"))]
                        .into_iter()
                        .collect()
                } else {
                    BTreeMap::new()
                };
                let deny_ids = if i % 2 == 0 {
                    vec![identity(i + 1_000_000)]
                } else {
                    vec![]
                };
                NaiveRole {
                    allow,
                    deny,
                    ids: vec![identity(i), identity(i + 1)],
                    deny_ids,
                }
            })
            .collect();
        Self { roles }
    }

    fn map_matches(sel: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
        !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    fn app(&self, labels: &BTreeMap<String, String>) -> bool {
        if self
            .roles
            .iter()
            .any(|r| Self::map_matches(&r.deny, labels))
        {
            return false;
        }
        self.roles
            .iter()
            .any(|r| Self::map_matches(&r.allow, labels))
    }

    fn azure(&self) -> Vec<String> {
        let deny: HashSet<&String> = self.roles.iter().flat_map(|r| &r.deny_ids).collect();
        let mut out: Vec<String> = self
            .roles
            .iter()
            .flat_map(|r| &r.ids)
            .filter(|id| !deny.contains(id))
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

fn checker(n: usize) -> AccessChecker {
    match AccessChecker::new(roles(n), &Traits::new()) {
        Ok(c) => c,
        Err(e) => panic!("bench roles are valid: {e}"),
    }
}

#[divan::bench(args = SIZES)]
fn app_access(bencher: Bencher, n: usize) {
    let c = checker(n);
    let labels = target();
    assert!(c.check_access_to_app(&labels).is_ok());
    bencher.bench_local(|| c.check_access_to_app(black_box(&labels)));
}

#[divan::bench(args = SIZES)]
fn app_access_naive_loop(bencher: Bencher, n: usize) {
    let naive = Naive::new(n);
    let labels = target();
    assert!(naive.app(&labels));
    bencher.bench_local(|| naive.app(black_box(&labels)));
}

#[divan::bench(args = SIZES)]
fn azure_identities(bencher: Bencher, n: usize) {
    let c = checker(n);
    let ttl = Duration::from_secs(3600);
    assert_eq!(
        c.check_azure_identities(ttl).map(|v| v.len()).ok(),
        Some(n + 1)
    );
    bencher.bench_local(|| c.check_azure_identities(black_box(ttl)));
}

#[divan::bench(args = SIZES)]
fn azure_identities_naive_loop(bencher: Bencher, n: usize) {
    let naive = Naive::new(n);
    assert_eq!(naive.azure().len(), n + 1);
    bencher.bench_local(|| naive.azure());
}

#[divan::bench(args = SIZES)]
fn azure_identity_recheck(bencher: Bencher, n: usize) {
    let c = checker(n);
    let id = identity(n / 2);
    assert!(c.check_azure_identity(&id).is_ok());
    bencher.bench_local(|| c.check_azure_identity(black_box(&id)));
}
