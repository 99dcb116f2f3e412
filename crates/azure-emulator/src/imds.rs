//! The Instance Metadata Service (169.254.169.254): managed-identity tokens, instance metadata,
//! attested documents.

use serde_json::{json, Value};

use crate::fixture::{identity_principal, vm_resource_id, IdentitySpec, Loc};
use crate::server::{json_resp, raw_resp, Req, Resp, State};

/// Path (under `www.microsoft.com`) where the intermediate CA of attested documents is served.
pub const INTERMEDIATE_PATH: &str = "/pkiops/certs/Emulated%20Azure%20TLS%20Issuing%20CA%2001.crt";
/// Path where the attestation root is served.
pub const ROOT_PATH: &str = "/pkiops/certs/Emulated%20Azure%20Attestation%20Root%20G2.crt";

/// The chain that signs attested documents: root -> intermediate -> leaf `metadata.azure.com` (RSA-2048).
pub struct AttestPki {
    /// Root certificate, DER.
    pub root_der: Vec<u8>,
    /// Root certificate, PEM.
    pub root_pem: String,
    /// Intermediate certificate, DER.
    pub intermediate_der: Vec<u8>,
    /// Leaf (signer) certificate, DER.
    pub leaf_der: Vec<u8>,
    leaf_key: rcgen::KeyPair,
    issuer_raw: Vec<u8>,
    serial_raw: Vec<u8>,
}

impl std::fmt::Debug for AttestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestPki").finish_non_exhaustive()
    }
}

fn pki_err(e: impl std::fmt::Display) -> crate::Error {
    crate::Error::Tls(format!("attestation PKI: {e}"))
}

fn aia_extension(url: &str) -> rcgen::CustomExtension {
    use crate::der;
    // AuthorityInfoAccessSyntax ::= SEQUENCE OF AccessDescription { caIssuers, [6] IA5String URI }
    let access = der::seq(&[
        &der::oid(&[1, 3, 6, 1, 5, 5, 7, 48, 2]),
        &der::tlv(0x86, url.as_bytes()),
    ]);
    rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], der::seq(&[&access]))
}

impl AttestPki {
    /// Generates the chain (three RSA-2048 keys).
    pub fn generate() -> Result<Self, crate::Error> {
        use crate::pki::ca_params;
        use rcgen::{
            CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
            RsaKeySize, PKCS_RSA_SHA256,
        };
        let now = time::OffsetDateTime::now_utc();
        let rsa =
            || KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).map_err(pki_err);
        let root_key = rsa()?;
        let root = ca_params(
            &[
                (DnType::CountryName, "US"),
                (DnType::OrganizationName, "Azure Emulator"),
                (DnType::CommonName, "Emulated Azure Attestation Root G2"),
            ],
            None,
            3650,
        )
        .map_err(pki_err)?;
        let root_cert = root.self_signed(&root_key).map_err(pki_err)?;

        let int_key = rsa()?;
        let mut int = ca_params(
            &[
                (DnType::CountryName, "US"),
                (DnType::OrganizationName, "Microsoft Corporation"),
                (DnType::CommonName, "Emulated Azure TLS Issuing CA 01"),
            ],
            Some(0),
            1825,
        )
        .map_err(pki_err)?;
        int.use_authority_key_identifier_extension = true;
        int.custom_extensions = vec![aia_extension(&format!(
            "http://{}{ROOT_PATH}",
            crate::server::PKI_HOST
        ))];
        let root_issuer = Issuer::from_params(&root, &root_key);
        let int_cert = int.signed_by(&int_key, &root_issuer).map_err(pki_err)?;

        let leaf_key = rsa()?;
        let mut leaf =
            CertificateParams::new(vec!["metadata.azure.com".to_string()]).map_err(pki_err)?;
        leaf.distinguished_name.push(DnType::CountryName, "US");
        leaf.distinguished_name
            .push(DnType::OrganizationName, "Microsoft Corporation");
        leaf.distinguished_name
            .push(DnType::CommonName, "metadata.azure.com");
        leaf.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        leaf.use_authority_key_identifier_extension = true;
        leaf.custom_extensions = vec![aia_extension(&format!(
            "http://{}{INTERMEDIATE_PATH}",
            crate::server::PKI_HOST
        ))];
        leaf.not_before = now - time::Duration::days(1);
        leaf.not_after = now + time::Duration::days(365);
        let int_issuer = Issuer::from_params(&int, &int_key);
        let leaf_cert = leaf.signed_by(&leaf_key, &int_issuer).map_err(pki_err)?;

        let leaf_der = leaf_cert.der().to_vec();
        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf_der).map_err(pki_err)?;
        let issuer_raw = parsed.tbs_certificate.issuer.as_raw().to_vec();
        let serial_raw = parsed.tbs_certificate.raw_serial().to_vec();
        Ok(Self {
            root_der: root_cert.der().to_vec(),
            root_pem: root_cert.pem(),
            intermediate_der: int_cert.der().to_vec(),
            leaf_der,
            leaf_key,
            issuer_raw,
            serial_raw,
        })
    }

    /// PKCS#7 SignedData over `content`, as Azure makes it: version 1, the content inline, the
    /// digest-algorithm OID set to sha256WithRSAEncryption (Azure's quirk), no signed attributes,
    /// only the leaf certificate embedded.
    pub fn sign_pkcs7(&self, content: &[u8]) -> Result<Vec<u8>, crate::Error> {
        use crate::der;
        use rcgen::SigningKey as _;
        let signature = self.leaf_key.sign(content).map_err(pki_err)?;
        let sha256_rsa = der::seq(&[&der::oid(&[1, 2, 840, 113549, 1, 1, 11]), &der::null()]);
        let rsa = der::seq(&[&der::oid(&[1, 2, 840, 113549, 1, 1, 1]), &der::null()]);
        let data_oid = der::oid(&[1, 2, 840, 113549, 1, 7, 1]);
        let encap = der::seq(&[&data_oid, &der::explicit(0, &der::octets(content))]);
        let sid = der::seq(&[&self.issuer_raw, &der::tlv(0x02, &self.serial_raw)]);
        let signer_info = der::seq(&[
            &der::small_int(1),
            &sid,
            &sha256_rsa,
            &rsa,
            &der::octets(&signature),
        ]);
        let signed_data = der::seq(&[
            &der::small_int(1),
            &der::set(&[&sha256_rsa]),
            &encap,
            &der::tlv(0xA0, &self.leaf_der),
            &der::set(&[&signer_info]),
        ]);
        Ok(der::seq(&[
            &der::oid(&[1, 2, 840, 113549, 1, 7, 2]),
            &der::explicit(0, &signed_data),
        ]))
    }
}

fn bad_request(description: &str) -> Resp {
    json_resp(
        400,
        &json!({"error": "invalid_request", "error_description": description}),
    )
}

/// Serves an IMDS request.
pub fn handle(req: &Req, state: &State) -> Resp {
    if req.method != http::Method::GET {
        return json_resp(405, &json!({"error": "Method not allowed"}));
    }
    let metadata_ok = req
        .header("metadata")
        .map(|v| v.eq_ignore_ascii_case("true"))
        .unwrap_or(false);
    let path = req.path.trim_end_matches('/');
    match path {
        APP_SERVICE_PATH => token(req, state),
        "/metadata/identity/oauth2/token" => {
            if !metadata_ok {
                return bad_request("Required metadata header not specified");
            }
            token(req, state)
        }
        "/metadata/instance" | "/metadata/instance/compute" => {
            if !metadata_ok {
                return json_resp(
                    400,
                    &json!({"error": "Required metadata header not specified"}),
                );
            }
            instance(req, state, path.ends_with("compute"))
        }
        "/metadata/attested/document" => {
            if !metadata_ok {
                return json_resp(
                    400,
                    &json!({"error": "Required metadata header not specified"}),
                );
            }
            attested(req, state)
        }
        "/metadata/versions" => json_resp(
            200,
            &json!({"apiVersions": ["2017-08-01", "2018-02-01", "2019-08-01", "2020-09-01", "2021-02-01", "2023-07-01"]}),
        ),
        _ => json_resp(404, &json!({"error": "Not found"})),
    }
}

/// Serves the AIA host (www.microsoft.com/pkiops/certs/...).
pub fn handle_pki(req: &Req, state: &State) -> Resp {
    let pki = match state.attest_pki() {
        Ok(p) => p,
        Err(e) => return raw_resp(500, "text/plain", e),
    };
    if req.path.eq_ignore_ascii_case(INTERMEDIATE_PATH) {
        raw_resp(200, "application/pkix-cert", pki.intermediate_der.clone())
    } else if req.path.eq_ignore_ascii_case(ROOT_PATH) {
        raw_resp(200, "application/pkix-cert", pki.root_der.clone())
    } else {
        raw_resp(404, "text/plain", "not found\n")
    }
}

/// `MM/DD/YY HH:MM:SS -0000`, as attested documents write dates.
pub fn attested_date(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:02}/{:02}/{:02} {:02}:{:02}:{:02} -0000",
        u8::from(t.month()),
        t.day(),
        t.year().rem_euclid(100),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn attested(req: &Req, state: &State) -> Resp {
    let world = state.world();
    let Some((loc, vm)) = world.find_vm(&req.vm) else {
        return json_resp(404, &json!({"error": "Not found"}));
    };
    let nonce = match req.q("nonce") {
        Some(n)
            if n.len() > 32
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            return json_resp(
                400,
                &json!({"error": "Bad request. Nonce must be at most 32 alphanumeric characters."}),
            );
        }
        Some(n) => n.to_string(),
        None => crate::server::now().to_string(),
    };
    let now = time::OffsetDateTime::now_utc();
    let doc = json!({
        "licenseType": "",
        "nonce": nonce,
        "plan": {"name": "", "product": "", "publisher": ""},
        "sku": "server",
        "subscriptionId": loc.sub.id,
        "timeStamp": {
            "createdOn": attested_date(now),
            "expiresOn": attested_date(now + time::Duration::hours(6)),
        },
        "vmId": vm.vm_id,
    });
    let signed = state
        .attest_pki()
        .map_err(crate::Error::Tls)
        .and_then(|pki| pki.sign_pkcs7(doc.to_string().as_bytes()));
    match signed {
        Ok(der) => {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            json_resp(200, &json!({"encoding": "pkcs7", "signature": b64}))
        }
        Err(e) => json_resp(500, &json!({"error": e.to_string()})),
    }
}

/// Path of the App Service (2019-08-01) managed-identity endpoint on the IMDS host.
pub const APP_SERVICE_PATH: &str = "/msi/token";

fn app_service_error(message: &str) -> Resp {
    json_resp(
        400,
        &json!({"statusCode": 400, "message": message, "correlationId": "00000000-0000-0000-0000-000000000000"}),
    )
}

fn token(req: &Req, state: &State) -> Resp {
    let app_service = req.path.trim_end_matches('/') == APP_SERVICE_PATH;
    if app_service {
        let ok = req
            .header("x-identity-header")
            .map(|h| h == state.identity_header())
            .unwrap_or(false);
        if !ok {
            return json_resp(
                401,
                &json!({"statusCode": 401, "message": "Unauthorized: X-IDENTITY-HEADER is missing or wrong."}),
            );
        }
    }
    let bad_request = |d: &str| {
        if app_service {
            app_service_error(d)
        } else {
            bad_request(d)
        }
    };
    if req.q("api-version").is_none() {
        return json_resp(
            400,
            &json!({"error": "Bad request. api-version was not specified in the request. For more information refer to aka.ms/azureimds", "newest-versions": ["2023-07-01"]}),
        );
    }
    let Some(resource) = req.q("resource").filter(|r| !r.is_empty()) else {
        return bad_request("Required query variable 'resource' is missing");
    };
    let world = state.world();
    let Some((vm_loc, vm)) = world.find_vm(&req.vm) else {
        return bad_request("Identity not found");
    };
    let attached: Vec<(Loc<'_>, &IdentitySpec)> = vm
        .identities
        .iter()
        .filter_map(|r| world.find_identity_ref(r))
        .collect();
    let chosen = if let Some(client_id) = req.q("client_id") {
        attached
            .iter()
            .find(|(_, i)| i.client_id.eq_ignore_ascii_case(client_id))
    } else if let Some(object_id) = req.q("object_id").or_else(|| req.q("principal_id")) {
        attached
            .iter()
            .find(|(_, i)| i.principal_id.eq_ignore_ascii_case(object_id))
    } else if let Some(res_id) = req.q("msi_res_id").or_else(|| req.q("mi_res_id")) {
        let wanted = res_id.trim_end_matches('/');
        attached
            .iter()
            .find(|(loc, i)| crate::fixture::identity_id(loc, i).eq_ignore_ascii_case(wanted))
    } else {
        match attached.len() {
            1 => attached.first(),
            0 => None,
            _ => {
                return bad_request("Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request")
            }
        }
    };
    let Some((loc, identity)) = chosen else {
        if app_service {
            return app_service_error("No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId.");
        }
        return bad_request("Identity not found");
    };
    let principal = identity_principal(loc, identity);
    let vm_id = vm_resource_id(&vm_loc, vm);
    match crate::entra::mint(state, &principal, resource, Some(&vm_id)) {
        Ok(minted) if app_service => json_resp(
            200,
            &json!({
                "access_token": minted.token,
                "expires_on": minted.exp.to_string(),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": principal.client_id,
            }),
        ),
        Ok(minted) => json_resp(
            200,
            &json!({
                "access_token": minted.token,
                "client_id": principal.client_id,
                "expires_in": minted.lifetime.to_string(),
                "expires_on": minted.exp.to_string(),
                "ext_expires_in": minted.lifetime.to_string(),
                "not_before": minted.nbf.to_string(),
                "resource": resource,
                "token_type": "Bearer",
            }),
        ),
        Err(e) => json_resp(
            500,
            &json!({"error": "server_error", "error_description": e.to_string()}),
        ),
    }
}

fn instance(req: &Req, state: &State, compute_only: bool) -> Resp {
    let world = state.world();
    let Some((loc, vm)) = world.find_vm(&req.vm) else {
        return json_resp(404, &json!({"error": "Not found"}));
    };
    let tags: Vec<Value> = vm
        .tags
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let compute = json!({
        "azEnvironment": "AzurePublicCloud",
        "location": vm.location.clone().unwrap_or_else(|| loc.rg.location.clone()),
        "name": vm.name,
        "osType": "Linux",
        "resourceGroupName": loc.rg.name,
        "resourceId": vm_resource_id(&loc, vm),
        "subscriptionId": loc.sub.id,
        "tagsList": tags,
        "vmId": vm.vm_id,
        "vmSize": vm.size,
        "zone": "",
    });
    if compute_only {
        return json_resp(200, &compute);
    }
    json_resp(
        200,
        &json!({"compute": compute, "network": {"interface": []}}),
    )
}
