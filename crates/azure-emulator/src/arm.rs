//! Azure Resource Manager (management.azure.com): subscriptions, tenants, resource groups, VMs,
//! user-assigned identities, Azure Cache for Redis and Redis Enterprise, with role assignments enforced.

use serde_json::{json, Map, Value};

use crate::fixture::{identity_id, vm_resource_id, World};
use crate::jwt::TokenProblem;
use crate::server::{json_resp, now, Req, Resp, State};

/// Audiences ARM accepts.
pub const ARM_AUDIENCES: [&str; 4] = [
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
];

/// The message of the 400 `BadRequest` that `listKeys` answers on a cache or database whose access
/// keys are disabled (the exact text of Azure's answer is not documented; clients should not parse it).
pub const ACCESS_KEYS_DISABLED: &str = "Access key authentication is disabled for this resource. Authenticate with Microsoft Entra ID instead.";

/// A resource as ARM renders it.
#[derive(Debug, Clone)]
pub struct Res {
    /// Resource ID.
    pub id: String,
    /// Subscription ID.
    pub sub: String,
    /// Resource group name.
    pub rg: String,
    /// Type as ARM spells it (`Microsoft.Compute/virtualMachines`).
    pub type_name: String,
    /// The JSON body.
    pub body: Value,
    /// Access keys from the fixture (Redis).
    pub keys: Option<(String, String)>,
    /// Access keys are refused (Entra ID only): `listKeys` fails.
    pub keys_disabled: bool,
    /// The real redis-server behind it whose passwords follow the keys.
    pub server: Option<crate::redis_server::ServerTarget>,
}

fn arm_error(status: u16, code: &str, message: &str) -> Resp {
    json_resp(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

impl Res {
    /// A resource of the group `loc` without access keys, whose body is ARM's envelope of a
    /// tracked resource (`id`, `name`, `type`, `location`: `location` or else the group's, and
    /// `tags`) followed by the fields of `rest` (`sku`, `properties`).
    fn tracked(
        loc: &crate::fixture::Loc<'_>,
        id: String,
        name: &str,
        type_name: &str,
        location: Option<&String>,
        resource_tags: &std::collections::BTreeMap<String, String>,
        rest: Value,
    ) -> Res {
        let mut body = json!({
            "id": id,
            "name": name,
            "type": type_name,
            "location": location.unwrap_or(&loc.rg.location),
            "tags": tags(resource_tags),
        });
        if let (Some(envelope), Value::Object(rest)) = (body.as_object_mut(), rest) {
            envelope.extend(rest);
        }
        Res {
            id,
            sub: loc.sub.id.clone(),
            rg: loc.rg.name.clone(),
            type_name: type_name.to_string(),
            body,
            keys: None,
            keys_disabled: false,
            server: None,
        }
    }
}

fn tags(t: &std::collections::BTreeMap<String, String>) -> Value {
    Value::Object(
        t.iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<Map<_, _>>(),
    )
}

/// Every resource of the world.
pub fn resources(world: &World, state: Option<&State>) -> Vec<Res> {
    let tenant = world.tenant_id();
    let mut out = Vec::new();
    for loc in world.groups() {
        let (sub, rg) = (loc.sub.id.clone(), loc.rg.name.clone());
        let rg_id = loc.rg_id();
        for i in &loc.rg.identities {
            let id = identity_id(&loc, i);
            out.push(Res::tracked(
                &loc,
                id,
                &i.name,
                "Microsoft.ManagedIdentity/userAssignedIdentities",
                i.location.as_ref(),
                &i.tags,
                json!({
                    "properties": {
                        "isolationScope": "None",
                        "tenantId": tenant,
                        "principalId": i.principal_id,
                        "clientId": i.client_id,
                    },
                }),
            ));
        }
        for vm in &loc.rg.vms {
            let id = vm_resource_id(&loc, vm);
            let mut res = Res::tracked(
                &loc,
                id,
                &vm.name,
                "Microsoft.Compute/virtualMachines",
                vm.location.as_ref(),
                &vm.tags,
                json!({
                    "properties": {
                        "vmId": vm.vm_id,
                        "hardwareProfile": {"vmSize": vm.size},
                        "storageProfile": {
                            "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest", "exactVersion": "24.04.202411030"},
                            "osDisk": {
                                "osType": "Linux",
                                "name": format!("{}_OsDisk_1", vm.name),
                                "createOption": "FromImage",
                                "caching": "ReadWrite",
                                "managedDisk": {"storageAccountType": "Premium_LRS", "id": format!("{rg_id}/providers/Microsoft.Compute/disks/{}_OsDisk_1", vm.name)},
                                "deleteOption": "Delete",
                                "diskSizeGB": 30,
                            },
                            "dataDisks": [],
                        },
                        "osProfile": {
                            "computerName": vm.name,
                            "adminUsername": "azureuser",
                            "linuxConfiguration": {"disablePasswordAuthentication": true, "provisionVMAgent": true, "patchSettings": {"patchMode": "ImageDefault", "assessmentMode": "ImageDefault"}},
                            "secrets": [],
                            "allowExtensionOperations": true,
                            "requireGuestProvisionSignal": true,
                        },
                        "networkProfile": {"networkInterfaces": [{"id": format!("{rg_id}/providers/Microsoft.Network/networkInterfaces/{}-nic", vm.name)}]},
                        "provisioningState": "Succeeded",
                        "timeCreated": "2024-01-01T00:00:00.0000000+00:00",
                    },
                }),
            );
            let attached: Map<String, Value> = vm
                .identities
                .iter()
                .filter_map(|r| world.find_identity_ref(r))
                .map(|(l, i)| {
                    (
                        identity_id(&l, i),
                        json!({"principalId": i.principal_id, "clientId": i.client_id}),
                    )
                })
                .collect();
            if !attached.is_empty() {
                if let Some(obj) = res.body.as_object_mut() {
                    obj.insert(
                        "identity".into(),
                        json!({"type": "UserAssigned", "userAssignedIdentities": attached}),
                    );
                }
            }
            out.push(res);
        }
        for r in &loc.rg.redis {
            let id = format!("{rg_id}/providers/Microsoft.Cache/Redis/{}", r.name);
            let host = r
                .host
                .clone()
                .unwrap_or_else(|| format!("{}.redis.cache.windows.net", r.name));
            let res = Res::tracked(
                &loc,
                id,
                &r.name,
                "Microsoft.Cache/Redis",
                r.location.as_ref(),
                &r.tags,
                json!({
                    "properties": {
                        "provisioningState": r.provisioning_state,
                        "redisVersion": r.redis_version,
                        "sku": {"name": "Standard", "family": "C", "capacity": 1},
                        "enableNonSslPort": false,
                        "minimumTlsVersion": "1.2",
                        "publicNetworkAccess": "Enabled",
                        "redisConfiguration": {"maxclients": "1000", "maxmemory-reserved": "50", "maxmemory-delta": "50", "maxfragmentationmemory-reserved": "50"},
                        "accessKeys": null,
                        "hostName": host,
                        "port": 6379,
                        "sslPort": r.ssl_port,
                        "linkedServers": [],
                        "instances": [
                            {"sslPort": 15000, "nonSslPort": 13000, "isMaster": true, "isPrimary": true},
                            {"sslPort": 15001, "nonSslPort": 13001, "isMaster": false, "isPrimary": false},
                        ],
                        "updateChannel": "Stable",
                        "disableAccessKeyAuthentication": r.access_keys_disabled,
                    },
                }),
            );
            out.push(Res {
                keys: Some((r.primary_key.clone(), r.secondary_key.clone())),
                keys_disabled: r.access_keys_disabled,
                server: r.server.as_ref().map(|srv| {
                    crate::redis_server::ServerTarget::of(srv, r.host.as_deref(), r.ssl_port)
                }),
                ..res
            });
        }
        for e in &loc.rg.redis_enterprise {
            let id = format!(
                "{rg_id}/providers/Microsoft.Cache/redisEnterprise/{}",
                e.name
            );
            let location = e
                .location
                .clone()
                .unwrap_or_else(|| loc.rg.location.clone());
            let host = e.host.clone().unwrap_or_else(|| {
                format!(
                    "{}.{}.redisenterprise.cache.azure.net",
                    e.name,
                    location.to_ascii_lowercase().replace(' ', "")
                )
            });
            out.push(Res::tracked(
                &loc,
                id.clone(),
                &e.name,
                "Microsoft.Cache/redisEnterprise",
                Some(&location),
                &e.tags,
                json!({
                    "sku": {"name": e.sku, "capacity": 2},
                    "properties": {
                        "hostName": host,
                        "provisioningState": "Succeeded",
                        "resourceState": "Running",
                        "redisVersion": "7.2",
                        "minimumTlsVersion": "1.2",
                        "privateEndpointConnections": [],
                    },
                }),
            ));
            for d in &e.databases {
                let db_id = format!("{id}/databases/{}", d.name);
                out.push(Res {
                    body: json!({
                        "id": db_id,
                        "name": d.name,
                        "type": "Microsoft.Cache/redisEnterprise/databases",
                        "properties": {
                            "clientProtocol": d.client_protocol,
                            "port": d.port,
                            "provisioningState": "Succeeded",
                            "resourceState": "Running",
                            "clusteringPolicy": d.clustering_policy,
                            "evictionPolicy": "VolatileLRU",
                            "modules": [],
                            "accessKeysAuthentication": if d.access_keys_disabled { "Disabled" } else { "Enabled" },
                        },
                    }),
                    id: db_id,
                    sub: sub.clone(),
                    rg: rg.clone(),
                    type_name: "Microsoft.Cache/redisEnterprise/databases".into(),
                    keys: Some((d.primary_key.clone(), d.secondary_key.clone())),
                    keys_disabled: d.access_keys_disabled,
                    server: d.server.as_ref().map(|srv| crate::redis_server::ServerTarget::of(srv, e.host.as_deref(), d.port)),
                });
            }
        }
    }
    if let Some(state) = state {
        for r in &mut out {
            if let Some((p, s)) = &r.keys {
                r.keys = Some(state.keys_for(&r.id, (p, s)));
            }
        }
    }
    out
}

/// Resource IDs of everything that has access keys.
pub fn all_key_holders(world: &World) -> Vec<String> {
    resources(world, None)
        .into_iter()
        .filter(|r| r.keys.is_some())
        .map(|r| r.id)
        .collect()
}

/// The caller, from its bearer token.
#[derive(Debug, Clone)]
struct Caller {
    oid: String,
    appid: String,
}

/// What every ARM request must bring: a valid bearer token and an `api-version`.
fn checked_caller(req: &Req, state: &State) -> Result<Caller, Box<Resp>> {
    let caller = authenticate(req, state)?;
    if req.q("api-version").is_none() {
        return Err(Box::new(arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )));
    }
    Ok(caller)
}

fn authenticate(req: &Req, state: &State) -> Result<Caller, Box<Resp>> {
    let Some(auth) = req.header("authorization") else {
        return Err(arm_err_box(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    let Some(token) = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
    else {
        return Err(arm_err_box(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
        ));
    };
    let claims = match state.signer().verify(token.trim(), now()) {
        Ok(c) => c,
        Err(TokenProblem::Expired) => return Err(expired_token()),
        Err(TokenProblem::Invalid) => {
            return Err(arm_err_box(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            ))
        }
    };
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MIN);
    if iat < state.revoked_before() {
        return Err(expired_token());
    }
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !ARM_AUDIENCES.contains(&aud) {
        return Err(arm_err_box(
            401,
            "InvalidAuthenticationTokenAudience",
            &format!("The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'."),
        ));
    }
    let field = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(Caller {
        oid: field("oid"),
        appid: field("appid"),
    })
}

fn under(scope_lc: &str, id: &str) -> bool {
    let id = id.to_ascii_lowercase();
    scope_lc.is_empty() || id == scope_lc || id.starts_with(&format!("{scope_lc}/"))
}

fn authorized(world: &World, caller: &Caller, action: &str, id: &str) -> bool {
    world.assignments.iter().any(|a| {
        a.principal_object_id.eq_ignore_ascii_case(&caller.oid)
            && a.role.allows(action)
            && under(&a.scope_lc, id)
    })
}

/// Whether the caller holds any role at, above or below `scope`.
fn touches(world: &World, caller: &Caller, scope: &str) -> bool {
    let scope_lc = scope.to_ascii_lowercase();
    world.assignments.iter().any(|a| {
        a.principal_object_id.eq_ignore_ascii_case(&caller.oid)
            && (under(&a.scope_lc, scope) || under(&scope_lc, &a.scope_lc))
    })
}

fn forbidden(caller: &Caller, action: &str, scope: &str) -> Resp {
    arm_error(
        403,
        "AuthorizationFailed",
        &format!("The client '{}' with object id '{}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.", caller.appid, caller.oid),
    )
}

fn page(req: &Req, state: &State, items: Vec<Value>) -> Resp {
    let size = state.world().page_size();
    let skip: usize = req
        .q("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let end = skip.saturating_add(size).min(items.len());
    let chunk: Vec<Value> = items
        .get(skip..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let mut body = json!({"value": chunk});
    if end < items.len() {
        let version = req.q("api-version").unwrap_or_default();
        let mut link = url::form_urlencoded::Serializer::new(String::new());
        link.append_pair("api-version", version);
        let next = format!(
            "https://{}{}?{}&$skiptoken={end}",
            crate::server::ARM_HOST,
            req.path,
            link.finish()
        );
        if let Some(obj) = body.as_object_mut() {
            obj.insert("nextLink".into(), json!(next));
        }
    }
    json_resp(200, &body)
}

fn subscription_json(world: &World, sub: &crate::fixture::SubscriptionSpec) -> Value {
    json!({
        "id": format!("/subscriptions/{}", sub.id),
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": sub.id,
        "tenantId": world.tenant_id(),
        "displayName": sub.display_name.clone().unwrap_or_else(|| "Azure subscription 1".to_string()),
        "state": "Enabled",
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
    })
}

/// Serves an ARM request, the actions that touch a real server (`regenerateKey`) included.
pub async fn handle_async(req: &Req, state: &State) -> Resp {
    let regenerate = req
        .path
        .split('/')
        .rfind(|s| !s.is_empty())
        .is_some_and(|s| s.eq_ignore_ascii_case("regenerateKey"));
    if regenerate {
        regenerate_key(req, state).await
    } else {
        handle(req, state)
    }
}

/// Which key `regenerateKey` replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Primary,
    Secondary,
}

/// `keyType` of a `regenerateKey` body (`{"keyType": "Primary" | "Secondary"}`, any case, as ARM's
/// enums are read).
fn key_type(body: &[u8]) -> Option<KeyType> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let t = v.get("keyType")?.as_str()?;
    if t.eq_ignore_ascii_case("Primary") {
        Some(KeyType::Primary)
    } else if t.eq_ignore_ascii_case("Secondary") {
        Some(KeyType::Secondary)
    } else {
        None
    }
}

/// `POST .../Microsoft.Cache/redis/{name}/regenerateKey` and
/// `POST .../Microsoft.Cache/redisEnterprise/{cluster}/databases/{db}/regenerateKey`: a new key of
/// the given type (the other one is kept), answered with both keys as ARM does. A real server behind
/// the resource gets the new keys as its passwords first; if that fails the keys are unchanged and
/// the answer is a 500 saying why.
async fn regenerate_key(req: &Req, state: &State) -> Resp {
    let caller = match checked_caller(req, state) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let (sub_id, rg, rest) = match segs.as_slice() {
        [s, sub, r, rg, p, rest @ ..]
            if s.eq_ignore_ascii_case("subscriptions")
                && r.eq_ignore_ascii_case("resourceGroups")
                && p.eq_ignore_ascii_case("providers") =>
        {
            (*sub, *rg, rest)
        }
        _ => return arm_error(404, "NotFound", "not found"),
    };
    let (type_path, target) = match rest {
        [ns, ty, name, _] => (format!("{ns}/{ty}"), format!("{ns}/{ty}/{name}")),
        [ns, ty, name, child, cname, _] => (
            format!("{ns}/{ty}/{child}"),
            format!("{ns}/{ty}/{name}/{child}/{cname}"),
        ),
        _ => return arm_error(404, "NotFound", "not found"),
    };
    if req.method != http::Method::POST {
        return arm_error(
            405,
            "MethodNotAllowed",
            "regenerateKey needs POST on a resource",
        );
    }
    let world = state.world();
    let id = format!("/subscriptions/{sub_id}/resourceGroups/{rg}/providers/{target}");
    let known = resources(world, Some(state))
        .into_iter()
        .find(|r| r.id.eq_ignore_ascii_case(&id) && r.keys.is_some());
    let type_name = known
        .as_ref()
        .map_or(type_path.clone(), |r| r.type_name.clone());
    let action = format!("{type_name}/regenerateKey/action");
    if !authorized(world, &caller, &action, &id) {
        return forbidden(&caller, &action, &id);
    }
    if find_rg(world, sub_id, rg).is_none() {
        return rg_not_found(rg);
    }
    let Some(res) = known else {
        return not_found(&type_path, &id, rg);
    };
    if res.keys_disabled {
        return arm_error(400, "BadRequest", ACCESS_KEYS_DISABLED);
    }
    let Some(which) = key_type(&req.body) else {
        return arm_error(
            400,
            "InvalidRequestBody",
            "The request body must be {\"keyType\": \"Primary\"} or {\"keyType\": \"Secondary\"}.",
        );
    };
    let _one_at_a_time = state.regenerating().await;
    // The keys as they are now that no other regeneration runs.
    let Some((primary, secondary)) = resources(world, Some(state))
        .into_iter()
        .find(|r| r.id == res.id)
        .and_then(|r| r.keys)
    else {
        return not_found(&type_path, &id, rg);
    };
    let new = match which {
        KeyType::Primary => (crate::server::fresh_key(), secondary.clone()),
        KeyType::Secondary => (primary.clone(), crate::server::fresh_key()),
    };
    if let Some(server) = &res.server {
        if let Err(e) = server
            .set_keys(&[&primary, &secondary], (&new.0, &new.1))
            .await
        {
            tracing::warn!(resource = %res.id, error = %e, "regenerateKey: the server's passwords were not changed");
            return arm_error(
                500,
                "InternalServerError",
                &format!("The azure emulator could not change the passwords of {e}; the keys are unchanged."),
            );
        }
    }
    state.store_keys(&res.id, new.clone());
    tracing::info!(resource = %res.id, key = ?which, "access key regenerated");
    json_resp(200, &json!({"primaryKey": new.0, "secondaryKey": new.1}))
}

/// Serves an ARM request.
pub fn handle(req: &Req, state: &State) -> Resp {
    let caller = match checked_caller(req, state) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let world = state.world();
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let lc: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lcs: Vec<&str> = lc.iter().map(String::as_str).collect();
    let get = req.method == http::Method::GET;
    match lcs.as_slice() {
        ["tenants"] if get => {
            let t = world.tenant_id();
            let items = vec![json!({
                "id": format!("/tenants/{t}"),
                "tenantId": t,
                "tenantCategory": "Home",
                "displayName": world.fixture.tenant_display_name.clone().unwrap_or_else(|| "Default Directory".into()),
                "defaultDomain": "example.onmicrosoft.com",
                "domains": ["example.onmicrosoft.com"],
                "tenantType": "AAD",
            })];
            page(req, state, items)
        }
        ["subscriptions"] if get => {
            let items = world
                .fixture
                .subscriptions
                .iter()
                .filter(|s| touches(world, &caller, &format!("/subscriptions/{}", s.id)))
                .map(|s| subscription_json(world, s))
                .collect();
            page(req, state, items)
        }
        ["subscriptions", _] if get => {
            let sub_id = segs.get(1).copied().unwrap_or_default();
            let scope = format!("/subscriptions/{sub_id}");
            match world
                .fixture
                .subscriptions
                .iter()
                .find(|s| s.id.eq_ignore_ascii_case(sub_id))
            {
                Some(s) if touches(world, &caller, &scope) => {
                    json_resp(200, &subscription_json(world, s))
                }
                Some(_) => forbidden(&caller, "Microsoft.Resources/subscriptions/read", &scope),
                None => subscription_not_found(sub_id),
            }
        }
        ["subscriptions", _, "resourcegroups"] if get => {
            let sub_id = segs.get(1).copied().unwrap_or_default();
            if !sub_exists(world, sub_id) {
                return subscription_not_found(sub_id);
            }
            let items = world
                .groups()
                .into_iter()
                .filter(|l| l.sub.id.eq_ignore_ascii_case(sub_id))
                .filter(|l| {
                    authorized(
                        world,
                        &caller,
                        "Microsoft.Resources/subscriptions/resourceGroups/read",
                        &l.rg_id(),
                    )
                })
                .map(|l| rg_json(&l))
                .collect();
            page(req, state, items)
        }
        ["subscriptions", _, "resourcegroups", _] if get => {
            let (sub_id, rg) = (
                segs.get(1).copied().unwrap_or_default(),
                segs.get(3).copied().unwrap_or_default(),
            );
            let scope = format!("/subscriptions/{sub_id}/resourceGroups/{rg}");
            let action = "Microsoft.Resources/subscriptions/resourceGroups/read";
            if !authorized(world, &caller, action, &scope) {
                return forbidden(&caller, action, &scope);
            }
            match find_rg(world, sub_id, rg) {
                Some(l) => json_resp(200, &rg_json(&l)),
                None => rg_not_found(rg),
            }
        }
        ["subscriptions", _, "providers", _, _] if get => {
            let sub_id = segs.get(1).copied().unwrap_or_default();
            if !sub_exists(world, sub_id) {
                return subscription_not_found(sub_id);
            }
            let ty = format!("{}/{}", lc[3], lc[4]);
            let items = resources(world, Some(state))
                .into_iter()
                .filter(|r| {
                    r.sub.eq_ignore_ascii_case(sub_id) && r.type_name.eq_ignore_ascii_case(&ty)
                })
                .filter(|r| authorized(world, &caller, &format!("{}/read", r.type_name), &r.id))
                .map(|r| r.body)
                .collect();
            page(req, state, items)
        }
        ["subscriptions", _, "resourcegroups", _, "providers", _, _, ..] => {
            let (sub_id, rg) = (
                segs.get(1).copied().unwrap_or_default(),
                segs.get(3).copied().unwrap_or_default(),
            );
            provider_in_group(req, state, &caller, sub_id, rg, &segs[5..])
        }
        _ => arm_error(
            404,
            "NotFound",
            &format!(
                "The requested path '{}' is not served by the azure emulator.",
                req.path
            ),
        ),
    }
}

fn sub_exists(world: &World, sub_id: &str) -> bool {
    world
        .fixture
        .subscriptions
        .iter()
        .any(|s| s.id.eq_ignore_ascii_case(sub_id))
}

/// ARM's 404 for a resource group that does not exist.
fn rg_not_found(rg: &str) -> Resp {
    arm_error(
        404,
        "ResourceGroupNotFound",
        &format!("Resource group '{rg}' could not be found."),
    )
}

/// ARM's 404 for a subscription that does not exist.
fn subscription_not_found(sub_id: &str) -> Resp {
    arm_error(
        404,
        "SubscriptionNotFound",
        &format!("The subscription '{sub_id}' could not be found."),
    )
}

fn find_rg<'a>(world: &'a World, sub_id: &str, rg: &str) -> Option<crate::fixture::Loc<'a>> {
    world
        .groups()
        .into_iter()
        .find(|l| l.sub.id.eq_ignore_ascii_case(sub_id) && l.rg.name.eq_ignore_ascii_case(rg))
}

fn rg_json(l: &crate::fixture::Loc<'_>) -> Value {
    json!({
        "id": l.rg_id(),
        "name": l.rg.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": l.rg.location,
        "properties": {"provisioningState": "Succeeded"},
    })
}

/// `/subscriptions/s/resourceGroups/g/providers/<ns>/<type>[/<name>[/<child>[/<childname>]]][/listKeys]`.
fn provider_in_group(
    req: &Req,
    state: &State,
    caller: &Caller,
    sub_id: &str,
    rg: &str,
    rest: &[&str],
) -> Resp {
    let world = state.world();
    let rg_scope = format!("/subscriptions/{sub_id}/resourceGroups/{rg}");
    let (ns, ty) = match rest {
        [ns, ty, ..] => (*ns, *ty),
        _ => return arm_error(404, "NotFound", "not found"),
    };
    let tail = &rest[2..];
    let list_keys = tail
        .last()
        .map(|s| s.eq_ignore_ascii_case("listKeys"))
        .unwrap_or(false);
    let tail = if list_keys {
        &tail[..tail.len() - 1]
    } else {
        tail
    };
    // The type path and the resource ID the request names.
    let (type_path, id) = match tail {
        [] => (format!("{ns}/{ty}"), None),
        [name] => (
            format!("{ns}/{ty}"),
            Some(format!("{rg_scope}/providers/{ns}/{ty}/{name}")),
        ),
        [name, child] => (
            format!("{ns}/{ty}/{child}"),
            Some(format!("{rg_scope}/providers/{ns}/{ty}/{name}/{child}")),
        ),
        [name, child, cname] => (
            format!("{ns}/{ty}/{child}"),
            Some(format!(
                "{rg_scope}/providers/{ns}/{ty}/{name}/{child}/{cname}"
            )),
        ),
        _ => return arm_error(404, "NotFound", "not found"),
    };
    let is_list = tail.is_empty() || tail.len() == 2;
    let all = resources(world, Some(state));
    if list_keys {
        if req.method != http::Method::POST || is_list {
            return arm_error(405, "MethodNotAllowed", "listKeys needs POST on a resource");
        }
        let id = id.unwrap_or_default();
        let action = format!("{type_path}/listKeys/action");
        let known = all.iter().find(|r| r.id.eq_ignore_ascii_case(&id));
        let action = match known {
            Some(r) => format!("{}/listKeys/action", r.type_name),
            None => action,
        };
        if !authorized(world, caller, &action, &id) {
            return forbidden(caller, &action, &id);
        }
        if find_rg(world, sub_id, rg).is_none() {
            return rg_not_found(rg);
        }
        if known.is_some_and(|r| r.keys_disabled) {
            return arm_error(400, "BadRequest", ACCESS_KEYS_DISABLED);
        }
        return match known.and_then(|r| r.keys.clone()) {
            Some((p, s)) => json_resp(200, &json!({"primaryKey": p, "secondaryKey": s})),
            None => not_found(&type_path, &id, rg),
        };
    }
    if req.method != http::Method::GET {
        return arm_error(
            405,
            "MethodNotAllowed",
            "the azure emulator serves reads only",
        );
    }
    if is_list {
        let parent = match tail {
            [name, _] => Some(format!("{rg_scope}/providers/{ns}/{ty}/{name}")),
            _ => None,
        };
        let scope = parent.clone().unwrap_or_else(|| rg_scope.clone());
        if !touches(world, caller, &scope) {
            return forbidden(caller, &format!("{type_path}/read"), &scope);
        }
        if find_rg(world, sub_id, rg).is_none() {
            return rg_not_found(rg);
        }
        if let Some(parent) = &parent {
            if !all.iter().any(|r| r.id.eq_ignore_ascii_case(parent)) {
                return not_found(&format!("{ns}/{ty}"), parent, rg);
            }
        }
        let items = all
            .into_iter()
            .filter(|r| r.type_name.eq_ignore_ascii_case(&type_path))
            .filter(|r| under(&scope.to_ascii_lowercase(), &r.id))
            .filter(|r| authorized(world, caller, &format!("{}/read", r.type_name), &r.id))
            .map(|r| r.body)
            .collect();
        return page(req, state, items);
    }
    let id = id.unwrap_or_default();
    let action = format!("{type_path}/read");
    if !authorized(world, caller, &action, &id) {
        return forbidden(caller, &action, &id);
    }
    if find_rg(world, sub_id, rg).is_none() {
        return rg_not_found(rg);
    }
    match all
        .into_iter()
        .find(|r| r.id.eq_ignore_ascii_case(&id) && r.type_name.eq_ignore_ascii_case(&type_path))
    {
        Some(r) => json_resp(200, &r.body),
        None => not_found(&type_path, &id, rg),
    }
}

fn not_found(type_path: &str, id: &str, rg: &str) -> Resp {
    let name = id.rsplit('/').next().unwrap_or_default();
    arm_error(
        404,
        "ResourceNotFound",
        &format!("The Resource '{type_path}/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"),
    )
}

/// ARM's 401 for an expired (or revoked) token.
fn expired_token() -> Box<Resp> {
    arm_err_box(
        401,
        "ExpiredAuthenticationToken",
        "The access token expiry UTC time is earlier than current UTC time.",
    )
}

fn arm_err_box(status: u16, code: &str, message: &str) -> Box<Resp> {
    Box::new(arm_error(status, code, message))
}
