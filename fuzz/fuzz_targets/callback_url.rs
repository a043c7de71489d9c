//! The callback URL check, `CallbackPolicy::new(hosts, allow_http).check(url)`,
//! with the allowed hosts and the URL both from the input (`[allow_http
//! flag, hosts '\n', URL]`). Properties: no panic; an accepted URL is https
//! (or http only when allowed), carries no credentials or fragment, its host
//! is one the list allows (`host`, or a subdomain for `*.domain`), and it is
//! at most the maximum length, as given and as it will be sent.
#![no_main]

use gateway::webhooks::CallbackPolicy;
use libfuzzer_sys::fuzz_target;
use storefront_fuzz::{CallbackInput, MAX_URL_LEN};

fuzz_target!(|data: &[u8]| {
    let Some(input) = CallbackInput::parse(data) else {
        return;
    };
    let policy = CallbackPolicy::new(&input.allowed_hosts, input.allow_http);
    let Ok(url) = policy.check(&input.url) else {
        return;
    };
    assert!(
        input.url.len() <= MAX_URL_LEN,
        "{} bytes accepted",
        input.url.len()
    );
    assert!(
        url.as_str().len() <= MAX_URL_LEN,
        "{} bytes given, {} to be sent: {url}",
        input.url.len(),
        url.as_str().len()
    );
    match url.scheme() {
        "https" => {}
        "http" => assert!(input.allow_http, "http accepted: {url}"),
        other => panic!("scheme {other} accepted: {url}"),
    }
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "{url}"
    );
    assert!(url.fragment().is_none(), "{url}");
    let host = url
        .host_str()
        .expect("an accepted URL has a host")
        .to_ascii_lowercase();
    let allowed = input
        .allowed_hosts
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .any(|pattern| match pattern.strip_prefix("*.") {
            Some(domain) => {
                host.len() > domain.len() + 1
                    && host.ends_with(domain)
                    && host[..host.len() - domain.len()].ends_with('.')
            }
            None => pattern == host,
        });
    assert!(allowed, "host {host} is not in {:?}", input.allowed_hosts);
});
