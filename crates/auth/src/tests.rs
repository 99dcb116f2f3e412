#![allow(clippy::unwrap_used)]

use super::*;

async fn server() -> Arc<AuthServer> {
    let backend: Arc<dyn Backend> = Arc::new(backend::MemoryBackend::new().await);
    AuthServer::init(
        backend,
        AuthConfig {
            cluster_name: "example".into(),
            proxy_public_addr: Some("proxy.example.com:3080".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn user_with_password(auth: &AuthServer, name: &str, roles: &[&str]) {
    user_with_traits(auth, name, roles, BTreeMap::new()).await
}

/// A user created with `traits` whose password is set through the invite link.
async fn user_with_traits(
    auth: &AuthServer,
    name: &str,
    roles: &[&str],
    traits: BTreeMap<String, Vec<String>>,
) {
    let user = new_user(name, roles.iter().map(|s| s.to_string()).collect(), traits).unwrap();
    let invite = auth.create_user(&Caller::Admin, user).await.unwrap();
    assert!(invite
        .invite_url
        .starts_with("https://proxy.example.com:3080/web/invite/"));
    auth.set_password_with_token(&invite.invite_token, "correct horse battery")
        .await
        .unwrap();
}

/// A join token for `roles` that the administrator created, valid for an hour.
async fn admin_token(auth: &AuthServer, roles: Vec<resources::SystemRole>) -> ProvisionToken {
    let hour = Duration::from_secs(3600);
    let token = auth.create_token(&Caller::Admin, roles, hour, None).await;
    token.unwrap()
}

/// The error of a login as `user` with a wrong password, as text.
async fn wrong_password(auth: &AuthServer, user: &str) -> String {
    let refused = auth.authenticate(user, "whatever12345", "t").await;
    refused.unwrap_err().to_string()
}

/// The caller of a certificate `auth` issued: `cert_pem` its PEM.
fn caller_of(cert_pem: &str) -> Caller {
    Caller::from_identity(Identity::from_cert_pem(cert_pem).unwrap())
}

/// An agent `host` joined with `roles`, as it calls the auth service.
fn agent(auth: &AuthServer, host: &str, roles: &[&str]) -> Caller {
    use base64::Engine;
    let key = pki::generate_key().unwrap();
    let certs = auth
        .issue_host_certs(
            host,
            host,
            roles.iter().map(|r| r.to_string()).collect(),
            &base64::engine::general_purpose::STANDARD.encode(&key.public_key_der),
            &[],
        )
        .unwrap();
    caller_of(&certs.tls_cert)
}

/// A user `name`'s session as it calls the auth service, with a certificate of the default TTL.
async fn user_session(auth: &AuthServer, name: &str) -> Caller {
    let key = pki::generate_key().unwrap();
    let certs = auth
        .generate_user_cert(name, &key.public_key_der, Duration::ZERO)
        .await
        .unwrap();
    caller_of(&certs.tls_cert)
}

/// An app agent's heartbeat announcing `app`.
fn app_heartbeat(app: &resources::App) -> agents::Heartbeat {
    agents::Heartbeat {
        kind: "app".into(),
        app: Some(app.clone()),
        db: None,
        features: Vec::new(),
    }
}

/// A database agent's heartbeat announcing `db` with `features`.
fn db_heartbeat(db: &resources::Database, features: Vec<String>) -> agents::Heartbeat {
    agents::Heartbeat {
        kind: "db".into(),
        app: None,
        db: Some(db.clone()),
        features,
    }
}

#[tokio::test]
async fn init_is_idempotent_and_shared() {
    let backend: Arc<dyn Backend> = Arc::new(backend::MemoryBackend::new().await);
    let cfg = AuthConfig {
        cluster_name: "one".into(),
        ..Default::default()
    };
    let (a, b) = tokio::join!(
        AuthServer::init(backend.clone(), cfg.clone()),
        AuthServer::init(backend.clone(), cfg.clone())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.host_ca().pin(), b.host_ca().pin());
    assert_eq!(a.user_ca().pin(), b.user_ca().pin());
    let other = AuthServer::init(
        backend,
        AuthConfig {
            cluster_name: "two".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(other, Err(AuthError::BadParameter(_))));
}

#[tokio::test]
async fn invite_sets_password_once() {
    let auth = server().await;
    let user = new_user("alice", vec!["access".into()], BTreeMap::new()).unwrap();
    let invite = auth.create_user(&Caller::Admin, user).await.unwrap();
    let short = auth
        .set_password_with_token(&invite.invite_token, "short")
        .await;
    assert!(matches!(short, Err(AuthError::BadParameter(_))));
    auth.set_password_with_token(&invite.invite_token, "correct horse battery")
        .await
        .unwrap();
    let again = auth
        .set_password_with_token(&invite.invite_token, "correct horse battery")
        .await;
    assert!(matches!(again, Err(AuthError::NotFound(_))));
}

#[tokio::test]
async fn duplicate_user_and_unknown_role_are_refused() {
    let auth = server().await;
    user_with_password(&auth, "alice", &["access"]).await;
    let dup = new_user("alice", vec!["access".into()], BTreeMap::new()).unwrap();
    assert!(matches!(
        auth.create_user(&Caller::Admin, dup).await,
        Err(AuthError::AlreadyExists(_))
    ));
    let bad = new_user("bob", vec!["nope".into()], BTreeMap::new()).unwrap();
    let err = auth.create_user(&Caller::Admin, bad).await.unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[tokio::test]
async fn login_issues_a_certificate_with_roles_and_traits() {
    let auth = server().await;
    let mut traits = BTreeMap::new();
    let id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure";
    traits.insert("azure_identities".to_string(), vec![id.to_string()]);
    traits.insert("logins".to_string(), vec!["root".to_string()]);
    user_with_traits(&auth, "alice", &["access"], traits).await;
    let key = pki::generate_key().unwrap();
    let certs = auth
        .generate_user_cert(
            "alice",
            &key.public_key_der,
            Duration::from_secs(100 * 3600),
        )
        .await
        .unwrap();
    let ident = Identity::from_cert_pem(&certs.tls_cert).unwrap();
    assert_eq!(ident.username, "alice");
    assert_eq!(ident.groups, vec!["access".to_string()]);
    assert_eq!(ident.logins, vec!["root".to_string()]);
    assert_eq!(ident.azure_identities, vec![id.to_string()]);
    // 100h requested, access allows 30h.
    let ttl = ident.expires - now();
    assert!(
        ttl <= time::Duration::hours(30) && ttl > time::Duration::hours(29),
        "{ttl}"
    );
    let events = auth
        .search_events(&Caller::Admin, &api::EventsQuery::default())
        .await
        .unwrap();
    assert!(events.iter().any(|e| e["event"] == "cert.create"));
}

#[tokio::test]
async fn wrong_passwords_lock_the_account() {
    let auth = server().await;
    user_with_password(&auth, "alice", &["access"]).await;
    for _ in 0..MAX_LOGIN_ATTEMPTS {
        let err = auth
            .authenticate("alice", "wrong password!", "test")
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::AccessDenied(_)), "{err}");
    }
    // Even the right password is refused now.
    let err = auth
        .authenticate("alice", "correct horse battery", "test")
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::LimitExceeded(_)), "{err}");
    let events = auth
        .search_events(
            &Caller::Admin,
            &api::EventsQuery {
                types: Some("user.login".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(events.len(), MAX_LOGIN_ATTEMPTS + 1);
    assert!(events
        .iter()
        .all(|e| e["code"] == "T1000W" && e["success"] == false));
}

#[tokio::test]
async fn unknown_user_gets_the_same_error_as_a_wrong_password() {
    let auth = server().await;
    user_with_password(&auth, "alice", &["access"]).await;
    assert_eq!(
        wrong_password(&auth, "nobody").await,
        wrong_password(&auth, "alice").await
    );
}

#[tokio::test]
async fn rules_govern_the_admin_api() {
    let auth = server().await;
    user_with_password(&auth, "ed", &["editor"]).await;
    user_with_password(&auth, "al", &["access"]).await;
    let ed = user_session(&auth, "ed").await;
    let al = user_session(&auth, "al").await;
    let role = resources::parse_resources(
        "kind: role\nversion: v7\nmetadata:\n  name: dev\nspec:\n  allow:\n    app_labels:\n      env: dev\n",
    )
    .unwrap()
    .remove(0);
    let denied = auth
        .upsert_resource(&al, role.clone(), false)
        .await
        .unwrap_err();
    assert!(matches!(denied, AuthError::AccessDenied(_)), "{denied}");
    assert_eq!(
        auth.upsert_resource(&ed, role.clone(), false)
            .await
            .unwrap(),
        "created"
    );
    let dup = auth
        .upsert_resource(&ed, role.clone(), false)
        .await
        .unwrap_err();
    assert!(
        dup.to_string()
            .contains("use -f or --force flag to overwrite"),
        "{dup}"
    );
    assert_eq!(
        auth.upsert_resource(&ed, role, true).await.unwrap(),
        "updated"
    );
    let roles = auth.get_resources(&ed, "role", None).await.unwrap();
    assert!(roles.iter().any(|r| r["metadata"]["name"] == "dev"));
    // A role in use cannot be deleted.
    let err = auth
        .delete_resource(&ed, "role", "editor")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("still in use"), "{err}");
    auth.delete_resource(&ed, "role", "dev").await.unwrap();
    assert!(matches!(
        auth.get_resources(&ed, "role", Some("dev")).await,
        Err(AuthError::NotFound(_))
    ));
    assert!(matches!(
        auth.get_resources(&Caller::Anonymous, "role", None).await,
        Err(AuthError::AccessDenied(_))
    ));
}

#[tokio::test]
async fn tokens_expire() {
    let auth = server().await;
    let token = admin_token(&auth, vec![resources::SystemRole::App]).await;
    assert_eq!(token.metadata.name.len(), 32);
    let listed = auth
        .get_resources(&Caller::Admin, "token", None)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn admin_identity_is_a_host_certificate_with_the_admin_role() {
    let auth = server().await;
    let pem = auth.admin_identity_pem().unwrap();
    let ident =
        Identity::from_cert_pem(&pem[pem.find("-----BEGIN CERTIFICATE").unwrap()..]).unwrap();
    assert!(matches!(Caller::from_identity(ident), Caller::Admin));
}

#[tokio::test]
async fn heartbeats_carry_the_agents_features() {
    let auth = server().await;
    let agent = agent(&auth, "db-host", &["Db"]);
    let db = resources::Database::new("cache", "redis", "rediss://cache:6380");
    let hb = |features: Vec<String>| db_heartbeat(&db, features);
    auth.heartbeat(&agent, hb(vec![agents::FEATURE_DB_MUX.into()]))
        .await
        .unwrap();
    let servers = auth.servers("db").await.unwrap();
    assert_eq!(servers.len(), 1);
    assert!(servers[0].has_feature(agents::FEATURE_DB_MUX));
    assert!(!servers[0].has_feature("something-else"));
    // Bad announcements are refused and leave the entry as it was.
    for bad in [
        vec![String::new()],
        vec!["x".repeat(65)],
        vec!["f".into(); 33],
    ] {
        let err = auth.heartbeat(&agent, hb(bad)).await.unwrap_err();
        assert!(matches!(err, AuthError::BadParameter(_)), "{err}");
    }
    assert!(auth.servers("db").await.unwrap()[0].has_feature(agents::FEATURE_DB_MUX));
    // An agent from before features announces none.
    auth.heartbeat(&agent, hb(Vec::new())).await.unwrap();
    assert!(auth.servers("db").await.unwrap()[0].features.is_empty());
}

/// What an agent announces about its apps and databases reaches users'
/// terminals (`tsh apps ls`, `tsh db ls`, `tctl get`): labels, descriptions
/// and addresses with control characters, or beyond the bounds of
/// `resources::served`, are refused and leave the entry as it was.
#[tokio::test]
async fn heartbeats_carry_only_printable_bounded_text() {
    use resources::served::{MAX_DESCRIPTION, MAX_LABELS, MAX_LABEL_KEY, MAX_LABEL_VALUE};
    let auth = server().await;
    let agent = agent(&auth, "both-host", &["App", "Db"]);
    let app_hb = app_heartbeat;
    let db_hb = |db: &resources::Database| db_heartbeat(db, Vec::new());
    let mut app = resources::App::new("grafana", "http://127.0.0.1:3000");
    app.metadata.description = "Grafana: dashboards".into();
    app.metadata
        .labels
        .insert("Cost Center".into(), "ops & dev".into());
    app.metadata
        .labels
        .insert("k".repeat(MAX_LABEL_KEY), "v".repeat(MAX_LABEL_VALUE));
    let mut db = resources::Database::new("cache", "redis", "rediss://cache:6380");
    db.metadata.labels.insert("env".into(), "prod".into());
    auth.heartbeat(&agent, app_hb(&app)).await.unwrap();
    auth.heartbeat(&agent, db_hb(&db)).await.unwrap();

    const HOSTILE: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J";
    let dynamic = |result: &str| resources::CommandLabel {
        command: vec!["uname".into(), "-p".into()],
        period: resources::Duration(Duration::from_secs(60)),
        result: result.into(),
    };
    let mut bad_apps = Vec::new();
    let mut bad_dbs = Vec::new();
    let mut both =
        |f: &dyn Fn(&mut resources::Metadata, &mut BTreeMap<String, resources::CommandLabel>)| {
            let mut a = app.clone();
            f(&mut a.metadata, &mut a.spec.dynamic_labels);
            bad_apps.push(a);
            let mut d = db.clone();
            f(&mut d.metadata, &mut d.spec.dynamic_labels);
            bad_dbs.push(d);
        };
    both(&|m, _| {
        m.labels.insert(format!("env{HOSTILE}"), "dev".into());
    });
    both(&|m, _| {
        m.labels.insert("env".into(), format!("dev{HOSTILE}"));
    });
    both(&|m, _| {
        m.labels.insert("env".into(), "dev\nforged: line".into());
    });
    both(&|m, _| {
        m.labels.insert("env".into(), "dev\u{9b}2J".into());
    });
    both(&|m, _| {
        m.labels.insert(String::new(), "dev".into());
    });
    both(&|m, _| {
        m.labels.insert("k".repeat(MAX_LABEL_KEY + 1), "v".into());
    });
    both(&|m, _| {
        m.labels.insert("k".into(), "v".repeat(MAX_LABEL_VALUE + 1));
    });
    both(&|m, _| {
        for i in 0..=MAX_LABELS {
            m.labels.insert(format!("l{i}"), "v".into());
        }
    });
    both(&|m, _| m.description = format!("a {HOSTILE} database"));
    both(&|m, _| m.description = "d".repeat(MAX_DESCRIPTION + 1));
    both(&|_, d| {
        d.insert("arch".into(), dynamic(&format!("x86_64{HOSTILE}")));
    });
    both(&|_, d| {
        d.insert(format!("arch{HOSTILE}"), dynamic("x86_64"));
    });
    let mut a = app.clone();
    a.spec.uri = format!("http://127.0.0.1:3000/{HOSTILE}");
    bad_apps.push(a);
    let mut d = db.clone();
    d.spec.uri = format!("rediss://cache:6380{HOSTILE}");
    bad_dbs.push(d);
    let mut d = db.clone();
    d.spec.azure = Some(resources::DatabaseAzure {
        name: format!("cache{HOSTILE}"),
        ..Default::default()
    });
    bad_dbs.push(d);
    let mut d = db.clone();
    d.spec.tls = Some(resources::DatabaseTls {
        server_name: format!("cache{HOSTILE}"),
        ..Default::default()
    });
    bad_dbs.push(d);

    for bad in &bad_apps {
        let err = auth.heartbeat(&agent, app_hb(bad)).await.unwrap_err();
        assert!(matches!(err, AuthError::BadParameter(_)), "{err}");
        assert!(!err.to_string().contains('\u{1b}'), "{err}");
    }
    for bad in &bad_dbs {
        let err = auth.heartbeat(&agent, db_hb(bad)).await.unwrap_err();
        assert!(matches!(err, AuthError::BadParameter(_)), "{err}");
    }
    // The entries are the last good announcements.
    let apps = auth.servers("app").await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].app.as_ref(), Some(&app));
    let dbs = auth.servers("db").await.unwrap();
    assert_eq!(dbs.len(), 1);
    assert_eq!(dbs[0].db.as_ref(), Some(&db));
}

/// A joining agent gets the names the auth service knows it by (its host ID
/// and node name) and nothing it asks for beyond them: not the cluster's
/// internal server name, not another host's name, not a wildcard.
#[tokio::test]
async fn agents_hold_only_their_own_names() {
    use base64::Engine;
    let auth = server().await;
    let roles = vec![resources::SystemRole::App, resources::SystemRole::Proxy];
    let token = admin_token(&auth, roles).await;
    let key = pki::generate_key().unwrap();
    let req = |host_id: &str, node_name: &str, roles: &str, dns_names: Vec<String>| {
        api::join::RegisterRequest {
            token: token.metadata.name.clone(),
            host_id: host_id.into(),
            node_name: node_name.into(),
            roles: vec![roles.into()],
            public_key: base64::engine::general_purpose::STANDARD.encode(&key.public_key_der),
            dns_names,
        }
    };
    let cluster_local = pki::tls::cluster_server_name("example");
    let bad = [
        req("h1", "node-1", "App", vec![cluster_local.clone()]),
        req("h1", "node-1", "App", vec!["proxy.example.com".into()]),
        req("h1", "node-1", "App", vec!["*.example.com".into()]),
        req("h1", "node-1", "App", vec!["127.0.0.1".into()]),
        req(&cluster_local, "node-1", "App", vec![]),
        req("h1", &cluster_local, "App", vec![]),
        req("h1", "localhost", "App", vec![]),
        req("h1", "*.example.com", "App", vec![]),
        // The token allows Proxy, but proxies do not join.
        req("h1", "node-1", "Proxy", vec![]),
    ];
    for r in bad {
        let err = auth.register_with_token(&r, "10.0.0.1").await.unwrap_err();
        assert!(
            matches!(err, AuthError::BadParameter(_) | AuthError::AccessDenied(_)),
            "{r:?}: {err}"
        );
    }
    // A good request, naming its own names (or none), gets exactly those.
    for asked in [vec![], vec!["node-1".to_string(), "H1".to_string()]] {
        let certs = auth
            .register_with_token(&req("h1", "node-1", "App", asked), "10.0.0.1")
            .await
            .unwrap();
        use rustls::pki_types::pem::PemObject as _;
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(certs.tls_cert.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .map(|n| n.to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(sans, ["DNSName(h1)", "DNSName(node-1)"]);
        let err = pki::tls::check_server_role(&der).unwrap_err().to_string();
        assert!(err.contains("system role App"), "{err}");
    }
    // A node name that is not a DNS name stays out of the certificate.
    auth.register_with_token(&req("h2", "my_host", "App", vec![]), "10.0.0.1")
        .await
        .unwrap();
}

/// What a session certificate carries beside the checked route is checked too: a non-Azure app
/// takes no Azure identity (nothing would check it), an Azure identity must be one the roles
/// allow, and database users and names are single lines of bounded length.
#[tokio::test]
async fn session_certificates_carry_only_checked_text() {
    use base64::Engine;
    let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
    let auth = server().await;
    let id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/reader";
    let mut traits = BTreeMap::new();
    traits.insert("azure_identities".to_string(), vec![id.to_string()]);
    traits.insert("db_users".to_string(), vec!["*".to_string()]);
    traits.insert("db_names".to_string(), vec!["*".to_string()]);
    user_with_traits(&auth, "alice", &["access"], traits).await;
    let alice = user_session(&auth, "alice").await;
    let agent = agent(&auth, "agent-host", &["App", "Db"]);
    let mut azure = resources::App::new("azure-cli", "");
    azure.spec.cloud = Some("Azure".into());
    azure.check_and_set_defaults().unwrap();
    let plain = resources::App::new("grafana", "http://127.0.0.1:3000");
    // What reaches session certificates from an agent is a single line.
    let mut forged = plain.clone();
    forged.spec.public_addr = "grafana.example.com\nforged: line".into();
    let err = auth
        .heartbeat(&agent, app_heartbeat(&forged))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::BadParameter(_)), "{err}");
    for app in [&azure, &plain] {
        auth.heartbeat(&agent, app_heartbeat(app)).await.unwrap();
    }
    let cache = resources::Database::new("cache", "redis", "rediss://cache:6380");
    auth.heartbeat(&agent, db_heartbeat(&cache, Vec::new()))
        .await
        .unwrap();

    let key = pki::generate_key().unwrap();
    let app_req = |app: &str, identity: &str| apps::AppCertRequest {
        app: app.into(),
        azure_identity: identity.into(),
        public_key: b64(&key.public_key_der),
    };
    // The allowed identity on the Azure app; nothing on the other app.
    let ok = auth
        .generate_app_cert(&alice, &app_req("azure-cli", id))
        .await
        .unwrap();
    let route = Identity::from_cert_pem(&ok.tls_cert)
        .unwrap()
        .route_to_app
        .unwrap();
    assert_eq!(route.azure_identity, id);
    auth.generate_app_cert(&alice, &app_req("grafana", ""))
        .await
        .unwrap();
    let refused = [
        ("grafana", id.to_string()),
        ("grafana", "anything".to_string()),
        ("azure-cli", format!("{id}-other")),
        ("azure-cli", format!("{id}\nforged: line")),
        ("azure-cli", "x".repeat(5000)),
        ("no-such-app", String::new()),
    ];
    for (app, identity) in refused {
        let err = auth
            .generate_app_cert(&alice, &app_req(app, &identity))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::BadParameter(_) | AuthError::AccessDenied(_) | AuthError::NotFound(_)
            ),
            "{app} {identity:?}: {err}"
        );
    }

    let db_req = |db: &str, user: &str, name: &str| dbs::DbCertRequest {
        database: db.into(),
        db_user: user.into(),
        db_name: name.into(),
        public_key: b64(&key.public_key_der),
    };
    auth.generate_db_cert(&alice, &db_req("cache", "reader", "0"))
        .await
        .unwrap();
    for (db, user, name) in [
        ("cache", "reader\r\nAUTH x", ""),
        ("cache", "reader", "0\nforged"),
        ("cache", &"u".repeat(5000) as &str, ""),
        ("cache", "reader", &"n".repeat(5000) as &str),
        ("no-such-db", "reader", ""),
    ] {
        let err = auth
            .generate_db_cert(&alice, &db_req(db, user, name))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::BadParameter(_) | AuthError::NotFound(_)),
            "{db} {user:?} {name:?}: {err}"
        );
    }
}

/// A resource name is one backend key component: names with '/' (which listing would skip and
/// deletion refuse) or control characters are refused when created, and nothing is stored.
#[tokio::test]
async fn resource_names_are_single_key_components() {
    let auth = server().await;
    for name in ["x/y", "../users/alice", "a\nb"] {
        let doc = format!(
            "kind: role\nversion: v7\nmetadata:\n  name: {}\nspec:\n  allow:\n    app_labels:\n      env: dev\n",
            serde_json::Value::String(name.to_string())
        );
        let role = resources::parse_resources(&doc).unwrap().remove(0);
        let err = auth
            .upsert_resource(&Caller::Admin, role, true)
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::BadParameter(_)), "{name:?}: {err}");
        let user = new_user(name, vec!["access".into()], BTreeMap::new()).unwrap();
        let err = auth.create_user(&Caller::Admin, user).await.unwrap_err();
        assert!(matches!(err, AuthError::BadParameter(_)), "{name:?}: {err}");
    }
    let long = "r".repeat(MAX_RESOURCE_NAME_LEN + 1);
    let role = resources::parse_resources(&format!(
        "kind: role\nversion: v7\nmetadata:\n  name: {long}\nspec: {{}}\n"
    ))
    .unwrap()
    .remove(0);
    assert!(auth
        .upsert_resource(&Caller::Admin, role, true)
        .await
        .is_err());
    for prefix in ["roles/", "users/"] {
        let items = backend::get_prefix(&*auth.backend, prefix).await.unwrap();
        assert!(
            items
                .iter()
                .all(|i| !i.key[prefix.len()..].contains(['/', '\n'])
                    && i.key.len() <= prefix.len() + MAX_RESOURCE_NAME_LEN),
            "{:?}",
            items.iter().map(|i| &i.key).collect::<Vec<_>>()
        );
    }
}

/// A login names a user before anything is proven: a name no user can have (too long, '/',
/// control characters) is refused like a wrong password, and nothing is written under it.
#[tokio::test]
async fn logins_with_impossible_names_write_nothing() {
    let auth = server().await;
    user_with_password(&auth, "alice", &["access"]).await;
    let wrong = wrong_password(&auth, "alice").await;
    let long = "u".repeat(100_000);
    for name in [long.as_str(), "a/b", "a\nb"] {
        for _ in 0..MAX_LOGIN_ATTEMPTS + 1 {
            assert_eq!(wrong_password(&auth, name).await, wrong);
        }
    }
    let attempts = backend::get_prefix(&*auth.backend, "login_attempts/")
        .await
        .unwrap();
    assert!(
        attempts
            .iter()
            .all(|i| i.key.starts_with("login_attempts/alice/")),
        "{:?}",
        attempts.iter().map(|i| i.key.len()).collect::<Vec<_>>()
    );
    assert!(backend::get_prefix(&*auth.backend, "locks/")
        .await
        .unwrap()
        .is_empty());
    let events = auth
        .search_events(&Caller::Admin, &api::EventsQuery::default())
        .await
        .unwrap();
    assert!(events
        .iter()
        .all(|e| e["user"].as_str().is_none_or(|u| u.len() <= 253)));
}

/// Agents' events are parsed into [`AuditEvent`]s: a batch with a kind agents
/// may not send is refused whole; what is recorded carries the agent's
/// identity, the server's time and code, and only the kind's fields.
#[tokio::test]
async fn agents_record_only_their_own_kinds_under_their_identity() {
    let auth = server().await;
    let agent = agent(&auth, "db-host", &["Db"]);
    let session = audit::DbSession {
        user: "alice".into(),
        sid: "s1".into(),
        db_service: "cache".into(),
        db_protocol: "redis".into(),
        db_user: "default".into(),
        db_name: String::new(),
        server_id: "someone-else".into(),
        db_uri: Some("cache:6380".into()),
        db_origin: Some(String::new()),
    };
    let start = AuditEvent::DbSessionStart(audit::DbSessionStart {
        session: session.clone(),
        outcome: audit::Outcome::Success,
    })
    .to_value();
    let mut forged = start.clone();
    forged["code"] = "TDB00W".into();
    forged["time"] = "2001-01-01T00:00:00Z".into();
    forged["extra"] = "x".into();
    let grouped: serde_json::Value = serde_json::from_str(&format!(
        r#"{},"db_queries":["GET a","GET b"]}}"#,
        session.query_prefix()
    ))
    .unwrap();
    let login = serde_json::json!({
        "event": "user.login", "code": "T1000I", "user": "alice",
        "method": "local", "success": true, "addr.remote": "x",
    });
    let search = |types: &str| {
        let auth = auth.clone();
        let q = api::EventsQuery {
            types: Some(types.into()),
            ..Default::default()
        };
        async move { auth.search_events(&Caller::Admin, &q).await.unwrap() }
    };
    // One refused kind: nothing of the batch is recorded.
    let err = auth
        .agent_events(&agent, vec![start.clone(), login])
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::BadParameter(_)), "{err}");
    assert!(search("db.session.start,user.login").await.is_empty());
    // Users may not send agents' events.
    let user = Caller::User(Box::new(Identity {
        username: "alice".into(),
        ..Default::default()
    }));
    assert!(matches!(
        auth.agent_events(&user, vec![start.clone()]).await,
        Err(AuthError::AccessDenied(_))
    ));
    auth.agent_events(&agent, vec![forged, grouped])
        .await
        .unwrap();
    let starts = search("db.session.start").await;
    assert_eq!(starts.len(), 1);
    let e = &starts[0];
    assert_eq!(e["server_id"], "db-host");
    assert_eq!(e["code"], "TDB00I");
    assert!(e.get("extra").is_none(), "{e}");
    assert_ne!(e["time"], "2001-01-01T00:00:00Z");
    let queries = search("db.session.query").await;
    assert_eq!(
        queries
            .iter()
            .map(|q| q["db_query"].clone())
            .collect::<Vec<_>>(),
        vec!["GET a", "GET b"]
    );
    assert!(queries
        .iter()
        .all(|q| q["code"] == "TDB02I" && q["server_id"] == "db-host"));
}
