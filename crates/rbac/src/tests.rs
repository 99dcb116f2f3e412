#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use resources::{parse_resources, Labels, Resource, Role, Rule};

use crate::*;

const ID1: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1";
const ID2: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id2";

fn roles(yaml: &str) -> Vec<Role> {
    parse_resources(yaml)
        .unwrap()
        .into_iter()
        .map(|r| match r {
            Resource::Role(r) => r,
            other => panic!("not a role: {other:?}"),
        })
        .collect()
}

fn role(yaml: &str) -> Role {
    roles(yaml).remove(0)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(pairs: &[(&str, &[&str])]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect()
}

fn traits(pairs: &[(&str, &[&str])]) -> Traits {
    sel(pairs)
}

fn checker(yaml: &str) -> AccessChecker {
    AccessChecker::new(roles(yaml), &Traits::new()).unwrap()
}

// ---------- label matching ----------

#[test]
fn empty_selector_matches_nothing() {
    assert!(!match_labels(&Labels::new(), &labels(&[])).unwrap());
    assert!(!match_labels(&Labels::new(), &labels(&[("a", "b")])).unwrap());
}

#[test]
fn wildcard_selector_matches_everything_including_unlabeled() {
    let s = sel(&[("*", &["*"])]);
    assert!(match_labels(&s, &labels(&[])).unwrap());
    assert!(match_labels(&s, &labels(&[("env", "prod")])).unwrap());
}

#[test]
fn keys_are_anded_values_ored() {
    let s = sel(&[("env", &["dev", "stage"]), ("group", &["metrics"])]);
    assert!(match_labels(&s, &labels(&[("env", "stage"), ("group", "metrics")])).unwrap());
    assert!(!match_labels(&s, &labels(&[("env", "stage")])).unwrap());
    assert!(!match_labels(&s, &labels(&[("env", "prod"), ("group", "metrics")])).unwrap());
}

#[test]
fn star_value_and_empty_value_list() {
    let s = sel(&[("env", &["*"])]);
    assert!(match_labels(&s, &labels(&[("env", "anything")])).unwrap());
    assert!(
        !match_labels(&s, &labels(&[("other", "x")])).unwrap(),
        "key must exist"
    );
    let s = sel(&[("env", &[])]);
    assert!(!match_labels(&s, &labels(&[("env", "x")])).unwrap());
}

#[test]
fn globs_and_regexes() {
    let s = sel(&[("env", &["dev-*"])]);
    assert!(match_labels(&s, &labels(&[("env", "dev-1")])).unwrap());
    assert!(!match_labels(&s, &labels(&[("env", "xdev-1")])).unwrap());
    // Regex metacharacters in globs are literal.
    let s = sel(&[("v", &["1.0*"])]);
    assert!(!match_labels(&s, &labels(&[("v", "1x0")])).unwrap());
    assert!(match_labels(&s, &labels(&[("v", "1.0.3")])).unwrap());
    let s = sel(&[("env", &["^(dev|stage)-[0-9]+$"])]);
    assert!(match_labels(&s, &labels(&[("env", "stage-42")])).unwrap());
    assert!(!match_labels(&s, &labels(&[("env", "prod-42")])).unwrap());
    // Without anchors a value is a glob, not a regex.
    let s = sel(&[("env", &["dev|prod"])]);
    assert!(!match_labels(&s, &labels(&[("env", "dev")])).unwrap());
    // Glob `*` does not cross lines (as Go's `.`).
    let s = sel(&[("x", &["a*b"])]);
    assert!(!match_labels(&s, &labels(&[("x", "a\nb")])).unwrap());
    assert!(match_labels(&s, &labels(&[("x", "a-b")])).unwrap());
}

#[test]
fn invalid_regex_is_an_error() {
    let s = sel(&[("env", &["^[$"])]);
    assert!(matches!(
        match_labels(&s, &labels(&[("env", "x")])),
        Err(RbacError::InvalidRegex { .. })
    ));
}

// ---------- templates ----------

#[test]
fn template_variables_and_prefix_suffix() {
    let t = traits(&[("foo", &["a", "b"]), ("x y", &["z"]), ("logins", &["root"])]);
    assert_eq!(interpolate("{{external.foo}}", &t).unwrap(), ["a", "b"]);
    assert_eq!(
        interpolate("IAM#{{external.foo}};", &t).unwrap(),
        ["IAM#a;", "IAM#b;"]
    );
    assert_eq!(interpolate("{{ external[\"x y\"] }}", &t).unwrap(), ["z"]);
    assert_eq!(interpolate("{{internal.logins}}", &t).unwrap(), ["root"]);
    assert_eq!(interpolate("plain", &t).unwrap(), ["plain"]);
    assert_eq!(
        interpolate("a{b}", &t).unwrap(),
        ["a{b}"],
        "single braces are literal"
    );
}

#[test]
fn template_functions_and_nesting() {
    let t = traits(&[
        ("email", &["alice@example.com", "Bob <bob@corp.io>"]),
        ("x", &["dev-1", "prod-2"]),
    ]);
    assert_eq!(
        interpolate("{{email.local(external.email)}}", &t).unwrap(),
        ["alice", "bob"]
    );
    assert_eq!(
        interpolate(r#"{{regexp.replace(external.x, "^dev-(.*)$", "d$1")}}"#, &t).unwrap(),
        ["d1"],
        "non-matching values dropped"
    );
    assert_eq!(
        interpolate(
            r#"{{regexp.replace(email.local(external.email), "^a(.*)$", "A$1")}}"#,
            &t
        )
        .unwrap(),
        ["Alice"]
    );
    let bad = traits(&[("email", &["not-an-email"])]);
    assert!(!interpolate("{{email.local(external.email)}}", &bad)
        .unwrap_err()
        .is_not_found());
}

/// String literals: `"..."` with backslash escapes (an unknown escape keeps its backslash, as
/// regexes want), `` `...` `` raw; either unterminated is an error.
#[test]
fn template_string_literals() {
    let t = traits(&[
        ("x y", &["z"]),
        ("q\"t\\", &["quoted"]),
        ("x", &["dev.1", "devx2"]),
    ]);
    assert_eq!(interpolate("{{ external[`x y`] }}", &t).unwrap(), ["z"]);
    assert_eq!(
        interpolate(r#"{{ external["q\"t\\"] }}"#, &t).unwrap(),
        ["quoted"]
    );
    for pattern in [r#""^dev\.(.*)$""#, r#"`^dev\.(.*)$`"#] {
        let template = format!("{{{{regexp.replace(external.x, {pattern}, \"$1\")}}}}");
        assert_eq!(interpolate(&template, &t).unwrap(), ["1"], "{template}");
    }
    for bad in [
        r#"{{ external["x y }}"#,
        "{{ external[`x y }}",
        r#"{{ external["x\"#,
    ] {
        let e = interpolate(bad, &t).unwrap_err();
        assert!(!e.is_not_found(), "{bad}: {e}");
    }
}

#[test]
fn template_errors() {
    let t = Traits::new();
    assert!(interpolate("{{external.missing}}", &t)
        .unwrap_err()
        .is_not_found());
    let empty = traits(&[("x", &[])]);
    assert!(interpolate("{{external.x}}", &empty)
        .unwrap_err()
        .is_not_found());
    for bad in [
        "{{internal.bogus}}",
        "{{external.a.b}}",
        "{{foo}}",
        "{{other.x}}",
        "{{external.x",
        "{{}}",
        "{{external.x}}{{external.y}}",
        r#"{{regexp.match(external.x, "a")}}"#,
        r#"{{regexp.replace(external.x, "(", "b")}}"#,
        "{{strings.upper(external.x)}}",
    ] {
        let e = interpolate(bad, &t).unwrap_err();
        assert!(!e.is_not_found(), "{bad}: {e}");
    }
    assert_eq!(
        interpolate("{{internal.bogus}}", &t)
            .unwrap_err()
            .to_string(),
        "unsupported variable \"internal.bogus\""
    );
}

#[test]
fn apply_traits_lists_and_labels() {
    let r = role(
        r#"
kind: role
version: v7
metadata: {name: r}
spec:
  allow:
    logins: ['{{internal.logins}}', 'root', '{{external.missing}}', 'root']
    db_users: ['{{external.db}}']
    azure_identities: ['{{internal.azure_identities}}']
    app_labels:
      env: '{{external.env}}'
      '{{external.key}}': 'v'
      '{{external.nokey}}': 'x'
      team: ['{{external.nothing}}', 'a']
  deny:
    logins: ['{{external.bad']
"#,
    );
    let t = traits(&[
        ("logins", &["alice", "root"]),
        ("db", &["reader"]),
        ("azure_identities", &[ID1, ID2]),
        ("env", &["dev", "stage"]),
        ("key", &["k1", "k2"]),
    ]);
    let out = apply_traits(&r, &t);
    assert_eq!(out.spec.allow.logins, ["alice", "root"]);
    assert_eq!(out.spec.allow.db_users, ["reader"]);
    assert_eq!(out.spec.allow.azure_identities, [ID1, ID2]);
    assert!(out.spec.deny.logins.is_empty(), "bad template dropped");
    let app = out.spec.allow.app_labels.unwrap();
    assert_eq!(app["env"], ["dev", "stage"]);
    assert_eq!(app["k1"], ["v"], "only the first key expansion is used");
    assert!(!app.contains_key("k2"));
    assert_eq!(app[""], ["x"], "failed key becomes empty");
    assert_eq!(app["team"], ["", "a"], "failed value becomes empty");
    assert_eq!(out.spec.allow.db_labels, None, "absent stays absent");
}

// ---------- validation ----------

#[test]
fn validation_errors() {
    let base = "kind: role\nversion: v7\nmetadata: {name: r}\nspec:\n";
    let err = |spec: &str| {
        validate_role(&role(&format!("{base}{spec}")))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("  allow: {logins: ['*']}\n"),
        "wildcard matcher is not allowed in logins"
    );
    assert_eq!(
        err("  allow: {azure_identities: ['*']}\n"),
        "wildcard matcher is not allowed in allow.azure_identities"
    );
    assert_eq!(
        err("  allow: {db_roles: ['*']}\n"),
        "wildcard matcher is not allowed in allow.db_roles"
    );
    assert_eq!(
        err("  allow: {app_labels: {'*': prod}}\n"),
        "selector *:<val> is not supported"
    );
    assert_eq!(
        err("  deny: {db_labels: {'*': [a, '*']}}\n"),
        "selector *:<val> is not supported"
    );
    assert!(err("  allow: {app_labels: {env: '^[$'}}\n").starts_with("invalid regular expression"));
    validate_role(&role(&format!(
        "{base}  deny: {{azure_identities: ['*'], logins: ['*']}}\n"
    )))
    .unwrap();
    let mut r = Role::new("r");
    r.version = "v9".into();
    assert_eq!(
        validate_role(&r).unwrap_err().to_string(),
        "role version \"v9\" is not supported"
    );
    assert!(AccessChecker::new(vec![r], &Traits::new()).is_err());
}

#[test]
fn validation_warnings() {
    let r = role(&format!(
        r#"
kind: role
version: v7
metadata: {{name: r}}
spec:
  allow:
    logins: ['{{{{internal.nope}}}}']
    app_labels: {{env: '{{{{external.env}}}}', x: '^{{{{external.x}}}}$'}}
    azure_identities: ['{ID1}', 'teleport-azure', '{{{{internal.azure_identities}}}}']
    app_labels_expression: 'labels["env"] == "dev"'
"#
    ));
    let w = validate_role(&r).unwrap();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w[0].contains("unsupported variable"), "{w:?}");
    assert!(
        w[1].contains("\"teleport-azure\" is not a valid Azure identity"),
        "{w:?}"
    );
    assert!(
        w[2].contains("app_labels_expression is not evaluated"),
        "{w:?}"
    );
}

// ---------- app access ----------

const DEV: &str = r#"
kind: role
version: v5
metadata: {name: dev}
spec:
  allow:
    app_labels:
      group: "metrics"
  deny:
    app_labels:
      env: "prod"
"#;

#[test]
fn app_allow_and_deny_from_guide() {
    let c = checker(DEV);
    c.check_access_to_app(&labels(&[("group", "metrics"), ("env", "dev")]))
        .unwrap();
    let e = c
        .check_access_to_app(&labels(&[("group", "metrics"), ("env", "prod")]))
        .unwrap_err();
    assert_eq!(e.kind, AccessErrorKind::AccessDenied);
    assert_eq!(
        e.to_string(),
        "access to app denied. User does not have permissions."
    );
    assert!(c
        .check_access_to_app(&labels(&[("group", "other")]))
        .is_err());
}

#[test]
fn deny_in_any_role_wins() {
    let c = checker(&format!(
        "{DEV}---\nkind: role\nversion: v7\nmetadata: {{name: all}}\nspec:\n  allow:\n    app_labels: {{'*': '*'}}\n"
    ));
    c.check_access_to_app(&labels(&[])).unwrap();
    assert!(c.check_access_to_app(&labels(&[("env", "prod")])).is_err());
}

#[test]
fn v3_defaults_vs_v4() {
    let v3 = checker("kind: role\nversion: v3\nmetadata: {name: r}\nspec: {}\n");
    v3.check_access_to_app(&labels(&[("a", "b")])).unwrap();
    v3.check_access_to_db(&labels(&[]), None, None).unwrap();
    assert_eq!(v3.roles()[0].spec.allow.node_labels, Some(Labels::new()));
    let v3_empty =
        checker("kind: role\nversion: v3\nmetadata: {name: r}\nspec: {allow: {app_labels: {}}}\n");
    assert!(v3_empty.check_access_to_app(&labels(&[])).is_err());
    let v4 = checker("kind: role\nversion: v4\nmetadata: {name: r}\nspec: {}\n");
    assert!(v4.check_access_to_app(&labels(&[])).is_err());
    let v3_logins = checker("kind: role\nversion: v3\nmetadata: {name: r}\nspec: {allow: {logins: ['{{internal.logins}}']}}\n");
    assert_eq!(
        v3_logins.roles()[0]
            .spec
            .allow
            .node_labels
            .as_ref()
            .unwrap()["*"],
        ["*"]
    );
}

#[test]
fn templated_app_labels_from_traits() {
    let r = roles("kind: role\nversion: v7\nmetadata: {name: r}\nspec:\n  allow:\n    app_labels:\n      env: '{{external.env}}'\n");
    let c = AccessChecker::new(r.clone(), &traits(&[("env", &["dev"])])).unwrap();
    c.check_access_to_app(&labels(&[("env", "dev")])).unwrap();
    assert!(c.check_access_to_app(&labels(&[("env", "prod")])).is_err());
    // No trait: the value becomes "" and matches nothing.
    let c = AccessChecker::new(r, &Traits::new()).unwrap();
    assert!(c.check_access_to_app(&labels(&[("env", "")])).is_ok());
    assert!(c.check_access_to_app(&labels(&[("env", "dev")])).is_err());
}

#[test]
fn invalid_regex_after_expansion_never_grants() {
    let r = roles(
        "kind: role\nversion: v7\nmetadata: {name: r}\nspec:\n  allow:\n    app_labels: {env: '^{{external.x}}$'}\n---\nkind: role\nversion: v7\nmetadata: {name: ok}\nspec:\n  allow:\n    app_labels: {team: a}\n",
    );
    let c = AccessChecker::new(r, &traits(&[("x", &["(["])])).unwrap();
    let e = c.check_access_to_app(&labels(&[("env", "x")])).unwrap_err();
    assert_eq!(e.kind, AccessErrorKind::BadParameter);
    // Another role still grants (order-independent).
    c.check_access_to_app(&labels(&[("env", "x"), ("team", "a")]))
        .unwrap();
}

#[test]
fn expressions_fail_closed() {
    let c = checker("kind: role\nversion: v7\nmetadata: {name: r}\nspec:\n  allow:\n    app_labels: {'*': '*'}\n    app_labels_expression: 'true'\n");
    assert!(c.check_access_to_app(&labels(&[])).is_err());
    let c = checker("kind: role\nversion: v7\nmetadata: {name: r}\nspec:\n  allow:\n    app_labels: {'*': '*'}\n  deny:\n    app_labels_expression: 'false'\n");
    assert!(c.check_access_to_app(&labels(&[])).is_err());
}

// ---------- databases ----------

const DB: &str = r#"
kind: role
version: v7
metadata: {name: db}
spec:
  allow:
    db_labels: {env: dev}
    db_users: [reader, '{{internal.db_users}}']
    db_names: ['*']
  deny:
    db_users: [admin]
---
kind: role
version: v7
metadata: {name: db2}
spec:
  allow:
    db_labels: {env: stage}
    db_users: ['*']
    db_names: [main]
"#;

#[test]
fn database_access() {
    let c = AccessChecker::new(roles(DB), &traits(&[("db_users", &["alice"])])).unwrap();
    let dev = labels(&[("env", "dev")]);
    let stage = labels(&[("env", "stage")]);
    c.check_access_to_db(&dev, Some("reader"), Some("anything"))
        .unwrap();
    c.check_access_to_db(&dev, Some("alice"), None).unwrap();
    assert!(c.check_access_to_db(&dev, Some("bob"), None).is_err());
    c.check_access_to_db(&stage, Some("bob"), Some("main"))
        .unwrap();
    assert!(
        c.check_access_to_db(&stage, Some("bob"), Some("other"))
            .is_err(),
        "matchers from one role"
    );
    let e = c
        .check_access_to_db(&stage, Some("admin"), Some("main"))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "access to db denied. User does not have permissions."
    );
    assert!(c
        .check_access_to_db(&labels(&[("env", "prod")]), None, None)
        .is_err());
    assert_eq!(c.db_users(), ["*", "alice", "reader"]);
    assert_eq!(c.db_names(), ["*", "main"]);
}

// ---------- Azure identities ----------

fn azure_role(name: &str, ttl: &str, allow: &[&str], deny: &[&str]) -> Role {
    let mut r = Role::new(name);
    r.spec.options.max_session_ttl = Some(ttl.parse().unwrap());
    r.spec.allow.azure_identities = allow.iter().map(|s| s.to_string()).collect();
    r.spec.deny.azure_identities = deny.iter().map(|s| s.to_string()).collect();
    r.spec.allow.app_labels = Some(sel(&[("*", &["*"])]));
    r
}

#[test]
fn azure_identities_union_ttl_and_errors() {
    let upper = ID2.to_uppercase();
    let c = AccessChecker::from_expanded(vec![
        azure_role("long", "10h", &[ID2, "*"], &[]),
        azure_role("short", "1h", &[ID1, &upper], &[]),
    ])
    .unwrap();
    let hour = Duration::from_secs(3600);
    assert_eq!(
        c.check_azure_identities(hour).unwrap(),
        [ID1, upper.as_str()]
    );
    assert_eq!(c.check_azure_identities(2 * hour).unwrap(), [ID2]);
    let e = c.check_azure_identities(11 * hour).unwrap_err();
    assert_eq!(e.kind, AccessErrorKind::AccessDenied);
    assert_eq!(
        e.to_string(),
        "this user cannot access Azure API for 11h0m0s"
    );
    let none = AccessChecker::from_expanded(vec![azure_role("x", "1h", &[], &[])]).unwrap();
    let e = none.check_azure_identities(hour).unwrap_err();
    assert_eq!(e.kind, AccessErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        "this user cannot access Azure API, has no assigned identities"
    );
}

#[test]
fn azure_deny_case_insensitive_and_wildcard() {
    let hour = Duration::from_secs(3600);
    let c = AccessChecker::from_expanded(vec![
        azure_role("a", "1h", &[ID1, ID2], &[]),
        azure_role("b", "1m", &[], &[&ID1.to_uppercase()]),
    ])
    .unwrap();
    assert_eq!(c.check_azure_identities(hour).unwrap(), [ID2]);
    assert!(c.check_azure_identity(&ID2.to_uppercase()).is_ok());
    assert!(c.check_azure_identity(ID1).is_err());
    assert!(
        c.check_azure_identity("*").is_err(),
        "allow * grants nothing"
    );
    let c = AccessChecker::from_expanded(vec![
        azure_role("a", "1h", &[ID1, ID2], &[]),
        azure_role("b", "1m", &[], &["*"]),
    ])
    .unwrap();
    assert!(c.check_azure_identities(hour).unwrap_err().is_not_found());
    assert!(c.check_azure_identity(ID2).is_err());
}

#[test]
fn azure_identities_from_user_traits() {
    let r = roles(
        "kind: role\nversion: v5\nmetadata: {name: azure-cli-access}\nspec:\n  allow:\n    app_labels: {'*': '*'}\n    azure_identities: ['{{internal.azure_identities}}']\n",
    );
    let c = AccessChecker::new(r, &traits(&[("azure_identities", &[ID2, ID1])])).unwrap();
    assert_eq!(
        c.check_azure_identities(Duration::from_secs(60)).unwrap(),
        [ID1, ID2]
    );
    c.check_app_azure_identity(&labels(&[]), &ID1.to_lowercase())
        .unwrap();
    assert!(c.check_app_azure_identity(&labels(&[]), "other").is_err());
}

#[test]
fn app_azure_identity_requires_labels_and_identity_in_same_role() {
    let mut a = azure_role("a", "1h", &[ID1], &[]);
    a.spec.allow.app_labels = Some(sel(&[("env", &["dev"])]));
    let mut b = azure_role("b", "1h", &[], &[]);
    b.spec.allow.app_labels = Some(sel(&[("env", &["prod"])]));
    let c = AccessChecker::from_expanded(vec![a, b]).unwrap();
    c.check_app_azure_identity(&labels(&[("env", "dev")]), ID1)
        .unwrap();
    assert!(c
        .check_app_azure_identity(&labels(&[("env", "prod")]), ID1)
        .is_err());
}

// ---------- rules, ttl, logins ----------

#[test]
fn rules_deny_first() {
    let mut admin = Role::new("admin");
    admin.spec.allow.rules = vec![Rule {
        resources: vec!["*".into()],
        verbs: vec!["*".into()],
        r#where: None,
    }];
    admin.spec.deny.rules = vec![Rule {
        resources: vec!["token".into()],
        verbs: vec!["delete".into()],
        r#where: None,
    }];
    let mut reader = Role::new("reader");
    reader.spec.allow.rules = vec![Rule {
        resources: vec!["role".into()],
        verbs: vec!["list".into(), "read".into()],
        r#where: Some("contains(user.spec.roles, \"x\")".into()),
    }];
    let c = AccessChecker::from_expanded(vec![admin, reader.clone()]).unwrap();
    c.check_rule("role", "create").unwrap();
    let e = c.check_rule("token", "delete").unwrap_err();
    assert_eq!(
        e.to_string(),
        "access denied to perform action \"delete\" on \"token\""
    );
    let c = AccessChecker::from_expanded(vec![reader]).unwrap();
    assert!(
        c.check_rule("role", "read").is_err(),
        "where clauses are not evaluated"
    );
}

#[test]
fn ttl_and_logins() {
    let mut a = Role::new("a");
    a.spec.options.max_session_ttl = Some("8h".parse().unwrap());
    a.spec.allow.logins = vec!["root".into(), "alice".into()];
    let mut b = Role::new("b");
    b.spec.allow.logins = vec!["bob".into(), "root".into()];
    b.spec.deny.logins = vec!["root".into()];
    let c = AccessChecker::from_expanded(vec![a, b]).unwrap();
    assert_eq!(
        c.adjust_session_ttl(Duration::from_secs(12 * 3600)),
        Duration::from_secs(8 * 3600)
    );
    assert_eq!(
        c.adjust_session_ttl(Duration::from_secs(60)),
        Duration::from_secs(60)
    );
    assert_eq!(c.max_session_ttl(), Duration::from_secs(8 * 3600));
    assert_eq!(c.logins(), ["alice", "bob"]);
    assert_eq!(c.role_names(), ["a", "b"]);
}

// ---------- properties ----------

fn arb_labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map("(env|team|tier)", "(dev|prod|stage-[12])", 0..3)
}

fn arb_selector() -> impl Strategy<Value = Option<Labels>> {
    let value = prop_oneof![
        Just("dev".to_string()),
        Just("prod".to_string()),
        Just("stage-*".to_string()),
        Just("^(dev|prod)$".to_string()),
        Just("*".to_string()),
    ];
    let key = prop_oneof![Just("env"), Just("team"), Just("tier"), Just("*")];
    let labels = proptest::collection::btree_map(
        key.prop_map(str::to_string),
        proptest::collection::vec(value, 0..3),
        0..3,
    )
    .prop_map(|mut m: Labels| {
        if m.contains_key("*") {
            m.insert("*".into(), vec!["*".into()]);
        }
        m
    });
    proptest::option::of(labels)
}

fn arb_ids() -> impl Strategy<Value = Vec<String>> {
    let id = prop_oneof![
        Just(ID1.to_string()),
        Just(ID1.to_uppercase()),
        Just(ID2.to_string()),
        Just("*".to_string()),
        "[a-c]{1,2}",
    ];
    proptest::collection::vec(id, 0..4)
}

fn arb_role() -> impl Strategy<Value = Role> {
    (
        arb_selector(),
        arb_selector(),
        arb_ids(),
        arb_ids(),
        prop_oneof![Just(None), Just(Some(1u64)), Just(Some(8)), Just(Some(30))],
        prop_oneof![Just("v3"), Just("v7")],
    )
        .prop_map(|(allow, deny, ids_allow, ids_deny, ttl, version)| {
            let mut r = Role::new("r");
            r.version = version.to_string();
            r.spec.allow.app_labels = allow;
            r.spec.deny.app_labels = deny;
            r.spec.allow.azure_identities = ids_allow;
            r.spec.deny.azure_identities = ids_deny;
            r.spec.options.max_session_ttl = ttl.map(resources::Duration::from_hours);
            r
        })
}

fn decisions(
    c: &AccessChecker,
    app: &BTreeMap<String, String>,
    ttl: Duration,
) -> (bool, Result<Vec<String>, AccessErrorKind>) {
    (
        c.check_access_to_app(app).is_ok(),
        c.check_azure_identities(ttl).map_err(|e| e.kind),
    )
}

proptest! {
    #[test]
    fn adding_deny_never_grants(
        roles in proptest::collection::vec(arb_role(), 1..5),
        extra in arb_selector(),
        extra_ids in arb_ids(),
        app in arb_labels(),
        hours in 0u64..40,
    ) {
        let ttl = Duration::from_secs(hours * 3600);
        let before = AccessChecker::from_expanded(roles.clone()).unwrap();
        let mut more = roles.clone();
        let mut d = Role::new("deny");
        d.spec.deny.app_labels = extra;
        d.spec.deny.azure_identities = extra_ids;
        d.spec.options.max_session_ttl = Some(resources::Duration::from_hours(1));
        more.push(d);
        let after = AccessChecker::from_expanded(more).unwrap();
        if after.check_access_to_app(&app).is_ok() {
            prop_assert!(before.check_access_to_app(&app).is_ok());
        }
        // The Azure identity list can only shrink (the deny-only role has a short TTL, so
        // it can add TTL eligibility but no identities).
        if let Ok(ids_after) = after.check_azure_identities(ttl) {
            let ids_before = before.check_azure_identities(ttl).unwrap_or_default();
            let lower: Vec<String> = ids_before.iter().map(|s| s.to_lowercase()).collect();
            for id in ids_after {
                prop_assert!(lower.contains(&id.to_lowercase()));
            }
        }
    }

    #[test]
    fn role_order_never_changes_a_decision(
        roles in proptest::collection::vec(arb_role(), 1..6),
        app in arb_labels(),
        hours in 0u64..40,
        seed in any::<u64>(),
    ) {
        let ttl = Duration::from_secs(hours * 3600);
        let a = AccessChecker::from_expanded(roles.clone()).unwrap();
        let mut shuffled = roles.clone();
        // Deterministic permutation from the seed.
        let n = shuffled.len();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        shuffled.reverse();
        let b = AccessChecker::from_expanded(shuffled).unwrap();
        prop_assert_eq!(decisions(&a, &app, ttl), decisions(&b, &app, ttl));
    }

    #[test]
    fn azure_identities_sorted_and_unique(
        roles in proptest::collection::vec(arb_role(), 1..6),
        hours in 0u64..40,
    ) {
        let c = AccessChecker::from_expanded(roles).unwrap();
        if let Ok(ids) = c.check_azure_identities(Duration::from_secs(hours * 3600)) {
            prop_assert!(!ids.is_empty());
            let lower: Vec<String> = ids.iter().map(|s| s.to_lowercase()).collect();
            prop_assert!(lower.windows(2).all(|w| w[0] < w[1]), "sorted and unique: {:?}", ids);
            prop_assert!(!ids.contains(&"*".to_string()));
        }
    }

    #[test]
    fn checker_matches_free_function(sel in arb_selector(), app in arb_labels()) {
        let mut r = Role::new("r");
        r.spec.allow.app_labels = sel.clone();
        let c = AccessChecker::from_expanded(vec![r]).unwrap();
        let free = sel.map(|s| match_labels(&s, &app).unwrap()).unwrap_or(false);
        prop_assert_eq!(c.check_access_to_app(&app).is_ok(), free);
    }

    #[test]
    fn interpolate_never_panics(s in "\\PC{0,40}") {
        let _ = interpolate(&s, &traits(&[("x", &["a"])]));
    }
}

#[test]
fn azure_many_distinct_ttls_matches_naive() {
    // 400 roles with distinct TTLs exceed the precomputation budget: answers are then
    // computed per call. Both paths must agree with a direct computation.
    let ids: Vec<String> = (0..400)
        .map(|i| ID1.replace("id1", &format!("id{i}")))
        .collect();
    let roles: Vec<Role> = (0..400u64)
        .map(|i| {
            let mut r = azure_role("r", "1h", &[&ids[i as usize]], &[]);
            r.spec.options.max_session_ttl = Some(resources::Duration::from_secs(60 * (i + 1)));
            if i == 7 {
                r.spec.deny.azure_identities = vec![ids[3].to_uppercase()];
            }
            r
        })
        .collect();
    let c = AccessChecker::from_expanded(roles).unwrap();
    for minutes in [1u64, 2, 100, 399, 400] {
        let got = c
            .check_azure_identities(Duration::from_secs(60 * minutes))
            .unwrap();
        let mut want: Vec<String> = ((minutes - 1) as usize..400)
            .filter(|&i| i != 3)
            .map(|i| ids[i].clone())
            .collect();
        want.sort_by_key(|s| s.to_lowercase());
        assert_eq!(got, want, "{minutes}m");
    }
    assert!(c
        .check_azure_identities(Duration::from_secs(60 * 401))
        .unwrap_err()
        .is_access_denied());
}
