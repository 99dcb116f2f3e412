//! Golden tests: every variant serializes to the JSON the emitters built by
//! hand before the enum existed (the `json!` expressions below are theirs,
//! with sample values), and agents' events parse back only as agent kinds.

#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;

fn same(event: AuditEvent, before: Value) {
    assert_eq!(event.to_value(), before, "{}", event.event());
    // The text form is the same object.
    let text: Value = serde_json::from_str(&event.to_json()).unwrap();
    assert_eq!(text, before);
}

#[test]
fn user_events() {
    let roles = vec!["access".to_string(), "editor".to_string()];
    let change = UserChange {
        user: "admin".into(),
        name: "alice".into(),
        roles: roles.clone(),
    };
    for (event, kind, code) in [
        (
            AuditEvent::UserCreate(change.clone()),
            "user.create",
            "T1002I",
        ),
        (AuditEvent::UserUpdate(change), "user.update", "T1003I"),
    ] {
        same(
            event,
            json!({
                "event": kind, "code": code, "user": "admin",
                "name": "alice", "roles": roles,
            }),
        );
    }
    same(
        AuditEvent::UserPasswordChange(PasswordChange {
            user: "alice".into(),
        }),
        json!({
            "event": "user.password_change", "code": "T1005I", "user": "alice",
        }),
    );
}

#[test]
fn logins_and_locks() {
    let (user, remote) = ("alice", "10.0.0.1:5000");
    same(
        AuditEvent::UserLogin(UserLogin {
            user: user.into(),
            method: LoginMethod::Local,
            outcome: Outcome::Success,
            remote_addr: remote.into(),
        }),
        json!({
            "event": "user.login", "code": "T1000I", "user": user,
            "method": "local", "success": true, "addr.remote": remote,
        }),
    );
    let e = "access denied";
    same(
        AuditEvent::UserLogin(UserLogin {
            user: user.into(),
            method: LoginMethod::Local,
            outcome: Outcome::Failure(e.into()),
            remote_addr: remote.into(),
        }),
        json!({
            "event": "user.login", "code": "T1000W", "user": user,
            "method": "local", "success": false, "error": e.to_string(),
            "addr.remote": remote,
        }),
    );
    same(
        AuditEvent::LockCreated(LockCreated {
            user: "system".into(),
            target: LockTarget { user: user.into() },
            reason: "too many failed login attempts".into(),
        }),
        json!({
            "event": "lock.created", "code": "TLK00I", "user": "system",
            "target": {"user": user}, "reason": "too many failed login attempts",
        }),
    );
}

#[test]
fn certificates() {
    let groups = vec!["access".to_string()];
    same(
        AuditEvent::CertCreate(CertCreate::User {
            identity: CertIdentity {
                user: "alice".into(),
                roles: groups.clone(),
                expires: "2026-12-03T09:00:00Z".into(),
            },
        }),
        json!({
            "event": "cert.create", "code": "TC000I", "cert_type": "user",
            "identity": {"user": "alice", "roles": groups,
                         "expires": "2026-12-03T09:00:00Z"},
        }),
    );
    same(
        AuditEvent::CertCreate(CertCreate::Db {
            user: "alice".into(),
            db_service: "cache".into(),
            db_user: "default".into(),
        }),
        json!({
            "event": "cert.create", "code": "TC000I", "user": "alice",
            "cert_type": "db", "db_service": "cache", "db_user": "default",
        }),
    );
}

/// The tables the resource events came from.
fn audit_code(kind: &str, created: bool) -> (String, &'static str) {
    match (kind, created) {
        ("role", true) => ("role.created".into(), "T9000I"),
        ("role", false) => ("role.created".into(), "T9000I"),
        ("user", true) => ("user.create".into(), "T1002I"),
        ("user", false) => ("user.update".into(), "T1003I"),
        ("token", _) => ("join_token.create".into(), "TJT00I"),
        ("app", true) => ("app.create".into(), "TAP03I"),
        ("app", false) => ("app.update".into(), "TAP04I"),
        ("db", true) => ("db.create".into(), "TDB03I"),
        ("db", false) => ("db.update".into(), "TDB04I"),
        (k, _) => (format!("{k}.create"), "TRC00I"),
    }
}

fn audit_delete_code(kind: &str) -> (String, &'static str) {
    match kind {
        "role" => ("role.deleted".into(), "T9001I"),
        "user" => ("user.delete".into(), "T1004I"),
        "token" => ("join_token.delete".into(), "TJT01I"),
        "app" => ("app.delete".into(), "TAP05I"),
        "db" => ("db.delete".into(), "TDB05I"),
        k => (format!("{k}.delete"), "TRC02I"),
    }
}

#[test]
fn resource_writes_and_deletes() {
    let name = "thing";
    for kind in ["role", "user", "token", "app", "db"] {
        let typed = ResourceKind::from_name(kind).unwrap();
        for created in [true, false] {
            let (event, code) = audit_code(kind, created);
            same(
                AuditEvent::ResourceWrite(ResourceWrite {
                    user: "admin".into(),
                    name: name.into(),
                    kind: typed,
                    created,
                }),
                json!({
                    "event": event, "code": code, "user": "admin", "name": name, "kind": kind,
                }),
            );
        }
        let (event, code) = audit_delete_code(kind);
        same(
            AuditEvent::ResourceDelete(ResourceDelete {
                user: "admin".into(),
                name: name.into(),
                kind: typed,
            }),
            json!({
                "event": event, "code": code, "user": "admin", "name": name, "kind": kind,
            }),
        );
    }
    // The kinds the API refuses to write have no event.
    assert_eq!(ResourceKind::from_name("cert_authority"), None);
    assert_eq!(ResourceKind::from_name("cluster_name"), None);
}

#[test]
fn join_tokens_and_joins() {
    let roles = [SystemRole::App, SystemRole::Db];
    same(
        AuditEvent::JoinTokenCreate(JoinTokenCreate {
            user: "admin".into(),
            roles: roles.to_vec(),
            join_method: JoinMethod::Token,
        }),
        json!({
            "event": "join_token.create", "code": "TJT00I", "user": "admin",
            "roles": roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "join_method": "token",
        }),
    );
    let asked = ["App".to_string(), "Db".to_string()];
    let remote = "10.0.0.2:4000";
    let token_join = |outcome: Outcome| InstanceJoin {
        host_id: "h1".into(),
        node_name: "node".into(),
        role: asked.join(","),
        method: JoinMethod::Token,
        token_name: None,
        outcome,
        azure: None,
        remote_addr: remote.into(),
    };
    for (code, success, error) in [
        ("TJ002I", true, None),
        ("TJ002E", false, Some("bad token".to_string())),
    ] {
        let mut before = json!({
            "event": "instance.join", "code": code, "success": success,
            "host_id": "h1", "node_name": "node", "role": asked.join(","),
            "method": "token", "error": error, "addr.remote": remote,
        });
        // The one change: a successful join no longer has `"error": null`.
        if success {
            before.as_object_mut().unwrap().remove("error");
        }
        let outcome = match error {
            None => Outcome::Success,
            Some(e) => Outcome::Failure(e),
        };
        same(AuditEvent::InstanceJoin(token_join(outcome)), before);
    }
    // Azure joins: the token's name, and the VM when it worked.
    let azure_join = |outcome: Outcome, azure: Option<AzureJoin>| InstanceJoin {
        host_id: "h1".into(),
        node_name: "node".into(),
        role: asked.join(","),
        method: JoinMethod::Azure,
        token_name: Some("azure-token".into()),
        outcome,
        azure,
        remote_addr: remote.into(),
    };
    let base = json!({
        "event": "instance.join", "method": "azure", "token_name": "azure-token",
        "host_id": "h1", "node_name": "node", "role": asked.join(","),
        "addr.remote": remote,
    });
    let mut ok = base.clone();
    ok["code"] = "TJ002I".into();
    ok["success"] = true.into();
    ok["azure"] = json!({
        "vm_id": "vm", "subscription": "sub",
        "resource_group": "rg", "tenant": "tenant",
    });
    same(
        AuditEvent::InstanceJoin(azure_join(
            Outcome::Success,
            Some(AzureJoin {
                vm_id: "vm".into(),
                subscription: "sub".into(),
                resource_group: "rg".into(),
                tenant: "tenant".into(),
            }),
        )),
        ok,
    );
    let mut refused = base;
    refused["code"] = "TJ002E".into();
    refused["success"] = false.into();
    refused["error"] = "no such VM".into();
    same(
        AuditEvent::InstanceJoin(azure_join(Outcome::Failure("no such VM".into()), None)),
        refused,
    );
}

fn app_session(server_id: &str) -> AppSession {
    AppSession {
        user: "alice".into(),
        sid: "s1".into(),
        app_name: "azure-cli".into(),
        azure_identity: "/subscriptions/x/identity".into(),
        server_id: server_id.into(),
    }
}

#[test]
fn app_sessions() {
    same(
        AuditEvent::AppSessionStart(AppSessionStart {
            session: app_session(""),
            app_public_addr: "azure-cli.example.com".into(),
        }),
        json!({
            "event": "app.session.start", "code": "T2007I", "user": "alice",
            "sid": "s1", "app_name": "azure-cli",
            "app_public_addr": "azure-cli.example.com",
            "azure_identity": "/subscriptions/x/identity",
        }),
    );
    same(
        AuditEvent::AppSessionEnd(AppSessionEnd {
            session: app_session(""),
        }),
        json!({
            "event": "app.session.end", "code": "T2011I", "user": "alice",
            "sid": "s1", "app_name": "azure-cli",
            "azure_identity": "/subscriptions/x/identity",
        }),
    );
    same(
        AuditEvent::AppSessionRequest(AppSessionRequest {
            session: app_session(""),
            method: "GET".into(),
            host: "management.azure.com".into(),
            path: "/subscriptions".into(),
            status_code: 200,
        }),
        json!({
                "event": "app.session.request", "code": "T2009I",
                "user": "alice", "sid": "s1",
                "app_name": "azure-cli", "azure_identity": "/subscriptions/x/identity",
                "method": "GET", "host": "management.azure.com", "path": "/subscriptions", "status_code": 200,
        }),
    );
}

/// What the database service merged its events from.
fn with(mut v: Value, extra: Value) -> Value {
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

fn db_session(allowed: bool) -> DbSession {
    DbSession {
        user: "alice".into(),
        sid: "s2".into(),
        db_service: "cache".into(),
        db_protocol: "redis".into(),
        db_user: "default".into(),
        db_name: "".into(),
        server_id: "agent-1".into(),
        db_uri: allowed.then(|| "cache.redis.cache.windows.net:6380".into()),
        db_origin: allowed.then(|| "cloud".into()),
    }
}

/// The old open object: the text without its closing brace.
fn open_object(v: &Value) -> String {
    let mut text = v.to_string();
    if text.ends_with('}') {
        text.pop();
    }
    text
}

#[test]
fn db_sessions() {
    let base = json!({
        "user": "alice",
        "sid": "s2",
        "db_service": "cache",
        "db_protocol": "redis",
        "db_user": "default",
        "db_name": "",
        "server_id": "agent-1",
    });
    let msg = "access to db denied";
    same(
        AuditEvent::DbSessionStart(DbSessionStart {
            session: db_session(false),
            outcome: Outcome::Failure(msg.into()),
        }),
        with(
            base.clone(),
            json!({
                "event": "db.session.start", "code": "TDB00W", "success": false,
                "error": msg,
            }),
        ),
    );
    let base = with(
        base,
        json!({ "db_uri": "cache.redis.cache.windows.net:6380", "db_origin": "cloud" }),
    );
    same(
        AuditEvent::DbSessionStart(DbSessionStart {
            session: db_session(true),
            outcome: Outcome::Success,
        }),
        with(
            base.clone(),
            json!({"event": "db.session.start", "code": "TDB00I", "success": true}),
        ),
    );
    same(
        AuditEvent::DbSessionQueryFailed(DbSessionQueryFailed {
            session: db_session(true),
            db_query: "MULTI".into(),
            error: "MULTI is not supported in cluster mode".into(),
        }),
        with(
            base.clone(),
            json!({
                "event": "db.session.query.failed", "code": "TDB02W",
                "db_query": "MULTI", "error": "MULTI is not supported in cluster mode",
            }),
        ),
    );
    let end = with(
        base.clone(),
        json!({"event": "db.session.end", "code": "TDB01I"}),
    );
    same(
        AuditEvent::DbSessionEnd(DbSessionEnd {
            session: db_session(true),
            error: None,
        }),
        end.clone(),
    );
    let mut failed_end = end;
    failed_end["error"] = "connection reset".into();
    same(
        AuditEvent::DbSessionEnd(DbSessionEnd {
            session: db_session(true),
            error: Some("connection reset".into()),
        }),
        failed_end,
    );
    // Commands: the prefix is the same object, open; a batch appends the
    // session's commands.
    let old_prefix = open_object(&with(
        base.clone(),
        json!({"event": "db.session.query", "code": "TDB02I"}),
    ));
    let prefix = db_session(true).query_prefix();
    let grouped = |p: &str| -> Value {
        serde_json::from_str(&format!(r#"{p},"db_queries":["GET k","SET k \"v\""]}}"#)).unwrap()
    };
    assert_eq!(grouped(&prefix), grouped(&old_prefix));
    // ... which is the typed event with those commands.
    same(
        AuditEvent::DbSessionQuery(DbSessionQuery {
            session: db_session(true),
            db_queries: vec!["GET k".into(), "SET k \"v\"".into()],
        }),
        grouped(&old_prefix),
    );
}

#[test]
fn every_agent_kind_parses_back_with_the_agents_identity() {
    let db_events = [
        AuditEvent::DbSessionStart(DbSessionStart {
            session: db_session(false),
            outcome: Outcome::Failure("denied".into()),
        }),
        AuditEvent::DbSessionStart(DbSessionStart {
            session: db_session(true),
            outcome: Outcome::Success,
        }),
        AuditEvent::DbSessionQuery(DbSessionQuery {
            session: db_session(true),
            db_queries: vec!["GET k".into(), "PING".into()],
        }),
        AuditEvent::DbSessionQueryFailed(DbSessionQueryFailed {
            session: db_session(true),
            db_query: "MULTI".into(),
            error: "no".into(),
        }),
        AuditEvent::DbSessionEnd(DbSessionEnd {
            session: db_session(true),
            error: Some("reset".into()),
        }),
        AuditEvent::DbSessionEnd(DbSessionEnd {
            session: db_session(true),
            error: None,
        }),
    ];
    for sent in db_events {
        let mut expected = sent.to_value();
        expected["server_id"] = "host-uuid.example".into();
        let parsed = AuditEvent::from_agent(sent.to_value(), "host-uuid.example").unwrap();
        assert_eq!(parsed.to_value(), expected);
    }
    let app_events = [
        AuditEvent::AppSessionRequest(AppSessionRequest {
            session: app_session(""),
            method: "GET".into(),
            host: "h".into(),
            path: "/".into(),
            status_code: 403,
        }),
        AuditEvent::AppSessionEnd(AppSessionEnd {
            session: app_session(""),
        }),
    ];
    for sent in app_events {
        // Agents do not name themselves in app events: the auth service does.
        assert!(sent.to_value().get("server_id").is_none());
        let mut expected = sent.to_value();
        expected["server_id"] = "host-uuid.example".into();
        let parsed = AuditEvent::from_agent(sent.to_value(), "host-uuid.example").unwrap();
        assert_eq!(parsed.to_value(), expected);
    }
    // The prefix and commands as a batch carries them.
    let text = format!(
        r#"{},"db_queries":["GET k"]}}"#,
        db_session(true).query_prefix()
    );
    let parsed =
        AuditEvent::from_agent(serde_json::from_str(&text).unwrap(), "host-uuid.example").unwrap();
    let AuditEvent::DbSessionQuery(q) = parsed else {
        panic!("{parsed:?}")
    };
    assert_eq!(q.db_queries, vec!["GET k".to_string()]);
    assert_eq!(q.session.server_id, "host-uuid.example");
}

#[test]
fn agents_cannot_forge_identity_time_code_or_fields() {
    let mut sent = AuditEvent::DbSessionStart(DbSessionStart {
        session: db_session(true),
        outcome: Outcome::Failure("denied".into()),
    })
    .to_value();
    sent["server_id"] = "someone-else".into();
    sent["code"] = "TDB00I".into();
    sent["time"] = "2000-01-01T00:00:00Z".into();
    sent["uid"] = "chosen".into();
    sent["admin"] = true.into();
    let parsed = AuditEvent::from_agent(sent, "me").unwrap();
    assert_eq!(parsed.code(), "TDB00W");
    let v = parsed.to_value();
    assert_eq!(v["server_id"], "me");
    for field in ["time", "uid", "admin"] {
        assert!(v.get(field).is_none(), "{field} kept: {v}");
    }
}

#[test]
fn agents_may_send_only_agent_kinds() {
    let mut login = AuditEvent::UserLogin(UserLogin {
        user: "alice".into(),
        method: LoginMethod::Local,
        outcome: Outcome::Success,
        remote_addr: "x".into(),
    })
    .to_value();
    let err = AuditEvent::from_agent(login.clone(), "me").unwrap_err();
    assert!(matches!(err, AgentEventError::NotForAgents(ref k) if k == "user.login"));
    // The auth service records app session starts itself.
    let start = AuditEvent::AppSessionStart(AppSessionStart {
        session: app_session(""),
        app_public_addr: "a.example.com".into(),
    })
    .to_value();
    let refused = AuditEvent::from_agent(start, "me").unwrap_err();
    assert!(matches!(refused, AgentEventError::NotForAgents(ref k) if k == "app.session.start"));
    assert_eq!(
        err.to_string(),
        r#"agents may not record "user.login" events"#
    );
    // A long name is cut in the error.
    login["event"] = "x".repeat(10_000).into();
    let err = AuditEvent::from_agent(login, "me").unwrap_err();
    assert!(err.to_string().len() < 200, "{err}");
    for not_an_event in [
        json!("db.session.start"),
        json!(["db.session.start"]),
        json!({"code": "TDB00I"}),
        json!({"event": 7}),
    ] {
        assert!(matches!(
            AuditEvent::from_agent(not_an_event, "me"),
            Err(AgentEventError::NotAnEvent)
        ));
    }
    // An agent kind without its fields.
    for missing in [
        json!({"event": "db.session.start", "success": true}),
        json!({"event": "db.session.query", "user": "a", "db_queries": [1]}),
        json!({"event": "app.session.request", "user": "a", "sid": "s", "app_name": "x",
               "azure_identity": "", "method": "GET", "host": "h", "path": "/",
               "status_code": "200"}),
    ] {
        assert!(matches!(
            AuditEvent::from_agent(missing, "me"),
            Err(AgentEventError::Malformed { .. })
        ));
    }
    // Every name in AGENT_EVENTS is one `from_agent` takes.
    for kind in AGENT_EVENTS {
        let err = AuditEvent::from_agent(json!({ "event": kind }), "me").unwrap_err();
        assert!(matches!(err, AgentEventError::Malformed { .. }), "{kind}");
    }
}
