//! Outbound HTTP to URLs that a caller names (client ID metadata documents): a fetcher
//! that cannot be turned against the network Gatehouse sits in (SSRF). https only;
//! every address a name resolves to must be public, and the connection goes to exactly
//! the addresses that were checked (the check lives in the resolver reqwest connects
//! through, so a second lookup cannot rebind the name); no redirects, no proxies; time
//! and size caps; the freshness lifetime the response's cache headers allow.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use http_cache_semantics::CachePolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// Bounds one fetch, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds the TCP and TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Says what may be fetched beyond the public https web.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EgressPolicy {
    /// Allows `http://` and loopback/private addresses: the development opt-out,
    /// for documents served by a test on this machine.
    pub(crate) allow_local: bool,
}

/// Explains why a fetch did not return a document; never carries the body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The URL's scheme is not https (or http under the dev opt-out).
    #[error("the URL must be https")]
    Scheme,
    /// The host is, or resolves to, an address that is not public.
    #[error("the host resolves to a non-public address")]
    Address,
    /// The server answered with something other than 200.
    #[error("the server answered {0}")]
    Status(u16),
    /// The server answered with a redirect, which is never followed.
    #[error("the server answered with a redirect")]
    Redirect,
    /// The body is larger than the caller allows.
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    /// The fetch took longer than its deadline.
    #[error("the fetch timed out")]
    Timeout,
    /// The connection or the HTTP exchange failed.
    #[error("the fetch failed")]
    Transport(#[source] reqwest::Error),
}

/// Is a fetched body and how long it may be reused without fetching it again.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) body: Vec<u8>,
    pub(crate) fresh_for: Duration,
}

/// Fetches caller-named URLs under an [`EgressPolicy`]; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Egress {
    http: reqwest::Client,
    policy: EgressPolicy,
}

/// Marks a resolution refused because an address is not public, so that the fetch
/// can tell it from a DNS failure.
#[derive(Debug, thiserror::Error)]
#[error("refused non-public address")]
struct NonPublicAddress;

/// Resolves names with the system resolver and refuses any answer with a non-public address.
#[derive(Debug)]
struct GuardedResolver {
    policy: EgressPolicy,
}

impl Egress {
    /// Returns a fetcher under `policy`, also trusting the CA certificates in `ca_file`.
    pub(crate) fn new(
        policy: EgressPolicy,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, crate::Error> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = ca_file {
            let unusable = |reason| {
                crate::Error::Config(svc_kit::ConfigError::new(
                    "client_metadata_documents.ca_file",
                    reason,
                ))
            };
            let pem = std::fs::read(path).map_err(|_| unusable("cannot be read"))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|_| unusable("is not a PEM certificate bundle"))?;
            builder = builder.tls_certs_merge(roots);
        }
        let http = builder
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, past the resolver's checks.
            .no_proxy()
            .https_only(!policy.allow_local)
            .dns_resolver(GuardedResolver { policy })
            .build()
            .map_err(|_| crate::Error::Crypto("egress http client"))?;
        Ok(Self { http, policy })
    }

    /// Returns the body at `url` (a 200 of at most `max_bytes`) and its freshness lifetime.
    pub(crate) async fn get(
        &self,
        url: &Url,
        accept: &'static str,
        max_bytes: usize,
    ) -> Result<Fetched, FetchError> {
        self.check_url(url)?;
        let request = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, accept);
        let mut response = request.send().await.map_err(classify)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect);
        }
        if status != reqwest::StatusCode::OK {
            return Err(FetchError::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > max_bytes as u64)
        {
            return Err(FetchError::TooLarge(max_bytes));
        }
        let fresh_for = freshness(url, accept, &response);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > max_bytes {
                return Err(FetchError::TooLarge(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body, fresh_for })
    }

    /// Refuses a scheme or a literal address the policy does not allow (reqwest
    /// connects to a literal without asking the resolver).
    fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        match url.scheme() {
            "https" => {}
            "http" if self.policy.allow_local => {}
            _ => return Err(FetchError::Scheme),
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(address)) => Some(IpAddr::V4(address)),
            Some(url::Host::Ipv6(address)) => Some(IpAddr::V6(address)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(FetchError::Address),
        };
        match literal {
            Some(address) if !self.policy.allow_local && !is_public(address) => {
                Err(FetchError::Address)
            }
            _ => Ok(()),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if !policy.allow_local && addresses.iter().any(|address| !is_public(address.ip())) {
                return Err(Box::new(NonPublicAddress) as Box<_>);
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

fn classify(error: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if cause.is::<NonPublicAddress>() {
            return FetchError::Address;
        }
        source = cause.source();
    }
    if error.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Transport(error)
    }
}

/// Returns how long the response may be reused, per its HTTP cache headers
/// (RFC 9111, as a shared cache would); zero when it must not be stored.
fn freshness(url: &Url, accept: &'static str, response: &reqwest::Response) -> Duration {
    let Ok(request) = http::Request::get(url.as_str())
        .header(http::header::ACCEPT, accept)
        .body(())
    else {
        return Duration::ZERO;
    };
    let mut head = http::Response::new(());
    *head.status_mut() = response.status();
    *head.headers_mut() = response.headers().clone();
    let policy = CachePolicy::new(&request.into_parts().0, &head.into_parts().0);
    if !policy.is_storable() {
        return Duration::ZERO;
    }
    policy.time_to_live(SystemTime::now())
}

/// Reports whether `address` is a public unicast address: not loopback, private,
/// link-local, shared (CGNAT), documentation, benchmarking, multicast, reserved or
/// unspecified; IPv4-mapped and NAT64 IPv6 addresses are judged by their IPv4 part.
pub(crate) fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    !(address.is_private()
        || address.is_loopback()
        || address.is_link_local()
        || address.is_unspecified()
        || address.is_broadcast()
        || address.is_documentation()
        || address.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    if let Some(v4) = address.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = address.segments();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., high, low] = segments;
        return is_public_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    // Global unicast is 2000::/3, less documentation, Teredo and 6to4 (which tunnel to
    // addresses this check cannot see).
    (segments[0] & 0xe000) == 0x2000
        && !(segments[0] == 0x2001 && (segments[1] == 0x0db8 || segments[1] == 0))
        && segments[0] != 0x2002
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for public in [
            "93.184.215.14",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "ff02::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
    }

    #[tokio::test]
    async fn loopback_and_plain_http_are_refused_without_the_dev_opt_out() {
        let egress = Egress::new(EgressPolicy::default(), None).unwrap();
        for (url, expected) in [
            ("http://example.com/client", "scheme"),
            ("https://127.0.0.1/client", "address"),
            ("https://[::1]/client", "address"),
            ("https://localhost/client", "address"),
            ("https://169.254.169.254/latest/meta-data", "address"),
        ] {
            let error = egress
                .get(&Url::parse(url).unwrap(), "application/json", 1024)
                .await
                .unwrap_err();
            let kind = match error {
                FetchError::Scheme => "scheme",
                FetchError::Address => "address",
                _ => "other",
            };
            assert_eq!(kind, expected, "{url}: {error}");
        }
    }
}
