//! The Azure join, agent side: the proof gathered on an Azure VM (IMDS's
//! attested document for the cluster's challenge, a managed-identity token
//! for ARM, the signer's intermediates) sent for host certificates.

use base64::Engine as _;

/// Join with the Azure method from an Azure VM: a challenge from the cluster, the attested
/// document from IMDS with the challenge as nonce, a managed-identity token for ARM (the identity
/// `client_id`, else the VM's only one), the intermediates from the signer's AIA URLs
/// (allow-listed), then host certificates for `roles`. `token_name` is the name of the
/// `join_method: azure` token resource.
pub async fn join_with_azure(
    proxy: &str,
    trust: &crate::join::ClusterTrust,
    token_name: &str,
    client_id: Option<&str>,
    host_id: &str,
    node_name: &str,
    roles: &[String],
) -> crate::join::Result<crate::join::AgentIdentity> {
    use crate::join::JoinError;
    let api = crate::join::cluster_client(proxy, trust, None)?;
    let challenge: api::join::AzureChallenge = crate::join::post_join(
        &api,
        "/v1/webapi/host/azure/challenge",
        &serde_json::json!({}),
    )
    .await
    .map_err(JoinError::at(crate::join::JoinStep::AzureChallenge))?;
    let http = azure_mint::http::HttpConfig::from_env();
    let imds = azure_mint::imds::ImdsClient::new(&http)
        .map_err(|e| JoinError::Local(format!("IMDS client: {e}")))?;
    let doc = imds
        .attested_document(&challenge.challenge)
        .await
        .map_err(|e| {
            JoinError::Local(format!(
                "cannot get the attested document from IMDS (is this an Azure VM?): {e}"
            ))
        })?;
    let attested_data =
        serde_json::json!({"encoding": doc.encoding, "signature": doc.signature}).to_string();
    let id = match client_id.filter(|c| !c.trim().is_empty()) {
        Some(c) => azure_mint::imds::ManagedIdentityId::ClientId(c.trim().to_string()),
        None => azure_mint::imds::ManagedIdentityId::System,
    };
    let token = imds.token(azure_attest::ARM_RESOURCE, &id).await.map_err(|e| {
        JoinError::Local(format!(
            "cannot get a managed-identity token for {} from IMDS (check join_params.azure.client_id and that the identity is attached to this VM): {e}",
            azure_attest::ARM_RESOURCE
        ))
    })?;
    let mut intermediates = Vec::new();
    match azure_attest::document_certificates(attested_data.as_bytes()) {
        Ok(certs) => match azure_mint::aia::AiaFetcher::new(&http) {
            Ok(fetcher) => {
                for leaf in certs.iter().take(1) {
                    match fetcher.intermediates(leaf).await {
                        Ok(found) => intermediates.extend(found),
                        Err(e) => {
                            tracing::warn!(error = %e, "fetching the attested document's intermediates failed; the auth service will try")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "AIA client setup failed"),
        },
        Err(e) => tracing::warn!(error = %e, "cannot read the attested document's certificates"),
    }
    let key = pki::generate_key().map_err(|e| JoinError::Local(e.to_string()))?;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let req = api::join::AzureRegisterRequest {
        token: token_name.to_string(),
        host_id: host_id.to_string(),
        node_name: node_name.to_string(),
        roles: roles.to_vec(),
        public_key: b64.encode(&key.public_key_der),
        dns_names: vec![],
        challenge: challenge.challenge,
        attested_data,
        intermediates: intermediates.iter().map(|c| b64.encode(c)).collect(),
        access_token: token.access_token,
    };
    let certs: api::join::HostCerts =
        crate::join::post_join(&api, "/v1/webapi/host/azure/credentials", &req)
            .await
            .map_err(JoinError::at(crate::join::JoinStep::AzureJoin))?;
    Ok(crate::join::identity_from(
        host_id,
        key.private_key_pem,
        certs,
        roles,
    ))
}
