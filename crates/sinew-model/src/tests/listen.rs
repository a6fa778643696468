//! `Proxy.spec.listen.api`: loopback only unless `api_allow_non_loopback: true` explicitly allows it.

use super::{parse_err, parse_ok};
use crate::{parse_str, ErrorKind, Listen, Resource};

fn proxy(listen: &str) -> String {
    format!("kind: Proxy\nmetadata: {{name: p}}\nspec:\n  service: a\n  listen:\n{listen}")
}

fn listen_of(text: &str) -> Listen {
    match parse_ok(text).into_iter().next() {
        Some(Resource::Proxy(p)) => p.spec.listen,
        other => panic!("not a proxy: {other:?}"),
    }
}

#[test]
fn a_non_loopback_api_is_refused_at_its_value() {
    let errors = parse_str("p.yaml", &proxy("    api: 0.0.0.0:4191\n")).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    let e = &errors.as_slice()[0];
    assert_eq!(
        (e.kind, e.line, e.column, e.field.as_str()),
        (ErrorKind::InvalidValue, 6, 10, "spec.listen.api")
    );
    assert!(
        e.to_string()
            .starts_with("p.yaml:6:10: spec.listen.api: 0.0.0.0:4191 is not a loopback address"),
        "{e}"
    );
    for api in [
        "\"[::]:4191\"",
        "10.1.2.3:4191",
        "\"[::ffff:10.1.2.3]:4191\"",
    ] {
        let errors = parse_err(&proxy(&format!(
            "    outbound: 127.0.0.1:4140\n    api: {api}\n"
        )));
        let got: Vec<_> = errors
            .iter()
            .map(|e| (e.line, e.column, e.field.as_str()))
            .collect();
        assert_eq!(got, [(7, 10, "spec.listen.api")], "{api}");
    }
}

#[test]
fn loopback_addresses_are_accepted() {
    assert_eq!(listen_of(&proxy("")).api, Listen::API);
    for api in [
        "127.0.0.2:4191",
        "\"[::1]:4191\"",
        "\"[::ffff:127.0.0.1]:4191\"",
    ] {
        let listen = listen_of(&proxy(&format!("    api: {api}\n")));
        assert!(!listen.api_allow_non_loopback);
    }
}

#[test]
fn api_allow_non_loopback_explicitly_allows_it() {
    let text = proxy("    api: 0.0.0.0:4191\n    api_allow_non_loopback: true\n");
    let listen = listen_of(&text);
    assert!(listen.api_allow_non_loopback);
    assert_eq!(listen.api.to_string(), "0.0.0.0:4191");
    let json = serde_json::to_value(&listen).unwrap_or_default();
    assert_eq!(json["api_allow_non_loopback"], true);
    let off = serde_json::to_value(Listen::default()).unwrap_or_default();
    assert!(off.get("api_allow_non_loopback").is_none(), "{off}");

    let denied = parse_err(&proxy(
        "    api: 0.0.0.0:4191\n    api_allow_non_loopback: false\n",
    ));
    assert_eq!(denied[0].field, "spec.listen.api");
    let wrong = parse_err(&proxy("    api_allow_non_loopback: yes\n"));
    assert_eq!(
        (
            wrong[0].kind,
            wrong[0].line,
            wrong[0].column,
            wrong[0].field.as_str()
        ),
        (
            ErrorKind::InvalidType,
            6,
            29,
            "spec.listen.api_allow_non_loopback"
        )
    );
}
