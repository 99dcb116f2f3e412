#![allow(clippy::unwrap_used)]

use super::*;

const ROLES: &str = r#"
kind: role
version: v5
metadata:
  name: dev
spec:
  allow:
    app_labels:
      group: "metrics"
  deny:
    app_labels:
      env: "prod"
---
# a comment-only document is skipped
---
kind: role
version: v5
metadata:
  name: azure-cli-access
spec:
  options:
    max_session_ttl: 8h0m0s
  allow:
    app_labels:
      '*': '*'
    azure_identities:
      - '{{internal.azure_identities}}'
"#;

#[test]
fn parses_multi_document_roles() {
    let res = parse_resources(ROLES).unwrap();
    assert_eq!(res.len(), 2);
    assert_eq!(res[0].kind(), "role");
    assert_eq!(res[0].name(), "dev");
    let Resource::Role(dev) = &res[0] else {
        panic!()
    };
    assert_eq!(
        dev.spec.allow.app_labels,
        Some(Labels::from([("group".into(), vec!["metrics".into()])]))
    );
    assert_eq!(dev.spec.allow.db_labels, None);
    assert_eq!(dev.spec.options.max_session_ttl(), DEFAULT_MAX_SESSION_TTL);
    let Resource::Role(az) = &res[1] else {
        panic!()
    };
    assert_eq!(
        az.spec.options.max_session_ttl(),
        std::time::Duration::from_secs(8 * 3600)
    );
    assert_eq!(
        az.spec.allow.azure_identities,
        vec!["{{internal.azure_identities}}"]
    );
    assert_eq!(
        az.spec.allow.app_labels.as_ref().unwrap()["*"],
        vec!["*".to_string()]
    );
}

#[test]
fn labels_accept_scalar_list_and_explicit_empty() {
    let text = "kind: role\nversion: v3\nmetadata: {name: r}\nspec:\n  allow:\n    app_labels: {}\n    db_labels:\n      env: [a, b]\n      n: 1\n";
    let Resource::Role(r) = parse_resource(text).unwrap() else {
        panic!()
    };
    assert_eq!(r.spec.allow.app_labels, Some(Labels::new()));
    let db = r.spec.allow.db_labels.unwrap();
    assert_eq!(db["env"], vec!["a", "b"]);
    assert_eq!(db["n"], vec!["1"]);
}

#[test]
fn v3_defaults() {
    let mut r = Role::new("r");
    r.version = "v3".into();
    r.spec.allow.app_labels = Some(Labels::new());
    r.set_defaults();
    assert_eq!(
        r.spec.allow.app_labels,
        Some(Labels::new()),
        "explicit {{}} kept"
    );
    assert_eq!(r.spec.allow.db_labels.as_ref().unwrap()["*"], vec!["*"]);
    assert_eq!(
        r.spec.allow.node_labels,
        Some(Labels::new()),
        "no logins, no nodes"
    );
    let mut r = Role::new("r");
    r.version = "v3".into();
    r.spec.allow.logins = vec!["root".into()];
    r.set_defaults();
    assert_eq!(r.spec.allow.node_labels.as_ref().unwrap()["*"], vec!["*"]);
    let mut r = Role::new("r");
    r.set_defaults();
    assert_eq!(r.spec.allow.app_labels, None, "v4+ untouched");
}

#[test]
fn unsupported_version_and_kind() {
    let err = parse_resources("kind: role\nversion: v9\nmetadata: {name: r}\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "document 1: role version \"v9\" is not supported"
    );
    let err = parse_resources("kind: x\nversion: v1\nmetadata: {name: r}\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "document 1: unsupported resource kind \"x\""
    );
    let err = parse_resources("version: v1\nmetadata: {name: r}\n").unwrap_err();
    assert!(err.to_string().contains("missing kind"), "{err}");
    let err = parse_resources("kind: role\nmetadata: {name: r}\n").unwrap_err();
    assert!(err.to_string().contains("missing version"), "{err}");
    let err = parse_resources("kind: role\nversion: v7\nmetadata: {}\n").unwrap_err();
    assert!(err.to_string().contains("missing metadata.name"), "{err}");
    let err = parse_resources("kind: user\nversion: v3\nmetadata: {name: u}\n").unwrap_err();
    assert!(
        err.to_string()
            .contains("user version \"v3\" is not supported"),
        "{err}"
    );
}

#[test]
fn errors_name_document_line_and_path() {
    let text = "kind: role\nversion: v7\nmetadata: {name: a}\n---\nkind: role\nversion: v7\nmetadata:\n  name: b\nspec:\n  allow:\n    logins: {a: b}\n";
    let err = parse_resources(text).unwrap_err();
    assert_eq!(err.document, 2);
    assert_eq!(err.line, Some(11), "{err}");
    assert!(
        err.message.starts_with("spec.allow.logins: invalid type"),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("document 2, line 11, column "),
        "{err}"
    );
    assert!(!err.message.contains(" at line "), "{err}");

    let text = "kind: role\nversion: v7\nmetadata: {name: a}\nspec:\n  allow:\n    app_labels:\n      env: {x: 1}\n";
    let err = parse_resources(text).unwrap_err();
    assert_eq!(err.line, Some(7), "{err}");
    assert!(err.message.starts_with("spec.allow.app_labels"), "{err}");

    let err = parse_resources("kind: role\n  bad: [\n").unwrap_err();
    assert_eq!(err.document, 1);
    assert!(err.line.is_some(), "{err}");
}

#[test]
fn json_object_and_array() {
    let one = r#"{"kind":"role","version":"v7","metadata":{"name":"a"},"spec":{"allow":{"logins":["root"]}}}"#;
    let res = parse_resources(one).unwrap();
    assert_eq!(res.len(), 1);
    let two = format!("[{one},\n\t{}]", one.replace("\"a\"", "\"b\""));
    let res = parse_resources(&two).unwrap();
    assert_eq!(
        res.iter().map(Resource::name).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let bad = r#"[{"kind":"role","version":"v7","metadata":{"name":"a"}}, {"kind":"nope","version":"v1","metadata":{"name":"b"}}]"#;
    let err = parse_resources(bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "document 2: unsupported resource kind \"nope\""
    );
    let err = parse_resources("{\"kind\": }").unwrap_err();
    assert_eq!(err.line, Some(1));
}

#[test]
fn round_trip_yaml_and_json() {
    for r in parse_resources(ROLES).unwrap() {
        let again = parse_resource(&r.to_yaml().unwrap()).unwrap();
        assert_eq!(again, r);
        let again = parse_resource(&r.to_json().unwrap()).unwrap();
        assert_eq!(again, r);
    }
    let y = parse_resources(ROLES).unwrap()[1].to_yaml().unwrap();
    assert!(y.contains("max_session_ttl: 8h0m0s"), "{y}");
    assert!(!y.contains("description"), "{y}");
}

const TOKEN: &str = r#"
kind: token
version: v2
metadata:
  name: azure-token
spec:
  roles: [Node, app, db]
  join_method: azure
  azure:
    allow:
      - subscription: 11111111-1111-1111-1111-111111111111
        resource_groups: ["group1", "group2"]
"#;

#[test]
fn token_parse_and_validate() {
    let Resource::Token(t) = parse_resource(TOKEN).unwrap() else {
        panic!()
    };
    assert_eq!(
        t.spec.roles,
        [SystemRole::Node, SystemRole::App, SystemRole::Db]
    );
    assert_eq!(t.spec.join_method, JoinMethod::Azure);
    assert_eq!(t.roles_string(), "Node,App,Db");
    let rule = &t.spec.azure.as_ref().unwrap().allow[0];
    assert_eq!(rule.resource_groups, ["group1", "group2"]);
    assert_eq!(rule.tenant, "");

    let mut bad = t.clone();
    bad.spec.azure = None;
    assert_eq!(
        bad.validate().unwrap_err().to_string(),
        "\"azure\" configuration must be provided for the join method \"azure\""
    );
    bad.spec.azure = Some(AzureJoinSpec::default());
    assert_eq!(
        bad.validate().unwrap_err().to_string(),
        "the \"azure\" join method requires defined azure allow rules"
    );
    bad.spec.azure = Some(AzureJoinSpec {
        allow: vec![AzureRule::default()],
    });
    assert_eq!(
        bad.validate().unwrap_err().to_string(),
        "the \"azure\" join method requires azure allow rules with non-empty subscription"
    );
    let mut bad = t.clone();
    bad.spec.roles.clear();
    assert!(bad.validate().is_err());
    // parse_resources validates too.
    let err = parse_resources(
        "kind: token\nversion: v2\nmetadata: {name: t}\nspec: {roles: [Node], join_method: azure}\n",
    )
    .unwrap_err();
    assert!(
        err.message.contains("configuration must be provided"),
        "{err}"
    );
    // A misspelt section is refused, not dropped.
    let err = parse_resources(&TOKEN.replace("  azure:\n", "  azurex:\n")).unwrap_err();
    assert!(
        err.message
            .contains("unknown key `spec.azurex` (did you mean `azure`?)"),
        "{err}"
    );
    // Default join method.
    let plain = ProvisionToken::new("secret", vec![SystemRole::App]);
    plain.validate().unwrap();
    assert!(plain.to_yaml_string().contains("join_method: token"));
}

impl ProvisionToken {
    fn to_yaml_string(&self) -> String {
        Resource::Token(self.clone()).to_yaml().unwrap()
    }
}

#[test]
fn system_roles() {
    assert_eq!(
        SystemRole::parse_list("app,db").unwrap(),
        [SystemRole::App, SystemRole::Db]
    );
    assert_eq!(
        SystemRole::parse_list(" Node , node,App,windowsdesktop").unwrap(),
        [
            SystemRole::Node,
            SystemRole::App,
            SystemRole::WindowsDesktop
        ]
    );
    assert_eq!("Db".parse::<SystemRole>().unwrap().to_string(), "Db");
    assert!(SystemRole::parse_list("app,bogus").is_err());
    assert!(SystemRole::parse_list("").is_err());
    assert_eq!("AZURE".parse::<JoinMethod>().unwrap(), JoinMethod::Azure);
    assert!("iam".parse::<JoinMethod>().is_err());
}

#[test]
fn app_and_db_labels() {
    let text = r#"
kind: app
version: v3
metadata:
  name: grafana
  labels: {env: prod, arch: none}
spec:
  uri: http://localhost:3000
  dynamic_labels:
    arch:
      command: ["uname", "-p"]
      period: 1m0s
      result: x86_64
---
kind: app
version: v3
metadata: {name: azure-cli}
spec:
  cloud: Azure
---
kind: db
version: v3
metadata: {name: redis, labels: {env: dev}}
spec:
  protocol: redis
  uri: example.redis.cache.windows.net:6380
  tls: {mode: verify-full}
  azure: {resource_id: /subscriptions/x/resourceGroups/y/providers/Microsoft.Cache/Redis/example}
"#;
    let res = parse_resources(text).unwrap();
    let Resource::App(app) = &res[0] else {
        panic!()
    };
    let labels = app.all_labels();
    assert_eq!(labels["arch"], "x86_64");
    assert_eq!(labels["env"], "prod");
    assert_eq!(
        app.spec.dynamic_labels["arch"].period.0,
        std::time::Duration::from_secs(60)
    );
    let Resource::App(az) = &res[1] else { panic!() };
    assert!(az.is_azure_cloud());
    let mut az = az.clone();
    az.check_and_set_defaults().unwrap();
    assert_eq!(az.spec.uri, "cloud://Azure");
    let Resource::Database(db) = &res[2] else {
        panic!()
    };
    assert_eq!(db.all_labels()["env"], "dev");
    assert!(!db.spec.azure.as_ref().unwrap().is_enterprise);
    let mut bad = db.clone();
    bad.spec.tls = Some(DatabaseTls {
        mode: "sometimes".into(),
        ..Default::default()
    });
    assert!(bad.validate().is_err());
    let mut bad = app.clone();
    bad.spec.cloud = Some("Oracle".into());
    assert!(bad.validate().is_err());
}

#[test]
fn user_cluster_and_ca() {
    let text = r#"
kind: user
version: v2
metadata: {name: alice}
spec:
  roles: [access]
  traits:
    logins: [root]
    azure_identities: null
    team: dev
---
kind: cluster_name
version: v2
metadata: {name: cluster-name}
spec: {cluster_name: example.com, cluster_id: abc}
---
kind: cert_authority
version: v2
metadata: {name: example.com}
spec:
  cluster_name: example.com
  type: host
  active_keys:
    tls:
      - cert: "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n"
        key: "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n"
"#;
    let res = parse_resources(text).unwrap();
    let Resource::User(u) = &res[0] else { panic!() };
    assert_eq!(u.trait_values(trait_names::LOGINS), ["root"]);
    assert!(u.trait_values(trait_names::AZURE_IDENTITIES).is_empty());
    assert_eq!(u.trait_values("team"), ["dev"]);
    let Resource::ClusterName(c) = &res[1] else {
        panic!()
    };
    assert_eq!(c.spec.cluster_name, "example.com");
    let Resource::CertAuthority(ca) = &res[2] else {
        panic!()
    };
    assert_eq!(ca.spec.ca_type, CaType::Host);
    let exported = Resource::CertAuthority(ca.without_secrets())
        .to_yaml()
        .unwrap();
    assert!(!exported.contains("PRIVATE KEY"), "{exported}");
    assert!(exported.contains("BEGIN CERTIFICATE"));
}

#[test]
fn metadata_expires_rfc3339() {
    let text = "kind: token\nversion: v2\nmetadata:\n  name: t\n  expires: 2030-01-02T03:04:05Z\nspec: {roles: [app]}\n";
    let r = parse_resource(text).unwrap();
    let exp = r.metadata().expires.unwrap();
    assert_eq!(exp.year(), 2030);
    assert!(r.to_yaml().unwrap().contains("2030-01-02T03:04:05Z"));
    assert!(!r
        .metadata()
        .is_expired(time::macros::datetime!(2029-01-01 0:00 UTC)));
}

#[test]
fn kind_refs() {
    assert_eq!(
        parse_kind_ref("role/admin").unwrap(),
        ("role", Some("admin".into()))
    );
    assert_eq!(parse_kind_ref("roles").unwrap(), ("role", None));
    assert_eq!(parse_kind_ref("dbs").unwrap().0, "db");
    assert_eq!(parse_kind_ref("databases/redis").unwrap().0, "db");
    assert_eq!(parse_kind_ref("apps").unwrap().0, "app");
    assert_eq!(parse_kind_ref("tokens").unwrap().0, "token");
    assert_eq!(
        parse_kind_ref("users/bob").unwrap(),
        ("user", Some("bob".into()))
    );
    assert!(parse_kind_ref("widgets").is_err());
    assert!(parse_kind_ref("role/").is_err());
}

#[test]
fn azure_identity_format() {
    let ok = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure";
    assert!(is_valid_azure_identity(ok));
    assert!(is_valid_azure_identity(&ok.to_uppercase()));
    assert!(is_valid_azure_identity(
        &ok.replace("teleport-azure", "my_id")
    ));
    assert!(!is_valid_azure_identity("teleport-azure"));
    assert!(!is_valid_azure_identity(&format!("{ok}/extra")));
    assert!(!is_valid_azure_identity(
        &ok.replace("Microsoft.ManagedIdentity", "Microsoft.Compute")
    ));
    assert!(!is_valid_azure_identity(
        &ok.replace("00000000-", "zz000000-")
    ));
}

#[test]
fn parse_resource_of_typed() {
    let r: Role = parse_resource_of("kind: role\nversion: v7\nmetadata: {name: x}\n").unwrap();
    assert_eq!(r.metadata.name, "x");
    let e = parse_resource_of::<Role>("kind: role\nversion: v7\nmetadata: 5\n").unwrap_err();
    assert!(e.message.starts_with("metadata: invalid type"), "{e}");
}

#[test]
fn empty_input_is_empty_list() {
    assert!(parse_resources("").unwrap().is_empty());
    assert!(parse_resources("---\n---\n# nothing\n").unwrap().is_empty());
}

proptest::proptest! {
    #[test]
    fn parser_never_panics(text in "\\PC{0,200}") {
        let _ = parse_resources(&text);
    }
}

#[test]
fn full_error_text() {
    let text = "kind: role\nversion: v7\nmetadata: {name: a}\n---\nkind: role\nversion: v7\nmetadata:\n  name: b\nspec:\n  allow:\n    app_labels:\n      env: {x: 1}\n";
    let e = parse_resources(text).unwrap_err();
    assert_eq!(e.to_string(), "document 2, line 12, column 12: spec.allow.app_labels.env: invalid type: map, expected a string or a list of strings");
    let e = parse_resources("kind: role\nversion: v7\nmetadata: {name: a}\n---\nkind: [\n")
        .unwrap_err();
    assert_eq!(e.document, 2, "{e}");
    assert_eq!(e.line, Some(6), "{e}");
}

#[test]
fn command_labels_run_every_period_or_every_minute() {
    let argv = vec!["uname".to_string(), "-m".to_string()];
    let every = |period| CommandLabel::every(argv.clone(), period);
    let label = every(Some("1m30s")).unwrap();
    assert_eq!(label.command, argv);
    assert_eq!(label.period.0, std::time::Duration::from_secs(90));
    assert!(label.result.is_empty());
    assert_eq!(every(None).unwrap().period.0, CommandLabel::DEFAULT_PERIOD);
    assert_eq!(
        CommandLabel::DEFAULT_PERIOD,
        std::time::Duration::from_secs(60)
    );
    let err = every(Some("often")).unwrap_err().to_string();
    assert!(err.contains("often"), "{err}");
}
