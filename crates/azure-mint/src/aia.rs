//! Fetching intermediate CA certificates through AIA "CA Issuers" URLs, restricted to Microsoft's
//! PKI repository so that a document's signer cannot make us fetch arbitrary URLs (Teleport's SSRF,
//! PR #62158).

use std::time::Duration;

use crate::http::HttpConfig;
use crate::imds::get_capped;
use crate::Error;

/// Largest certificate accepted from an AIA URL.
pub const MAX_AIA_BODY: usize = 1 << 20;
/// Timeout of one AIA fetch.
pub const AIA_TIMEOUT: Duration = Duration::from_secs(5);
/// The only host AIA certificates are fetched from.
pub const AIA_HOST: &str = "www.microsoft.com";
/// The only path prefix AIA certificates are fetched from.
pub const AIA_PATH_PREFIX: &str = "/pkiops/certs/";

/// Whether `url` may be fetched: `http(s)://www.microsoft.com/pkiops/certs/<name>.crt` on the
/// default port, without user info, query or fragment.
pub fn aia_url_allowed(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    let scheme_ok = matches!(u.scheme(), "http" | "https");
    let port_ok = u.port().is_none();
    let host_ok = u
        .host_str()
        .is_some_and(|h| h.eq_ignore_ascii_case(AIA_HOST));
    let path = u.path();
    let path_ok = path.starts_with(AIA_PATH_PREFIX)
        && path.len() > AIA_PATH_PREFIX.len() + 4
        && path.to_ascii_lowercase().ends_with(".crt")
        && !path.contains("..")
        && !path[AIA_PATH_PREFIX.len()..].contains('/');
    scheme_ok
        && port_ok
        && host_ok
        && path_ok
        && u.username().is_empty()
        && u.password().is_none()
        && u.query().is_none()
        && u.fragment().is_none()
}

/// Fetches AIA certificates (DER) from allow-listed URLs only.
#[derive(Debug, Clone)]
pub struct AiaFetcher {
    http: reqwest::Client,
}

impl AiaFetcher {
    /// A fetcher using `config` (proxy and CA settings), with a 5 s timeout.
    pub fn new(config: &HttpConfig) -> Result<Self, Error> {
        let mut config = config.clone();
        config.timeout = Some(AIA_TIMEOUT);
        Ok(Self {
            http: config.client()?,
        })
    }

    /// The body of `url` (a DER certificate), at most 1 MiB. URLs outside the allow-list are refused
    /// without any request.
    pub async fn fetch(&self, url: &str) -> Result<Vec<u8>, Error> {
        if !aia_url_allowed(url) {
            return Err(Error::InvalidArgument(format!(
                "refusing to fetch the AIA URL {url:?}: only http(s)://{AIA_HOST}{AIA_PATH_PREFIX}*.crt is allowed"
            )));
        }
        get_capped(&self.http, url, MAX_AIA_BODY, "AIA").await
    }

    /// The intermediates of an attested document's signer (`leaf_der`), following its
    /// allow-listed AIA URLs ([`azure_attest::fetch_intermediates`]).
    pub async fn intermediates(
        &self,
        leaf_der: &[u8],
    ) -> Result<Vec<Vec<u8>>, azure_attest::IntermediatesError<Error>> {
        azure_attest::fetch_intermediates(leaf_der, aia_url_allowed, |url: String| async move {
            self.fetch(&url).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        assert!(aia_url_allowed(
            "http://www.microsoft.com/pkiops/certs/Microsoft%20Azure%20RSA%20TLS%20Issuing%20CA%2003%20-%20xsign.crt"
        ));
        assert!(aia_url_allowed(
            "https://www.microsoft.com/pkiops/certs/a.crt"
        ));
        assert!(aia_url_allowed(
            "http://WWW.MICROSOFT.COM/pkiops/certs/a.CRT"
        ));
        for bad in [
            "http://169.254.169.254/pkiops/certs/a.crt",
            "http://evil.example.com/pkiops/certs/a.crt",
            "http://www.microsoft.com.evil.example/pkiops/certs/a.crt",
            "http://www.microsoft.com:8080/pkiops/certs/a.crt",
            "http://user@www.microsoft.com/pkiops/certs/a.crt",
            "http://www.microsoft.com/pkiops/a.crt",
            "http://www.microsoft.com/pkiops/certs/a.txt",
            "http://www.microsoft.com/pkiops/certs/x/../../a.crt",
            "http://www.microsoft.com/pkiops/certs/a.crt?x=1",
            "ftp://www.microsoft.com/pkiops/certs/a.crt",
            "file:///pkiops/certs/a.crt",
            "not a url",
        ] {
            assert!(!aia_url_allowed(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn fetch_refuses_other_hosts_without_a_request() {
        let f = AiaFetcher::new(&HttpConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        let err = f.fetch("http://127.0.0.1:1/pkiops/certs/a.crt").await;
        assert!(matches!(err, Err(Error::InvalidArgument(_))));
    }
}
