//! The emulator's wire shapes, through its forward proxy, with a plain HTTP client.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use aws_lc_rs::signature::{RsaPublicKeyComponents, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use azure_emulator::der;
use azure_emulator::{Emulator, EmulatorHandle};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::Value;

const SUB: &str = "00000000-0000-0000-0000-000000000000";
const TENANT: &str = "11111111-2222-3333-4444-555555555555";

async fn start() -> EmulatorHandle {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/azure-emulator.yaml");
    Emulator::start_fixture(&path).await.unwrap()
}

fn client(emu: &EmulatorHandle, vm: Option<&str>) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(emu.proxy_url(vm)).unwrap())
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(emu.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap()
}

/// ARM's list of subscriptions.
const SUBSCRIPTIONS: &str = "https://management.azure.com/subscriptions?api-version=2022-12-01";

/// The string `v` holds.
fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// `get`, which must be answered with `status`: the body.
async fn answer(c: &reqwest::Client, url: &str, headers: &[(&str, &str)], status: u16) -> Value {
    let (got, body) = get(c, url, headers).await;
    assert_eq!(got, status, "GET {url}: {body}");
    body
}

async fn get(c: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = c.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const TOKEN_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/";

#[tokio::test]
async fn imds_token_shapes_and_errors() {
    let emu = start().await;
    let c = client(&emu, None);
    let body = answer(&c, TOKEN_URL, &[("Metadata", "true")], 200).await;
    for k in ["expires_in", "expires_on", "ext_expires_in", "not_before"] {
        assert!(
            body[k].as_str().unwrap().parse::<i64>().is_ok(),
            "{k} must be a numeric string"
        );
    }
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], "https://management.azure.com/");

    let body = answer(&c, TOKEN_URL, &[], 400).await;
    assert_eq!(
        body["error_description"],
        "Required metadata header not specified"
    );

    let url = format!("{TOKEN_URL}&client_id=00000000-0000-0000-0000-00000000dead");
    let (status, body) = get(&c, &url, &[("Metadata", "true")]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["error_description"], "Identity not found");

    // Unknown VM in the proxy credentials.
    let bad = client(&emu, Some("no-such-vm"));
    let err = bad.get(TOKEN_URL).header("Metadata", "true").send().await;
    match err {
        Ok(resp) => assert_eq!(resp.status().as_u16(), 407),
        Err(e) => assert!(e.to_string().contains("407") || e.is_connect(), "{e}"),
    }
    assert!(emu.try_env(Some("no-such-vm")).is_err());
}

#[tokio::test]
async fn app_service_protocol() {
    let emu = start().await;
    let env = emu.app_service_env(None).unwrap();
    let get_env = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let endpoint = get_env("IDENTITY_ENDPOINT");
    let secret = get_env("IDENTITY_HEADER");
    let c = client(&emu, None);
    let id = format!("/subscriptions/{SUB}/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure");
    let url = format!("{endpoint}?api-version=2019-08-01&resource=https://management.core.windows.net/&mi_res_id={id}");
    let (status, body) = get(&c, &url, &[("X-IDENTITY-HEADER", &secret)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(str_of(&body["expires_on"]).parse::<i64>().is_ok());
    assert_eq!(body["client_id"], "6a2f5c0e-1b3d-4e8f-9a7b-0c1d2e3f4a01");
    let _ = answer(&c, &url, &[("X-IDENTITY-HEADER", "wrong")], 401).await;
    let other = url
        .replace("my-resource-group", "other-resource-group")
        .replace("teleport-azure", "other-identity");
    let body = answer(&c, &other, &[("X-IDENTITY-HEADER", &secret)], 400).await;
    assert!(str_of(&body["message"]).contains("No User Assigned"));
}

#[tokio::test]
async fn tokens_verify_against_oidc_discovery_and_jwks() {
    let emu = start().await;
    let c = client(&emu, None);
    let (_, tok) = get(&c, TOKEN_URL, &[("Metadata", "true")]).await;
    let jwt = str_of(&tok["access_token"]);
    let parts: Vec<&str> = jwt.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    for k in [
        "aud",
        "iss",
        "iat",
        "nbf",
        "exp",
        "tid",
        "oid",
        "sub",
        "appid",
        "xms_mirid",
        "xms_az_rid",
    ] {
        assert!(!claims[k].is_null(), "claim {k} missing");
    }

    let oidc = answer(
        &c,
        &format!("https://login.microsoftonline.com/{TENANT}/.well-known/openid-configuration"),
        &[],
        200,
    )
    .await;
    assert_eq!(oidc["issuer"], claims["iss"]);
    let v2 = answer(
        &c,
        &format!(
            "https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration"
        ),
        &[],
        200,
    )
    .await;
    assert!(str_of(&v2["token_endpoint"]).ends_with("/oauth2/v2.0/token"));
    let jwks = answer(&c, str_of(&oidc["jwks_uri"]), &[], 200).await;
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap();
    let n = URL_SAFE_NO_PAD.decode(str_of(&key["n"])).unwrap();
    let e = URL_SAFE_NO_PAD.decode(str_of(&key["e"])).unwrap();
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &sig,
        )
        .unwrap();

    let body = answer(
        &c,
        "https://login.microsoftonline.com/not-our-tenant/v2.0/.well-known/openid-configuration",
        &[],
        400,
    )
    .await;
    assert!(str_of(&body["error_description"]).starts_with("AADSTS90002"));

    // ARM: no token, a token for another audience.
    let body = answer(&c, SUBSCRIPTIONS, &[], 401).await;
    assert_eq!(body["error"]["code"], "AuthenticationFailed");
    let vault = TOKEN_URL.replace("https://management.azure.com/", "https://vault.azure.net");
    let (_, vt) = get(&c, &vault, &[("Metadata", "true")]).await;
    let bearer = format!("Bearer {}", str_of(&vt["access_token"]));
    let body = answer(&c, SUBSCRIPTIONS, &[("Authorization", &bearer)], 401).await;
    assert_eq!(body["error"]["code"], "InvalidAuthenticationTokenAudience");
    // Hosts the emulator does not serve are refused at CONNECT.
    assert!(c
        .get("https://azcliprod.blob.core.windows.net/")
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn attested_document_is_pkcs7_as_azure_makes_it() {
    let emu = start().await;
    let c = client(&emu, Some("other-vm"));
    let url = "http://169.254.169.254/metadata/attested/document?api-version=2021-02-01&format=json&nonce=abcdefABCDEF0123456789_-abcdefgh";
    let (status, body) = get(&c, url, &[("Metadata", "true")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["encoding"], "pkcs7");
    let der_bytes = STANDARD.decode(str_of(&body["signature"])).unwrap();

    // ContentInfo { signedData, [0] SignedData }
    let (_, ci, rest) = der::read(&der_bytes).unwrap();
    assert!(rest.is_empty());
    let ci = der::read_all(ci).unwrap();
    assert_eq!(
        ci[0].1,
        [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02]
    );
    let (_, sd, _) = der::read(ci[1].1).unwrap();
    let sd = der::read_all(sd).unwrap();
    assert_eq!(sd[0], (0x02, &[1u8][..]), "version 1");
    // The digest-OID quirk: sha256WithRSAEncryption where a digest algorithm belongs.
    let sha256_rsa = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0B];
    let (_, alg, _) = der::read(sd[1].1).unwrap();
    assert_eq!(der::read_all(alg).unwrap()[0].1, sha256_rsa);
    // Content inline.
    let encap = der::read_all(sd[2].1).unwrap();
    let (tag, content, _) = der::read(encap[1].1).unwrap();
    assert_eq!(tag, 0x04);
    let doc: Value = serde_json::from_slice(content).unwrap();
    assert_eq!(doc["nonce"], "abcdefABCDEF0123456789_-abcdefgh");
    assert_eq!(doc["vmId"], "2083b4c6-7193-4e45-90d1-6c7d8e9fa007");
    assert_eq!(doc["subscriptionId"], SUB);
    let created = str_of(&doc["timeStamp"]["createdOn"]);
    assert_eq!(created.len(), "11/24/26 04:05:06 -0000".len());
    assert!(created.ends_with(" -0000"));
    assert!(doc["timeStamp"]["expiresOn"].is_string());
    // Only the leaf certificate.
    assert_eq!(sd[3].0, 0xA0);
    let certs = der::read_all(sd[3].1).unwrap();
    assert_eq!(certs.len(), 1);
    let leaf_der = der::read(sd[3].1)
        .map(|(_, _, rest)| &sd[3].1[..sd[3].1.len() - rest.len()])
        .unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der).unwrap();
    let cn = leaf
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    assert_eq!(cn, "metadata.azure.com");
    // Signer info: no signed attributes, RSA-2048 signature over the content.
    let (_, signers, _) = der::read(sd[4].1).unwrap();
    let si = der::read_all(signers).unwrap();
    assert_eq!(si.len(), 5, "no signed attributes");
    let spki = &leaf.public_key().subject_public_key.data;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, spki.as_ref())
        .verify(content, si[4].1)
        .unwrap();
    assert_eq!(si[4].1.len(), 256, "RSA-2048");

    // AIA "CA Issuers" points under www.microsoft.com/pkiops/certs/, and the emulator serves it.
    let aia = leaf
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityInfoAccess(a) => Some(a),
            _ => None,
        })
        .unwrap();
    let url = aia
        .accessdescs
        .iter()
        .find_map(|d| match &d.access_location {
            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .unwrap();
    assert!(
        url.starts_with("http://www.microsoft.com/pkiops/certs/"),
        "{url}"
    );
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let int_der = resp.bytes().await.unwrap();
    let (_, int) = x509_parser::parse_x509_certificate(&int_der).unwrap();
    assert_eq!(int.subject(), leaf.issuer());
    assert!(int.is_ca());
    let root_pem = emu.attestation_root_pem().unwrap();
    assert!(root_pem.contains("BEGIN CERTIFICATE"));

    let too_long = url.replace("abc", "x").replace(&url, "http://169.254.169.254/metadata/attested/document?api-version=2021-02-01&nonce=012345678901234567890123456789012");
    let _ = answer(&c, &too_long, &[("Metadata", "true")], 400).await;
}

#[tokio::test]
async fn arm_paging_and_fault_knobs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/azure-emulator.yaml");
    let mut world = azure_emulator::World::load(&path).unwrap();
    world.fixture.page_size = Some(1);
    let emu = Emulator::start(azure_emulator::World::new(world.fixture).unwrap())
        .await
        .unwrap();
    let c = client(&emu, None);
    let (_, tok) = get(&c, TOKEN_URL, &[("Metadata", "true")]).await;
    let bearer = format!("Bearer {}", str_of(&tok["access_token"]));
    let mut url = format!("https://management.azure.com/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines?api-version=2024-07-01");
    let mut names = Vec::new();
    loop {
        let page = answer(&c, &url, &[("Authorization", &bearer)], 200).await;
        assert_eq!(page["value"].as_array().unwrap().len(), 1);
        names.push(page["value"][0]["name"].as_str().unwrap().to_string());
        match page["nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    names.sort();
    assert_eq!(names, ["app-vm", "teleport-vm"]);

    emu.fail_next("management.azure.com/subscriptions", 1, 503, None);
    let body = answer(&c, SUBSCRIPTIONS, &[("Authorization", &bearer)], 503).await;
    assert_eq!(body["error"]["code"], "InjectedFault");
    let start = std::time::Instant::now();
    emu.delay_next(
        "management.azure.com/subscriptions",
        1,
        std::time::Duration::from_millis(300),
    );
    let _ = answer(&c, SUBSCRIPTIONS, &[("Authorization", &bearer)], 200).await;
    assert!(start.elapsed() >= std::time::Duration::from_millis(300));
    assert!(emu.rotate_redis_keys("no-such-cache").is_none());
    let (p, s) = emu.rotate_redis_keys("default").unwrap();
    assert_ne!(p, s);
}
