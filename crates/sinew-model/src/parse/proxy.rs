//! Decoding and checking `Proxy.spec`.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::check::{name, positive};
use super::node::Node;
use super::reader::{boolean, nonempty, one_of, socket_addr, Cx, D};
use crate::{
    AccessLog, AccessLogFormat, AccessLogPath, Duration, IngressCertificate, IngressListen,
    IngressTls, Listen, ProxySpec, ProxyTls, TcpListen,
};

/// `Proxy.spec`.
pub(crate) fn proxy_spec(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<ProxySpec> {
    let mut m = cx.map(node, path)?;
    let service = m.req(cx, "service", name);
    let app = m.opt(cx, "app", socket_addr);
    let listen = m.or(cx, "listen", Listen::default(), listen);
    let control = m.opt(cx, "control", |cx, n, p| {
        let s = nonempty(cx, n, p)?;
        if s.contains(char::is_whitespace) {
            return cx.invalid(
                n,
                p,
                "must be an address like 127.0.0.1:7701, without spaces",
            );
        }
        Some(s)
    });
    let workers = m.or(cx, "workers", 1, positive);
    let access_log = m.opt(cx, "access_log", access_log);
    let drain_timeout = m.or(
        cx,
        "drain_timeout",
        Duration::from_secs(10),
        super::reader::duration,
    );
    let idle_timeout = m.or(
        cx,
        "idle_timeout",
        Duration::from_secs(60),
        super::check::positive_duration,
    );
    let request_header_timeout = m.or(
        cx,
        "request_header_timeout",
        Duration::from_secs(10),
        super::check::positive_duration,
    );
    let stream_idle_timeout = m.or(
        cx,
        "stream_idle_timeout",
        Duration::from_secs(300),
        super::check::positive_duration,
    );
    let tls = m.opt(cx, "tls", tls);
    m.finish(cx);
    Some(ProxySpec {
        service: service?,
        app: app?,
        listen: listen?,
        control: control?,
        workers: workers?,
        access_log: access_log?,
        drain_timeout: drain_timeout?,
        idle_timeout: idle_timeout?,
        request_header_timeout: request_header_timeout?,
        stream_idle_timeout: stream_idle_timeout?,
        tls: tls?,
    })
}

/// `ingress: {address, tls: {certificates: [{hosts, cert, key}]}}`.
fn ingress(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<IngressListen> {
    let mut m = cx.map(node, path)?;
    let address = m.req(cx, "address", socket_addr);
    let tls = m.opt(cx, "tls", |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let certificates = m.req(cx, "certificates", |cx, n, p| {
            let list = cx.list(n, p, |cx, n, p| {
                let mut m = cx.map(n, p)?;
                let hosts = m.req(cx, "hosts", |cx, n, p| {
                    let hosts = cx.list(n, p, super::check::host)?;
                    if hosts.is_empty() {
                        return cx.invalid(n, p, "needs at least one host");
                    }
                    Some(hosts)
                });
                let cert = m.req(cx, "cert", nonempty);
                let key = m.req(cx, "key", nonempty);
                m.finish(cx);
                Some(IngressCertificate {
                    hosts: hosts?,
                    cert: PathBuf::from(cert?),
                    key: PathBuf::from(key?),
                })
            })?;
            if list.is_empty() {
                return cx.invalid(n, p, "needs at least one certificate");
            }
            Some(list)
        });
        m.finish(cx);
        Some(IngressTls {
            certificates: certificates?,
        })
    });
    m.finish(cx);
    Some(IngressListen {
        address: address?,
        tls: tls?,
    })
}

/// `tls`: three PEM file paths.
fn tls(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<ProxyTls> {
    let mut m = cx.map(node, path)?;
    let cert = m.req(cx, "cert", nonempty);
    let key = m.req(cx, "key", nonempty);
    let trust_bundle = m.req(cx, "trust_bundle", nonempty);
    m.finish(cx);
    Some(ProxyTls {
        cert: PathBuf::from(cert?),
        key: PathBuf::from(key?),
        trust_bundle: PathBuf::from(trust_bundle?),
    })
}

fn listen(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<Listen> {
    let mut m = cx.map(node, path)?;
    let outbound = m.or(cx, "outbound", Listen::OUTBOUND, socket_addr);
    let inbound = m.or(cx, "inbound", Listen::INBOUND, socket_addr);
    let api = m.or(cx, "api", Listen::API, socket_addr);
    let allow_non_loopback = m.or(cx, "api_allow_non_loopback", false, boolean);
    let tcp = m.or(cx, "tcp", Vec::new(), |cx, n, p| {
        cx.list(n, p, |cx, n, p| {
            let mut m = cx.map(n, p)?;
            let service = m.req(cx, "service", name);
            let address = m.req(cx, "address", socket_addr);
            m.finish(cx);
            Some(TcpListen {
                service: service?,
                address: address?,
            })
        })
    });
    let ingress = m.opt(cx, "ingress", ingress);
    let tcp_node = m.node_of("tcp");
    let fields = ["outbound", "inbound", "api"].map(|k| (m.path_of(k), m.node_of(k)));
    m.finish(cx);
    let l = Listen {
        outbound: outbound?,
        inbound: inbound?,
        api: api?,
        api_allow_non_loopback: allow_non_loopback?,
        tcp: tcp?,
        ingress: ingress?,
    };
    let mut ok = true;
    if !l.api_allow_non_loopback && !l.api.ip().to_canonical().is_loopback() {
        let (api_path, api_node) = &fields[2];
        let msg = format!(
            "{} is not a loopback address; the sidecar API is loopback-only \
             unless `api_allow_non_loopback: true` explicitly allows it",
            l.api
        );
        cx.invalid::<()>(api_node, api_path, msg);
        ok = false;
    }
    // Every socket must be distinct: the three fixed ones, then each tcp listener.
    let mut taken: Vec<(SocketAddr, String)> = Vec::new();
    let fixed = [l.outbound, l.inbound, l.api];
    let tcp_paths = (0..l.tcp.len()).map(|i| format!("{path}.tcp[{i}].address"));
    let all = fixed
        .iter()
        .copied()
        .zip(fields.iter().map(|(p, _)| p.clone()))
        .chain(l.tcp.iter().map(|t| t.address).zip(tcp_paths))
        .chain(
            l.ingress
                .iter()
                .map(|i| (i.address, format!("{path}.ingress.address"))),
        );
    for (i, (addr, field)) in all.enumerate() {
        if let Some((_, other)) = taken.iter().find(|(a, _)| *a == addr) {
            let at = fields.get(i).map_or(tcp_node, |(_, n)| n);
            cx.invalid::<()>(at, &field, format!("{addr} is already used by `{other}`"));
            ok = false;
        }
        taken.push((addr, field));
    }
    for (i, t) in l.tcp.iter().enumerate() {
        if l.tcp[..i].iter().any(|o| o.service == t.service) {
            let msg = format!("service `{}` already has a tcp listener", t.service);
            cx.invalid::<()>(tcp_node, &format!("{path}.tcp[{i}].service"), msg);
            ok = false;
        }
    }
    ok.then_some(l)
}

fn access_log(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<AccessLog> {
    let mut m = cx.map(node, path)?;
    let target = m.req(cx, "path", nonempty);
    let format = m.or(cx, "format", AccessLogFormat::Json, |cx, n, p| {
        one_of(cx, n, p, &[("json", AccessLogFormat::Json)])
    });
    m.finish(cx);
    let path = match target?.as_str() {
        "stdout" | "-" => AccessLogPath::Stdout,
        file => AccessLogPath::File(PathBuf::from(file)),
    };
    Some(AccessLog {
        path,
        format: format?,
    })
}
