//! Azure clouds and the Azure host allow-list.

/// An Azure cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cloud {
    /// Azure public cloud.
    #[default]
    AzureCloud,
    /// Azure operated by 21Vianet.
    AzureChinaCloud,
    /// Azure Government.
    AzureUSGovernment,
}

impl Cloud {
    /// Parses `AzureCloud`, `AzureChinaCloud`, `AzureUSGovernment` (case-insensitive; `public`, `china`,
    /// `usgov` also accepted).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "azurecloud" | "public" | "azurepubliccloud" => Some(Self::AzureCloud),
            "azurechinacloud" | "china" => Some(Self::AzureChinaCloud),
            "azureusgovernment" | "usgov" | "azureusgovernmentcloud" => {
                Some(Self::AzureUSGovernment)
            }
            _ => None,
        }
    }

    /// The name `az cloud list` uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::AzureCloud => "AzureCloud",
            Self::AzureChinaCloud => "AzureChinaCloud",
            Self::AzureUSGovernment => "AzureUSGovernment",
        }
    }

    /// Entra ID authority host.
    pub fn authority_host(self) -> &'static str {
        match self {
            Self::AzureCloud => "https://login.microsoftonline.com",
            Self::AzureChinaCloud => "https://login.chinacloudapi.cn",
            Self::AzureUSGovernment => "https://login.microsoftonline.us",
        }
    }

    /// ARM endpoint.
    pub fn resource_manager(self) -> &'static str {
        match self {
            Self::AzureCloud => "https://management.azure.com",
            Self::AzureChinaCloud => "https://management.chinacloudapi.cn",
            Self::AzureUSGovernment => "https://management.usgovcloudapi.net",
        }
    }

    /// The ARM token audience (v1 resource) `az` asks for.
    pub fn management_resource(self) -> &'static str {
        match self {
            Self::AzureCloud => "https://management.core.windows.net/",
            Self::AzureChinaCloud => "https://management.core.chinacloudapi.cn/",
            Self::AzureUSGovernment => "https://management.core.usgovcloudapi.net/",
        }
    }

    /// The Key Vault DNS suffix.
    pub fn key_vault_suffix(self) -> &'static str {
        match self {
            Self::AzureCloud => "vault.azure.net",
            Self::AzureChinaCloud => "vault.azure.cn",
            Self::AzureUSGovernment => "vault.usgovcloudapi.net",
        }
    }
}

/// Host suffixes of Azure endpoints (public and sovereign clouds).
pub const AZURE_ENDPOINT_SUFFIXES: &[&str] = &[
    // public cloud
    "management.azure.com",
    "graph.windows.net",
    "batch.core.windows.net",
    "rest.media.azure.net",
    "datalake.azure.net",
    "management.core.windows.net",
    "gallery.azure.com",
    "azuredatalakestore.net",
    "azurecr.io",
    "database.windows.net",
    "azuredatalakeanalytics.net",
    "vault.azure.net",
    "core.windows.net",
    "azurefd.net",
    "login.microsoftonline.com",
    "graph.microsoft.com",
    // China
    "chinacloudapi.cn",
    "azure.cn",
    "azurecr.cn",
    "login.partner.microsoftonline.cn",
    // US Government
    "usgovcloudapi.net",
    "microsoftazure.us",
    "azurecr.us",
    "login.microsoftonline.us",
    "graph.microsoft.us",
];

/// Whether `host` (a DNS name, optionally with `:port`, any case, optionally with a trailing dot) is an
/// Azure endpoint: a valid DNS name ([`crate::authority::Authority::parse`]: no userinfo, no
/// characters beyond letters, digits, `-` and `.`) equal to one of [`AZURE_ENDPOINT_SUFFIXES`] or a
/// subdomain of one. Code that dials what a client named parses it with
/// [`crate::authority::AzureEndpoint::parse`] instead, which keeps the parsed host to dial.
pub fn is_azure_endpoint(host: &str) -> bool {
    let host = strip_port(host.trim());
    let host = host.strip_suffix('.').unwrap_or(host);
    match crate::authority::Authority::parse(host) {
        Ok(a) => match a.host() {
            crate::authority::Host::Dns(name) => a.port().is_none() && on_allow_list(name),
            _ => false,
        },
        Err(_) => false,
    }
}

/// Whether a valid, lowercase DNS name is one of [`AZURE_ENDPOINT_SUFFIXES`] or a subdomain of one.
pub(crate) fn on_allow_list(name: &str) -> bool {
    AZURE_ENDPOINT_SUFFIXES.iter().any(|suffix| {
        name == *suffix
            || (name.len() > suffix.len()
                && name.ends_with(suffix)
                && name.as_bytes().get(name.len() - suffix.len() - 1) == Some(&b'.'))
    })
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: never an Azure DNS name.
        return host;
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_is_a_suffix_match_on_labels() {
        for ok in [
            "management.azure.com",
            "MANAGEMENT.AZURE.COM",
            "management.azure.com:443",
            "management.azure.com.",
            "myvault.vault.azure.net",
            "acct.blob.core.windows.net",
            "azcliprod.blob.core.windows.net",
            "graph.microsoft.com",
            "login.microsoftonline.com",
            "management.chinacloudapi.cn",
            "management.usgovcloudapi.net",
            "myreg.azurecr.io",
        ] {
            assert!(is_azure_endpoint(ok), "{ok}");
        }
        for bad in [
            "",
            "evilmanagement.azure.com",
            "management.azure.com.evil.com",
            "example.com",
            "core.windows.net.attacker.io",
            "notazurecr.io",
            "[::1]:443",
            "127.0.0.1",
            "evil.com:443@a.management.azure.com",
            "x@management.azure.com",
            "management.azure.com:443@other.host",
            "other.host/.management.azure.com",
            "other.host%2f.management.azure.com",
            "other host.management.azure.com",
        ] {
            assert!(!is_azure_endpoint(bad), "{bad}");
        }
    }

    #[test]
    fn clouds() {
        assert_eq!(
            Cloud::parse("AzureChinaCloud"),
            Some(Cloud::AzureChinaCloud)
        );
        assert_eq!(Cloud::parse("nope"), None);
        for c in [
            Cloud::AzureCloud,
            Cloud::AzureChinaCloud,
            Cloud::AzureUSGovernment,
        ] {
            assert_eq!(Cloud::parse(c.name()), Some(c));
            let host = c.resource_manager().trim_start_matches("https://");
            assert!(is_azure_endpoint(host), "{host}");
            assert!(is_azure_endpoint(
                c.authority_host().trim_start_matches("https://")
            ));
        }
    }
}
