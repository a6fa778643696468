//! `Proxy.spec.control`: one or more control-plane addresses, separated by
//! commas, each `host:port` or `http://host:port`.

/// The control-plane URIs in `spec`, in order, each as `http://host:port`.
///
/// ```
/// use sinew_proxy::control::parse_addresses;
/// assert_eq!(
///     parse_addresses("10.0.0.1:7701, http://cp-2:7701").unwrap(),
///     ["http://10.0.0.1:7701", "http://cp-2:7701"],
/// );
/// assert!(parse_addresses("cp-1").is_err());
/// ```
///
/// # Errors
/// No address at all, an address without a port, with a path, or with a
/// scheme other than `http` (this build speaks plaintext HTTP/2 only).
pub fn parse_addresses(spec: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for raw in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let rest = match raw.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "control address `{raw}`: scheme `{scheme}` is not supported (use host:port or http://host:port)"
                ))
            }
            None => raw,
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let parsed: http::uri::Authority = authority
            .parse()
            .map_err(|e| format!("control address `{raw}`: {e}"))?;
        if parsed.port_u16().is_none() || parsed.as_str().contains('@') {
            return Err(format!(
                "control address `{raw}`: expected host:port (e.g. 127.0.0.1:7701)"
            ));
        }
        out.push(format!("http://{parsed}"));
    }
    if out.is_empty() {
        return Err("spec.control names no address".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_host_port_and_http_uris_in_order() {
        assert_eq!(
            parse_addresses("127.0.0.1:7701,http://[::1]:7702/ , cp.example:80"),
            Ok(vec![
                "http://127.0.0.1:7701".to_owned(),
                "http://[::1]:7702".to_owned(),
                "http://cp.example:80".to_owned(),
            ])
        );
    }

    #[test]
    fn refuses_what_it_cannot_dial() {
        for bad in [
            "",
            " , ",
            "cp",
            "https://cp:7701",
            "http://cp:7701/path",
            "user@cp:1",
        ] {
            assert!(parse_addresses(bad).is_err(), "{bad:?} accepted");
        }
    }
}
