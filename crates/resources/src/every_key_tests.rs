//! Every mapping of every resource kind refuses an unknown key, naming the document, the
//! line, the key's full path and the valid keys; the documents below set every field, and
//! the test proves it (the valid keys listed for each mapping must be the keys it sets).

#![allow(clippy::unwrap_used)]

use crate::probe::{self, Probe};
use crate::{parse_resources, ParseError, SUPPORTED_ROLE_VERSIONS};

const META: &str = "metadata:
  name: full
  description: every field set
  labels:
    env: dev
  expires: 2030-01-01T00:00:00Z
  revision: '7'
";

/// The `dynamic_labels` of an app or a database, every field set.
const DYNAMIC_LABELS: &str = "  dynamic_labels:
    arch:
      command: [uname, -p]
      period: 1m0s
      result: x86_64
";

/// Parses `text`, which must be refused with a message starting with `start`.
fn refused_with(text: &str, start: &str) -> ParseError {
    let err = parse_resources(text).unwrap_err();
    assert!(err.message.starts_with(start), "{err}");
    err
}

fn conditions() -> String {
    "    logins: [root]
    namespaces: [default]
    app_labels: {env: dev}
    db_labels: {env: dev}
    node_labels: {env: dev}
    kubernetes_labels: {env: dev}
    app_labels_expression: 'labels[\"env\"] == \"dev\"'
    db_labels_expression: 'labels[\"env\"] == \"dev\"'
    db_users: [default]
    db_names: ['0']
    db_roles: [reader]
    azure_identities: ['{{internal.azure_identities}}']
    aws_role_arns: ['arn:aws:iam::1:role/r']
    gcp_service_accounts: [sa@p.iam.gserviceaccount.com]
    kubernetes_groups: [devs]
    kubernetes_users: [dev]
    windows_desktop_logins: [Administrator]
    rules:
    - resources: [role]
      verbs: [list, read]
      where: contains(user.spec.roles, \"admin\")
"
    .to_string()
}

fn role(version: &str) -> String {
    format!(
        "kind: role\nversion: {version}\n{META}spec:
  options:
    max_session_ttl: 8h0m0s
    forward_agent: true
    client_idle_timeout: 1h
    disconnect_expired_cert: true
  allow:
{c}  deny:
{c}",
        c = conditions()
    )
}

fn documents() -> Vec<(String, String)> {
    let mut docs: Vec<(String, String)> = SUPPORTED_ROLE_VERSIONS
        .iter()
        .map(|v| (format!("role {v}"), role(v)))
        .collect();
    docs.push((
        "user".into(),
        format!(
            "kind: user\nversion: v2\n{META}spec:
  roles: [access]
  traits:
    logins: [root]
  created_by:
    time: 2024-01-01T00:00:00Z
    user:
      name: admin
"
        ),
    ));
    docs.push((
        "token".into(),
        format!(
            "kind: token\nversion: v2\n{META}spec:
  roles: [Node, App]
  join_method: azure
  azure:
    allow:
    - subscription: 00000000-0000-0000-0000-000000000000
      resource_groups: [group1]
      tenant: 11111111-2222-3333-4444-555555555555
  suggested_labels:
    env: dev
  bot_name: bot
"
        ),
    ));
    docs.push((
        "app".into(),
        format!(
            "kind: app\nversion: v3\n{META}spec:
  uri: cloud://Azure
  public_addr: azure.example.com
  cloud: Azure
  insecure_skip_verify: true
{DYNAMIC_LABELS}"
        ),
    ));
    docs.push((
        "db".into(),
        format!(
            "kind: db\nversion: v3\n{META}spec:
  protocol: redis
  uri: rediss://cache.redis.cache.windows.net:6380
  ca_cert: PEM
  tls:
    mode: verify-full
    server_name: cache.redis.cache.windows.net
    ca_cert: PEM
  azure:
    name: cache
    resource_id: /subscriptions/0/resourceGroups/g/providers/Microsoft.Cache/Redis/cache
    is_enterprise: true
{DYNAMIC_LABELS}"
        ),
    ));
    docs.push((
        "cluster_name".into(),
        format!(
            "kind: cluster_name\nversion: v2\n{META}spec:
  cluster_name: example.com
  cluster_id: abc
"
        ),
    ));
    docs.push((
        "cert_authority".into(),
        format!(
            "kind: cert_authority\nversion: v2\n{META}spec:
  cluster_name: example.com
  type: host
  active_keys:
    tls:
    - cert: PEM
      key: PEM
    jwt:
    - public_key: PEM
      private_key: PEM
"
        ),
    ));
    docs
}

/// Mappings whose keys are names the user chooses.
const FREE: [&str; 9] = [
    "metadata.labels",
    "spec.allow.app_labels",
    "spec.allow.db_labels",
    "spec.allow.node_labels",
    "spec.allow.kubernetes_labels",
    "spec.traits",
    "spec.suggested_labels",
    "spec.dynamic_labels",
    "spec.deny.app_labels",
];
const FREE_DENY: [&str; 3] = [
    "spec.deny.db_labels",
    "spec.deny.node_labels",
    "spec.deny.kubernetes_labels",
];

const VALID: &str = "kind: role\nversion: v7\nmetadata:\n  name: first\n";

/// Checks one way of writing the probe's document: `Ok(text)` is the input, `doc` the
/// document number the probe's resource has in it.
fn check(p: &Probe, what: &str, text: &str, doc: usize) -> Result<(), String> {
    let result = parse_resources(text);
    if p.free {
        return result
            .map(|_| ())
            .map_err(|e| format!("{what}: `{}` takes any key, but: {e}", p.path));
    }
    let err: ParseError = match result {
        Ok(_) => return Err(format!("{what}: `{}` was accepted", p.path)),
        Err(e) => e,
    };
    if let Some(problem) = probe::check_refusal(p, &err.message) {
        return Err(format!("{what}: {problem}"));
    }
    let line = probe::line_of(text, &p.key);
    if err.document != doc || err.line != line || line.is_none() {
        return Err(format!(
            "{what}: `{}` is in document {doc} at line {line:?}, the error says: {err}",
            p.path
        ));
    }
    Ok(())
}

#[test]
fn every_mapping_of_every_kind_refuses_unknown_keys() {
    let free: Vec<&str> = FREE.iter().chain(FREE_DENY.iter()).copied().collect();
    let mut failures = Vec::new();
    let mut refused = 0;
    for (name, text) in documents() {
        parse_resources(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let probes = probe::probes(&doc, &free);
        assert!(probes.len() > 5, "{name}");
        for p in probes {
            let yaml = serde_yaml_ng::to_string(&p.doc).unwrap();
            let second = format!("{VALID}---\n{yaml}");
            let json = serde_json::to_string_pretty(&serde_json::json!([
                serde_yaml_ng::from_str::<serde_json::Value>(VALID).unwrap(),
                serde_json::to_value(&p.doc).unwrap(),
            ]))
            .unwrap();
            let yaml_seq = serde_yaml_ng::to_string(&serde_yaml_ng::Value::Sequence(vec![
                serde_yaml_ng::from_str(VALID).unwrap(),
                p.doc.clone(),
            ]))
            .unwrap();
            for (what, input, n) in [
                ("yaml", &yaml, 1),
                ("second yaml document", &second, 2),
                ("json array", &json, 2),
                ("yaml sequence", &yaml_seq, 2),
            ] {
                if let Err(e) = check(&p, &format!("{name}, {what}"), input, n) {
                    failures.push(e);
                }
            }
            refused += usize::from(!p.free);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(refused >= 150, "{refused} refusals checked");
}

#[test]
fn the_issue_examples_are_refused_with_path_and_line() {
    let text = "kind: role\nversion: v5\nmetadata:\n  name: no-azure-identities\nspec:\n  allow:\n    app_labels:\n      '*': '*'\n  deny:\n    azure_identitie: ['*']\n";
    let err = parse_resources(text).unwrap_err();
    assert_eq!(err.line, Some(10), "{err}");
    assert!(err.to_string().starts_with("document 1, line 10, column 5: unknown key `spec.deny.azure_identitie` (did you mean `azure_identities`?); the valid keys in `spec.deny` are: logins, "), "{err}");
    let text = "kind: role\nversion: v5\nmetadata:\n  name: dev\nspec:\n  allow:\n    app_label:\n      env: dev\n";
    refused_with(
        text,
        "unknown key `spec.allow.app_label` (did you mean `app_labels`?)",
    );
}

#[test]
fn documents_with_every_field_round_trip() {
    for (name, text) in documents() {
        for r in parse_resources(&text).unwrap_or_else(|e| panic!("{name}: {e}")) {
            let yaml = crate::Resource::to_yaml(&r).unwrap();
            assert_eq!(crate::parse_resource(&yaml).unwrap(), r, "{name}: {yaml}");
            let json = r.to_json().unwrap();
            assert_eq!(crate::parse_resource(&json).unwrap(), r, "{name}: {json}");
        }
    }
}

#[test]
fn every_example_resource_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.lines().any(|l| l.starts_with("kind: ")) {
            continue; // a teleport.yaml or the emulator's fixture
        }
        let all = parse_resources(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!all.is_empty(), "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 3, "{seen} example resource files");
}

#[test]
fn the_guides_resources_load() {
    // The Azure join guide's token.yaml, comments included.
    let token = "# token.yaml
kind: token
version: v2
metadata:
  # the token name is not a secret because instances must prove that they are
  # running in your Azure subscription to use this token
  name: azure-token
spec:
  # use the minimal set of roles required
  roles: [Node]
  join_method: azure
  azure:
    allow:
      # specify the Azure subscription which Teleport processes may join from
      - subscription: 11111111-1111-1111-1111-111111111111
      # multiple allow rules are supported
      - subscription: 22222222-2222-2222-2222-222222222222
      # resource_groups is optional and allows you to restrict the resource group of
      # joining Teleport processes
      - subscription: 33333333-3333-3333-3333-333333333333
        resource_groups: [\"group1\", \"group2\"]
";
    // The Azure CLI guide's denial.
    let deny = "kind: role
version: v5
metadata:
  name: \"no-azure-identities\"
spec:
  allow:
    app_labels:
      '*': '*'
  deny:
    azure_identities:
      - '*'
";
    let all = parse_resources(&format!("{token}---\n{deny}")).unwrap();
    let crate::Resource::Role(role) = &all[1] else {
        panic!("{all:?}")
    };
    assert_eq!(role.spec.deny.azure_identities, ["*"]);
}

#[test]
fn teleport_settings_this_build_lacks_are_named_as_such() {
    let text = "kind: role\nversion: v7\nmetadata: {name: r}\nspec:\n  options:\n    cert_format: standard\n";
    refused_with(text, "unknown key `spec.options.cert_format` (a Teleport setting this build does not support: remove it)");
}

#[test]
fn a_repeated_key_is_refused() {
    // A selector's key, a metadata label, a dynamic label.
    let errs = [
        (
            "kind: role\nversion: v7\nmetadata: {name: r}\nspec:\n  deny:\n    db_labels:\n      env: dev\n      env: prod\n",
            "spec.deny.db_labels: duplicate key `env`",
        ),
        (
            "kind: app\nversion: v3\nmetadata:\n  name: a\n  labels:\n    env: dev\n    env: prod\nspec: {uri: 'http://a'}\n",
            "metadata.labels: duplicate key `env`",
        ),
        (
            "kind: db\nversion: v3\nmetadata: {name: d}\nspec:\n  protocol: redis\n  uri: h:6379\n  dynamic_labels:\n    arch: {command: [uname]}\n    arch: {command: [id]}\n",
            "spec.dynamic_labels: duplicate key `arch`",
        ),
    ]
    .map(|(text, start)| refused_with(text, start));
    assert!(errs[0].line.is_some(), "{}", errs[0]);
}

#[test]
fn concatenated_json_objects_name_document_and_line() {
    let text = "{\"kind\": \"role\", \"version\": \"v7\", \"metadata\": {\"name\": \"a\"}}\n{\"kind\": \"role\", \"version\": \"v7\",\n \"metadata\": {\"name\": \"b\"},\n \"spec\": {\"deny\": {\"azure_identitie\": [\"*\"]}}}\n";
    let err = parse_resources(text).unwrap_err();
    assert_eq!((err.document, err.line), (2, Some(4)), "{err}");
    assert!(
        err.message.starts_with(
            "unknown key `spec.deny.azure_identitie` (did you mean `azure_identities`?)"
        ),
        "{err}"
    );
}
