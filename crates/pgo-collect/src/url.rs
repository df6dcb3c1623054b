//! Fetching a profile from a `/debug/pprof/profile` endpoint (Go's net/http/pprof, pgo-agent).

use std::time::Duration;

use pgo_profile::Profile;

/// The `seconds` query parameter of a profile URL (Go's default is 30).
fn profile_seconds(url: &str) -> u64 {
    url.split_once('?')
        .map(|(_, query)| query)
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("seconds=").and_then(|v| v.parse().ok()))
        .unwrap_or(30)
}

/// Downloads and validates the profile at `url`. The endpoint profiles for `seconds=N` before it
/// answers, so the timeout is N plus `grace`. Errors are one line, without the URL (the caller
/// names it).
pub fn fetch_profile(url: &str, grace: Duration) -> Result<Profile, String> {
    if !url.starts_with("http://") {
        return Err(
            "only http:// URLs are supported (profiling endpoints listen on loopback)".into(),
        );
    }
    let timeout = Duration::from_secs(profile_seconds(url)) + grace;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Timeout(_) => format!("no answer within {}s", timeout.as_secs()),
        ureq::Error::Io(io) => format!("cannot connect: {io}"),
        other => format!("request failed: {other}"),
    })?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .map_err(|e| format!("reading the answer failed: {e}"))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let first = text.lines().next().unwrap_or("").trim();
        return Err(format!("answered HTTP {}: {first}", status.as_u16()));
    }
    pgo_profile::decode_profile(body)
        .map_err(|e| format!("answered something that is not a profile: {e}"))
}
