//! The upstream of `tsh az` / `tsh proxy azure`: the cluster, reached with
//! the app certificate.

/// Carries a local proxy's Azure requests to the cluster: mutual TLS with
/// the app certificate on ALPN `teleport-app`, keeping the request's `Host`
/// (the Azure host) so the agent knows where it goes.
pub struct AppUpstream {
    http: reqwest::Client,
    base: String,
}

impl AppUpstream {
    /// A connection to the proxy at `proxy_addr` with `app` credentials.
    pub fn new(
        proxy_addr: &str,
        app: &client::Credentials,
        insecure: bool,
    ) -> client::Result<AppUpstream> {
        let mut roots = client::system_roots();
        roots.extend(app.ca_pems.iter().cloned());
        let tls = pki::tls::proxy_client_config(
            Some(&app.cert_pem),
            Some(&app.key_pem),
            &roots,
            insecure,
            &[api::alpn::APP],
        )
        .map_err(|e| client::ClientError::Local(format!("TLS setup failed: {e}")))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(300))
            .build()
            .map_err(|e| client::ClientError::Local(format!("HTTP client setup failed: {e}")))?;
        Ok(AppUpstream {
            http,
            base: client::base_url(proxy_addr),
        })
    }
}

#[async_trait::async_trait]
impl crate::Upstream for AppUpstream {
    async fn forward(
        &self,
        req: http::Request<bytes::Bytes>,
    ) -> std::result::Result<http::Response<bytes::Bytes>, crate::UpstreamError> {
        let (parts, body) = req.into_parts();
        let host = parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            })
            .ok_or_else(|| {
                crate::UpstreamError::new(
                    http::StatusCode::BAD_REQUEST,
                    "the request names no host",
                )
            })?;
        let host = host.strip_suffix(":443").unwrap_or(&host).to_string();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
            .map_err(|_| crate::UpstreamError::new(http::StatusCode::BAD_REQUEST, "bad method"))?;
        let mut out = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in parts.headers.iter() {
            let n = name.as_str();
            if api::http::is_hop_by_hop(n) || matches!(n, "host" | "content-length") {
                continue;
            }
            out = out.header(n, value.as_bytes());
        }
        out = out.header("host", host).body(body);
        let resp = out.send().await.map_err(|e| {
            crate::UpstreamError::bad_gateway(format!("the Teleport proxy is unreachable: {e}"))
        })?;
        let mut builder = http::Response::builder().status(resp.status().as_u16());
        for (name, value) in resp.headers().iter() {
            let n = name.as_str();
            if api::http::is_hop_by_hop(n) || n == "content-length" {
                continue;
            }
            builder = builder.header(n, value.as_bytes());
        }
        let bytes = resp.bytes().await.map_err(|e| {
            crate::UpstreamError::bad_gateway(format!("reading the answer failed: {e}"))
        })?;
        builder
            .body(bytes)
            .map_err(|e| crate::UpstreamError::bad_gateway(e.to_string()))
    }
}
