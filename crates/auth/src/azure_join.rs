//! The Azure join method, server side: single-use challenges, and the checks that turn an
//! attested document plus a managed-identity token into host certificates.
//!
//! Order of the checks in [`AuthServer::register_with_azure`]: the token resource exists, has not
//! expired, uses `join_method: azure` and allows the roles; the challenge was handed out, has not
//! expired and is consumed; the attested document verifies (see
//! [`azure_attest::verify_attested_document`]) against the pinned roots plus
//! `auth_service.azure_join.trust_bundle_path`; the access token verifies against the tenant's
//! JWKS (issuer, audience, `exp`, `nbf`); the attested subscription is the token's; the VM
//! resolves (from `xms_az_rid`/`xms_mirid`, else by `vmId` through ARM) and its `vmId` is the
//! attested one; an allow rule matches. Every refusal is audited as `instance.join` (`TJ002E`).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use api::audit::{self, AuditEvent};
use api::join::{AzureChallenge, AzureRegisterRequest, HostCerts};
use azure_mint::http::HttpConfig;
use backend::Item;
use base64::Engine as _;
use resources::{AzureRule, JoinMethod, SystemRole};

use crate::{now, AuthError, AuthServer, Result};

/// How long a challenge may be used.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(60);
/// Backend prefix of outstanding challenges.
pub const CHALLENGE_PREFIX: &str = "join_challenges/";
const MAX_INTERMEDIATES: usize = 10;
const MAX_INTERMEDIATE_LEN: usize = 64 * 1024;

/// Settings and caches of the Azure join method.
pub struct AzureJoinState {
    roots: Vec<String>,
    http: HttpConfig,
    jwks: OnceLock<Arc<azure_mint::entra::JwksCache>>,
    arm_http: OnceLock<reqwest::Client>,
}

impl std::fmt::Debug for AzureJoinState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureJoinState")
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl AzureJoinState {
    /// The pinned Microsoft/DigiCert roots, plus the PEM file `trust_bundle` and `extra_roots`;
    /// outbound HTTP through `http` (the environment's proxies and CAs when `None`).
    pub fn new(
        trust_bundle: Option<&Path>,
        extra_roots: &[String],
        http: Option<HttpConfig>,
    ) -> Result<Self> {
        let mut roots = azure_attest::pinned_roots();
        if let Some(path) = trust_bundle {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                AuthError::BadParameter(format!(
                    "auth_service.azure_join.trust_bundle_path {}: {e}",
                    path.display()
                ))
            })?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(AuthError::BadParameter(format!(
                    "auth_service.azure_join.trust_bundle_path {} holds no PEM certificate",
                    path.display()
                )));
            }
            roots.push(pem);
        }
        roots.extend(extra_roots.iter().cloned());
        Ok(Self {
            roots,
            http: http.unwrap_or_else(HttpConfig::from_env),
            jwks: OnceLock::new(),
            arm_http: OnceLock::new(),
        })
    }

    /// Trusted roots (PEM).
    pub fn roots(&self) -> &[String] {
        &self.roots
    }

    /// The HTTP client for ARM, made on first use and shared by every join.
    fn arm_http(&self) -> Result<reqwest::Client> {
        if let Some(c) = self.arm_http.get() {
            return Ok(c.clone());
        }
        let c = self
            .http
            .client()
            .map_err(|e| AuthError::Internal(format!("ARM client: {e}")))?;
        let _ = self.arm_http.set(c);
        self.arm_http
            .get()
            .cloned()
            .ok_or_else(|| AuthError::Internal("ARM client".into()))
    }

    /// The JWKS cache, made on first use.
    pub fn jwks(&self) -> Result<Arc<azure_mint::entra::JwksCache>> {
        if let Some(j) = self.jwks.get() {
            return Ok(j.clone());
        }
        let j = azure_mint::entra::JwksCache::new(&self.http)
            .map_err(|e| AuthError::Internal(format!("Entra ID client: {e}")))?;
        let _ = self.jwks.set(Arc::new(j));
        self.jwks
            .get()
            .cloned()
            .ok_or_else(|| AuthError::Internal("JWKS cache".into()))
    }
}

fn denied(m: impl Into<String>) -> AuthError {
    AuthError::AccessDenied(m.into())
}

/// Whether `rule` admits a VM in `subscription`/`resource_group` of `tenant`: subscription and
/// tenant exactly (GUIDs, compared ignoring ASCII case), resource groups case-insensitively (none
/// listed: any). A rule without a subscription admits nothing.
pub fn rule_matches(
    rule: &AzureRule,
    subscription: &str,
    resource_group: &str,
    tenant: &str,
) -> bool {
    if rule.subscription.trim().is_empty() {
        return false;
    }
    if !rule.subscription.trim().eq_ignore_ascii_case(subscription) {
        return false;
    }
    if !rule.tenant.trim().is_empty() && !rule.tenant.trim().eq_ignore_ascii_case(tenant) {
        return false;
    }
    rule.resource_groups.is_empty()
        || rule
            .resource_groups
            .iter()
            .any(|g| g.trim().eq_ignore_ascii_case(resource_group))
}

/// What a successful Azure join established.
#[derive(Debug, Clone)]
struct Joined {
    certs: HostCerts,
    vm_id: String,
    subscription: String,
    resource_group: String,
    tenant: String,
}

impl AuthServer {
    /// A fresh challenge: 24 random bytes, base64url (32 characters), stored for
    /// [`CHALLENGE_TTL`] and usable once.
    pub async fn create_azure_challenge(&self) -> Result<AzureChallenge> {
        let mut raw = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        self.backend()
            .create(
                Item::new(
                    format!("{CHALLENGE_PREFIX}{challenge}"),
                    now().unix_timestamp().to_string().into_bytes(),
                )
                .with_expiry(SystemTime::now() + CHALLENGE_TTL),
            )
            .await?;
        Ok(AzureChallenge { challenge })
    }

    async fn consume_challenge(&self, challenge: &str) -> Result<()> {
        let gone = || {
            denied("the Azure join challenge is missing, expired or already used: challenges are single use and live 60 seconds; restart the agent to get a new one")
        };
        if challenge.len() != 32
            || !challenge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(gone());
        }
        match self
            .backend()
            .delete(&format!("{CHALLENGE_PREFIX}{challenge}"))
            .await
        {
            Ok(()) => Ok(()),
            Err(backend::BackendError::NotFound(_)) => Err(gone()),
            Err(e) => Err(e.into()),
        }
    }

    /// Join with the Azure method. Every outcome is audited as `instance.join`.
    pub async fn register_with_azure(
        &self,
        req: &AzureRegisterRequest,
        remote: &str,
    ) -> Result<HostCerts> {
        let result = self.register_azure_inner(req).await;
        if let Err(e) = &result {
            tracing::warn!(token = %req.token, host_id = %req.host_id, error = %e, "Azure join refused");
        }
        self.emit(AuditEvent::InstanceJoin(audit::InstanceJoin {
            host_id: req.host_id.clone(),
            node_name: req.node_name.clone(),
            role: req.roles.join(","),
            method: resources::JoinMethod::Azure,
            token_name: Some(req.token.clone()),
            outcome: audit::Outcome::of(&result),
            azure: result.as_ref().ok().map(|j| audit::AzureJoin {
                vm_id: j.vm_id.clone(),
                subscription: j.subscription.clone(),
                resource_group: j.resource_group.clone(),
                tenant: j.tenant.clone(),
            }),
            remote_addr: remote.to_string(),
        }))
        .await;
        result.map(|j| j.certs)
    }

    async fn azure_token(&self, name: &str, asked: &[SystemRole]) -> Result<Vec<AzureRule>> {
        let missing = || {
            denied(format!(
                "the join token {name:?} does not exist or has expired: create it with tctl create -f token.yaml (join_method: azure)"
            ))
        };
        if !crate::agents::safe_name(name) {
            return Err(missing());
        }
        let t = self.live_token(name).await?.ok_or_else(missing)?;
        if t.spec.join_method != JoinMethod::Azure {
            return Err(denied(format!(
                "the join token {name:?} uses the {:?} join method, not azure: set join_params.method to it, or use a token with join_method: azure",
                t.spec.join_method.as_str()
            )));
        }
        for role in asked {
            if !t.spec.roles.contains(role) {
                return Err(denied(format!(
                    "the join token {name:?} does not allow joining as {role}: it allows {}",
                    t.spec
                        .roles
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                )));
            }
        }
        let rules = t.spec.azure.map(|a| a.allow).unwrap_or_default();
        if rules.is_empty() {
            return Err(denied(format!(
                "the join token {name:?} has no azure allow rules"
            )));
        }
        Ok(rules)
    }

    fn intermediates(&self, req: &AzureRegisterRequest) -> Result<Vec<Vec<u8>>> {
        if req.intermediates.len() > MAX_INTERMEDIATES {
            return Err(AuthError::BadParameter(format!(
                "at most {MAX_INTERMEDIATES} intermediate certificates are accepted"
            )));
        }
        req.intermediates
            .iter()
            .map(|b| {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(b.as_bytes())
                    .map_err(|_| {
                        AuthError::BadParameter("an intermediate certificate is not base64".into())
                    })?;
                if der.len() > MAX_INTERMEDIATE_LEN {
                    return Err(AuthError::BadParameter(
                        "an intermediate certificate is too large".into(),
                    ));
                }
                Ok(der)
            })
            .collect()
    }

    async fn register_azure_inner(&self, req: &AzureRegisterRequest) -> Result<Joined> {
        let asked = crate::agents::join_roles(&req.host_id, &req.roles)?;
        // 1. The token resource.
        let rules = self.azure_token(&req.token, &asked).await?;
        // 2. The challenge, consumed whatever happens next.
        self.consume_challenge(&req.challenge).await?;
        // 3. The attested document.
        let state = self.azure_join();
        let mut intermediates = self.intermediates(req)?;
        if intermediates.is_empty() {
            intermediates = self.fetch_aia(req).await;
        }
        let attested = azure_attest::verify_attested_document(
            req.attested_data.as_bytes(),
            state.roots(),
            &intermediates,
            &req.challenge,
            now(),
        )
        .map_err(|e| denied(e.to_string()))?;
        // 4. The access token.
        let token = state
            .jwks()?
            .verify_arm_token(&req.access_token, now().unix_timestamp())
            .await
            .map_err(|e| denied(e.to_string()))?;
        // 5. The VM.
        let arm = azure_mint::arm::ArmClient::with_http(
            state.arm_http()?,
            azure_mint::Cloud::AzureCloud,
            Arc::new(azure_mint::arm::StaticBearer(req.access_token.clone())),
        );
        let claimed = [token.str_claim("xms_az_rid"), token.str_claim("xms_mirid")]
            .into_iter()
            .flatten()
            .filter_map(|id| azure_mint::arm::ResourceId::parse(id).ok().map(|r| (id, r)))
            .find(|(_, r)| r.provider.eq_ignore_ascii_case("Microsoft.Compute"));
        let (vm_resource_id, rid) = match claimed {
            Some((id, rid)) => {
                if !rid
                    .subscription
                    .eq_ignore_ascii_case(&attested.subscription_id)
                {
                    return Err(denied(format!(
                        "the attested document is from subscription {}, but the access token is for a VM in subscription {}: both must come from the same VM",
                        attested.subscription_id, rid.subscription
                    )));
                }
                (id.to_string(), rid)
            }
            None => {
                let vm = arm
                    .find_vm_by_vm_id(&attested.subscription_id, &attested.vm_id)
                    .await
                    .map_err(|e| {
                        denied(format!(
                            "cannot find VM {} in subscription {} through ARM with the agent's identity ({e}): give the identity Microsoft.Compute/virtualMachines/read",
                            attested.vm_id, attested.subscription_id
                        ))
                    })?
                    .ok_or_else(|| {
                        denied(format!(
                            "no VM with vmId {} in subscription {} is visible to the agent's identity",
                            attested.vm_id, attested.subscription_id
                        ))
                    })?;
                let rid = azure_mint::arm::ResourceId::parse(&vm.id)
                    .map_err(|e| AuthError::Internal(format!("ARM returned a bad VM ID: {e}")))?;
                (vm.id, rid)
            }
        };
        let vm = arm.get_vm(&vm_resource_id).await.map_err(|e| {
            denied(format!(
                "cannot read the VM {vm_resource_id} through ARM with the agent's identity ({e}): give the identity Microsoft.Compute/virtualMachines/read on the VM's resource group"
            ))
        })?;
        if !vm.properties.vm_id.eq_ignore_ascii_case(&attested.vm_id) {
            return Err(denied(format!(
                "the VM {vm_resource_id} has vmId {}, but the attested document is from vmId {}: the document and the token must come from the same VM",
                vm.properties.vm_id, attested.vm_id
            )));
        }
        // 6. The allow rules.
        if !rules
            .iter()
            .any(|r| rule_matches(r, &rid.subscription, &rid.resource_group, &token.tenant))
        {
            return Err(denied(format!(
                "the VM {} (subscription {}, resource group {}, tenant {}) matches no allow rule of the join token {:?}: add it to spec.azure.allow",
                rid.name, rid.subscription, rid.resource_group, token.tenant, req.token
            )));
        }
        let roles: Vec<String> = asked.iter().map(|r| r.to_string()).collect();
        let certs = self.issue_host_certs(
            &req.host_id,
            &req.node_name,
            roles,
            &req.public_key,
            &req.dns_names,
        )?;
        Ok(Joined {
            certs,
            vm_id: attested.vm_id,
            subscription: rid.subscription,
            resource_group: rid.resource_group,
            tenant: token.tenant,
        })
    }

    /// Intermediates through the signer's AIA URLs (allow-listed), when the agent sent none.
    async fn fetch_aia(&self, req: &AzureRegisterRequest) -> Vec<Vec<u8>> {
        let Ok(certs) = azure_attest::document_certificates(req.attested_data.as_bytes()) else {
            return Vec::new();
        };
        let Ok(fetcher) = azure_mint::aia::AiaFetcher::new(&self.azure_join().http) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for leaf in certs.iter().take(1) {
            match fetcher.intermediates(leaf).await {
                Ok(found) => out.extend(found),
                Err(e) => tracing::debug!(error = %e, "AIA fetch failed"),
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TELEPORT_AZURE: &str = "6a2f5c0e-1b3d-4e8f-9a7b-0c1d2e3f4a01";
    const SUB: &str = "00000000-0000-0000-0000-000000000000";

    struct World {
        emu: azure_emulator::EmulatorHandle,
        auth: Arc<AuthServer>,
    }

    async fn world() -> World {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/azure-emulator.yaml");
        let emu = azure_emulator::Emulator::start_fixture(&fixture)
            .await
            .unwrap();
        let backend: Arc<dyn backend::Backend> = Arc::new(backend::MemoryBackend::new().await);
        let auth = AuthServer::init(
            backend,
            crate::AuthConfig {
                cluster_name: "example".into(),
                azure_join_extra_roots: vec![emu.attestation_root_pem().unwrap()],
                azure_http: Some(HttpConfig::with_proxy(
                    emu.proxy_url(None),
                    emu.ca_pem().as_bytes().to_vec(),
                )),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let token: resources::ProvisionToken = serde_json::from_value(serde_json::json!({
            "kind": "token", "version": "v2", "metadata": {"name": "azure-token"},
            "spec": {"roles": ["Node"], "join_method": "azure",
                     "azure": {"allow": [{"subscription": SUB, "resource_groups": ["My-Resource-Group"]}]}},
        }))
        .unwrap();
        auth.backend()
            .put(Item::new(
                "tokens/azure-token",
                serde_json::to_vec(&token).unwrap(),
            ))
            .await
            .unwrap();
        World { emu, auth }
    }

    /// What the agent on `vm` sends, for a token of `resource`.
    async fn request(
        w: &World,
        vm: Option<&str>,
        resource: &str,
        client_id: &str,
    ) -> AzureRegisterRequest {
        let http = HttpConfig::with_proxy(w.emu.proxy_url(vm), w.emu.ca_pem().as_bytes().to_vec());
        let imds = azure_mint::imds::ImdsClient::new(&http).unwrap();
        let challenge = w.auth.create_azure_challenge().await.unwrap().challenge;
        assert_eq!(challenge.len(), 32);
        let doc = imds.attested_document(&challenge).await.unwrap();
        let token = imds
            .token(
                resource,
                &azure_mint::imds::ManagedIdentityId::ClientId(client_id.into()),
            )
            .await
            .unwrap();
        let key = pki::generate_key().unwrap();
        AzureRegisterRequest {
            token: "azure-token".into(),
            host_id: "host-1".into(),
            node_name: "node-1".into(),
            roles: vec!["Node".into()],
            public_key: base64::engine::general_purpose::STANDARD.encode(&key.public_key_der),
            dns_names: vec![],
            challenge,
            attested_data:
                serde_json::json!({"encoding": doc.encoding, "signature": doc.signature})
                    .to_string(),
            intermediates: vec![],
            access_token: token.access_token,
        }
    }

    async fn last_join_error(auth: &AuthServer) -> String {
        let events = auth
            .audit()
            .search(
                now() - time::Duration::hours(1),
                now() + time::Duration::hours(1),
                &["instance.join".to_string()],
                0,
            )
            .await
            .unwrap();
        let last = events.last().unwrap();
        assert_eq!(last["code"], "TJ002E");
        last["error"].as_str().unwrap_or_default().to_string()
    }

    /// The error of a refused join with `req`, as text.
    async fn refused(w: &World, req: &AzureRegisterRequest) -> String {
        let e = w.auth.register_with_azure(req, "127.0.0.1:1").await;
        e.unwrap_err().to_string()
    }

    #[tokio::test]
    async fn join_replay_and_audience() {
        let w = world().await;
        let req = request(&w, None, azure_attest::ARM_RESOURCE, TELEPORT_AZURE).await;
        // Joins (the server fetches the intermediate through the allow-listed AIA URL).
        let certs = w
            .auth
            .register_with_azure(&req, "127.0.0.1:1")
            .await
            .unwrap();
        assert_eq!(certs.cluster_name, "example");
        // The same request again: the challenge is used up.
        let e = refused(&w, &req).await;
        assert!(e.contains("already used"), "{e}");
        assert!(last_join_error(&w.auth).await.contains("already used"));
        // A token for another audience.
        let req = request(&w, None, "https://vault.azure.net", TELEPORT_AZURE).await;
        let e = refused(&w, &req).await;
        assert!(e.contains("not https://management.azure.com/"), "{e}");
        // A document for another challenge (replayed from another attempt).
        let mut req = request(&w, None, azure_attest::ARM_RESOURCE, TELEPORT_AZURE).await;
        req.challenge = w.auth.create_azure_challenge().await.unwrap().challenge;
        let e = refused(&w, &req).await;
        assert!(e.contains("nonce does not match"), "{e}");
        // A tampered token signature.
        let mut req = request(&w, None, azure_attest::ARM_RESOURCE, TELEPORT_AZURE).await;
        let at = req.access_token.rfind('.').unwrap() + 8;
        let flipped = if &req.access_token[at..=at] == "A" {
            "B"
        } else {
            "A"
        };
        req.access_token.replace_range(at..=at, flipped);
        let e = refused(&w, &req).await;
        assert!(e.contains("signature does not verify"), "{e}");
        // The VM in another resource group is not allowed by the rule.
        let req = request(
            &w,
            Some("other-vm"),
            azure_attest::ARM_RESOURCE,
            "0e6192a4-5f71-4c23-9ebf-4a5b6c7d8e05",
        )
        .await;
        let e = refused(&w, &req).await;
        assert!(e.contains("matches no allow rule"), "{e}");
        // An unknown token.
        let mut req = request(&w, None, azure_attest::ARM_RESOURCE, TELEPORT_AZURE).await;
        req.token = "nope".into();
        let e = refused(&w, &req).await;
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn rules() {
        let rule = |s: &str, g: &[&str], t: &str| AzureRule {
            subscription: s.into(),
            resource_groups: g.iter().map(|x| x.to_string()).collect(),
            tenant: t.into(),
        };
        assert!(rule_matches(&rule("s1", &[], ""), "s1", "any", "t"));
        assert!(rule_matches(
            &rule("s1", &["My-Group"], ""),
            "s1",
            "my-group",
            "t"
        ));
        assert!(!rule_matches(&rule("s1", &["g1"], ""), "s1", "g2", "t"));
        assert!(!rule_matches(&rule("s2", &[], ""), "s1", "g", "t"));
        assert!(!rule_matches(&rule("", &[], "t"), "s1", "g", "t"));
        assert!(rule_matches(&rule("s1", &[], "t"), "s1", "g", "t"));
        assert!(!rule_matches(&rule("s1", &[], "other"), "s1", "g", "t"));
    }
}
