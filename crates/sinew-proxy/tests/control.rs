//! Control-plane mode against small in-process control planes (real tonic
//! servers implementing the generated `Control` trait): the Hello, full and
//! incremental updates ACKed and served, a bad update NACKed while the old
//! config keeps serving, health reports, failover to a second address, the
//! cache reused on restart, and the sidecar lock API.

use sinew_model::{parse_str, Proxy, Resource};
use sinew_proto::control_server::{Control as ControlService, ControlServer};
use sinew_proto::{
    control_message, proxy_message, AcquireLockRequest, ControlMessage, Document, EndpointState,
    Hello, LockLease, ProxyMessage, ReleaseLockReply, ReleaseLockRequest, RenewLockRequest,
    ResourceKey, Update,
};
use sinew_proxy::control::{Bootstrap, Control, ControlOptions};
use sinew_proxy::{api, Server};
use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

const TOKEN: &str = "s3cret";
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- the control plane

/// One proxy session as the control plane sees it.
struct Conn {
    authorization: Option<String>,
    hello: Hello,
    from_proxy: Streaming<ProxyMessage>,
    to_proxy: mpsc::Sender<Result<ControlMessage, Status>>,
    /// Health reports seen while waiting for verdicts.
    health: Vec<EndpointState>,
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Ack(u64),
    Nack(u64, String),
}

impl Conn {
    async fn send(&self, update: Update) {
        let msg = ControlMessage {
            message: Some(control_message::Message::Update(update)),
        };
        self.to_proxy
            .send(Ok(msg))
            .await
            .expect("proxy stream open");
    }

    async fn next(&mut self) -> proxy_message::Message {
        let msg = tokio::time::timeout(WAIT, self.from_proxy.message())
            .await
            .expect("a message from the proxy within 5s")
            .expect("stream ok")
            .expect("stream open");
        msg.message.expect("a message body")
    }

    /// The next ACK or NACK, keeping health reports on the way.
    async fn verdict(&mut self) -> Verdict {
        loop {
            match self.next().await {
                proxy_message::Message::Ack(a) => return Verdict::Ack(a.version),
                proxy_message::Message::Nack(n) => return Verdict::Nack(n.version, n.error),
                proxy_message::Message::Health(h) => self.health.extend(h.endpoints),
                // Golden-metric reports come every 2 s.
                proxy_message::Message::Stats(_) => {}
                proxy_message::Message::Hello(_) => panic!("a second Hello"),
            }
        }
    }

    /// Waits for a health report about `address`.
    async fn health_of(&mut self, address: SocketAddr) -> EndpointState {
        loop {
            let address = address.to_string();
            if let Some(s) = self.health.iter().find(|s| s.address == address) {
                return s.clone();
            }
            match self.next().await {
                proxy_message::Message::Health(h) => self.health.extend(h.endpoints),
                proxy_message::Message::Stats(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// The control plane's side: sessions handed to the test, and a lock table.
#[derive(Default)]
struct PlaneService {
    sessions: Mutex<Option<mpsc::UnboundedSender<Conn>>>,
    /// name → (owner, token)
    locks: Mutex<HashMap<String, (String, u64)>>,
    next_token: Mutex<u64>,
}

fn bearer<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn check_token<T>(request: &Request<T>) -> Result<(), Status> {
    if bearer(request).as_deref() == Some(&format!("Bearer {TOKEN}")) {
        Ok(())
    } else {
        Err(Status::unauthenticated("bad token"))
    }
}

#[tonic::async_trait]
impl ControlService for PlaneService {
    type StreamStream = ReceiverStream<Result<ControlMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let authorization = bearer(&request);
        let mut from_proxy = request.into_inner();
        let (to_proxy, rx) = mpsc::channel(16);
        let sessions = self.sessions.lock().unwrap().clone();
        tokio::spawn(async move {
            let Ok(Some(ProxyMessage {
                message: Some(proxy_message::Message::Hello(hello)),
            })) = from_proxy.message().await
            else {
                return;
            };
            if let Some(sessions) = sessions {
                let _ = sessions.send(Conn {
                    authorization,
                    hello,
                    from_proxy,
                    to_proxy,
                    health: Vec::new(),
                });
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn acquire_lock(
        &self,
        request: Request<AcquireLockRequest>,
    ) -> Result<Response<LockLease>, Status> {
        check_token(&request)?;
        let r = request.into_inner();
        let mut locks = self.locks.lock().unwrap();
        if let Some((owner, _)) = locks.get(&r.name) {
            if *owner != r.owner {
                return Err(Status::failed_precondition(format!("held by {owner}")));
            }
        }
        let mut next = self.next_token.lock().unwrap();
        *next += 1;
        locks.insert(r.name.clone(), (r.owner.clone(), *next));
        Ok(Response::new(LockLease {
            name: r.name,
            owner: r.owner,
            token: *next,
            ttl_ms: r.ttl_ms,
        }))
    }

    async fn renew_lock(
        &self,
        request: Request<RenewLockRequest>,
    ) -> Result<Response<LockLease>, Status> {
        check_token(&request)?;
        let r = request.into_inner();
        let locks = self.locks.lock().unwrap();
        match locks.get(&r.name) {
            Some((owner, token)) if *owner == r.owner && *token == r.token => {
                Ok(Response::new(LockLease {
                    name: r.name,
                    owner: r.owner,
                    token: r.token,
                    ttl_ms: if r.ttl_ms == 0 { 10_000 } else { r.ttl_ms },
                }))
            }
            Some(_) => Err(Status::failed_precondition("lease lost")),
            None => Err(Status::not_found("no such lock")),
        }
    }

    async fn release_lock(
        &self,
        request: Request<ReleaseLockRequest>,
    ) -> Result<Response<ReleaseLockReply>, Status> {
        check_token(&request)?;
        let r = request.into_inner();
        let mut locks = self.locks.lock().unwrap();
        let released = matches!(locks.get(&r.name), Some((o, t)) if *o == r.owner && *t == r.token);
        if released {
            locks.remove(&r.name);
        }
        Ok(Response::new(ReleaseLockReply { released }))
    }

    /// Certificates are the real control plane's business (its tests cover
    /// them); this stand-in refuses, and the proxy keeps asking, harmlessly.
    async fn issue_certificate(
        &self,
        request: Request<sinew_proto::CertificateRequest>,
    ) -> Result<Response<sinew_proto::CertificateReply>, Status> {
        check_token(&request)?;
        Err(Status::unimplemented("no CA in this test control plane"))
    }
}

/// The fake plane's TLS: a CA (its PEM is the proxies' trust bundle) and a
/// serving certificate for `spiffe://sinew.local/sinew/control`, as the real
/// control plane has.
fn plane_tls() -> &'static (Arc<rustls::ServerConfig>, String) {
    static TLS: std::sync::OnceLock<(Arc<rustls::ServerConfig>, String)> =
        std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::default();
        leaf.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://sinew.local/sinew/control".try_into().unwrap(),
        )];
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        (Arc::new(config), ca_cert.pem())
    })
}

/// A TLS connection to the fake plane, as tonic serves it.
struct TlsConn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Handshaken TLS connections from `listener`, for tonic.
fn tls_incoming(listener: TcpListener) -> ReceiverStream<std::io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = tokio_rustls::TlsAcceptor::from(plane_tls().0.clone());
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = tx.send(Ok(TlsConn(tls))).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A running control plane on a loopback port.
struct Plane {
    addr: SocketAddr,
    sessions: mpsc::UnboundedReceiver<Conn>,
    service: Arc<PlaneService>,
    stop: Option<oneshot::Sender<()>>,
}

impl Plane {
    async fn spawn() -> Plane {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, sessions) = mpsc::unbounded_channel();
        let service = Arc::new(PlaneService::default());
        *service.sessions.lock().unwrap() = Some(tx);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = ControlServer::from_arc(service.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(server)
                .serve_with_incoming_shutdown(tls_incoming(listener), async {
                    let _ = stopped.await;
                })
                .await;
        });
        Plane {
            addr,
            sessions,
            service,
            stop: Some(stop),
        }
    }

    async fn session(&mut self) -> Conn {
        tokio::time::timeout(WAIT, self.sessions.recv())
            .await
            .expect("a proxy session within 5s")
            .expect("plane running")
    }

    /// Stops accepting; streams already open end when their `Conn` is dropped.
    fn stop(&mut self) {
        *self.service.sessions.lock().unwrap() = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

// ---------------------------------------------------------------- documents

fn key(kind: &str, name: &str) -> ResourceKey {
    ResourceKey {
        kind: kind.into(),
        namespace: "default".into(),
        name: name.into(),
    }
}

fn service(name: &str, endpoint: SocketAddr) -> Document {
    let json = format!(
        r#"{{"apiVersion":"sinew.dev/v1alpha1","kind":"Service","metadata":{{"name":"{name}","namespace":"default"}},"spec":{{"endpoints":[{{"address":"{endpoint}"}}]}}}}"#
    );
    Document {
        key: Some(key("Service", name)),
        json: json.into_bytes().into(),
    }
}

fn checked_service(name: &str, endpoint: SocketAddr) -> Document {
    let json = format!(
        r#"{{"kind":"Service","metadata":{{"name":"{name}"}},"spec":{{"endpoints":[{{"address":"{endpoint}"}}],"health_check":{{"tcp":{{}},"interval":"50ms","timeout":"50ms","unhealthy_threshold":1}}}}}}"#
    );
    Document {
        key: Some(key("Service", name)),
        json: json.into_bytes().into(),
    }
}

fn route(name: &str, host: &str, backend: &str) -> Document {
    let json = format!(
        r#"{{"kind":"Route","metadata":{{"name":"{name}"}},"spec":{{"hosts":["{host}"],"rules":[{{"backends":[{{"service":"{backend}"}}]}}]}}}}"#
    );
    Document {
        key: Some(key("Route", name)),
        json: json.into_bytes().into(),
    }
}

fn full(version: u64, upserts: Vec<Document>) -> Update {
    Update {
        version,
        full: true,
        upserts,
        removals: vec![],
        more: false,
    }
}

fn incremental(version: u64, upserts: Vec<Document>, removals: Vec<ResourceKey>) -> Update {
    Update {
        version,
        full: false,
        upserts,
        removals,
        more: false,
    }
}

// ---------------------------------------------------------------- the proxy

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sinew-control-test-{}-{name}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A sidecar in control mode, in this process.
struct Sidecar {
    server: Server,
    control: Arc<Control>,
    outbound: SocketAddr,
    api: SocketAddr,
}

impl Sidecar {
    /// Starts a proxy whose `spec.control` is `control`, caching in `cache`.
    async fn start(control: &str, cache: &Path) -> Sidecar {
        let outbound = free_port();
        let text = format!(
            "kind: Proxy\nmetadata: {{name: web-1, namespace: shop, labels: {{zone: a}}}}\n\
             spec: {{service: web, control: '{control}', listen: {{outbound: '{outbound}'}}}}\n"
        );
        let proxy: Proxy = match parse_str("proxy.yaml", &text).unwrap().pop() {
            Some(Resource::Proxy(p)) => p,
            other => panic!("not a proxy: {other:?}"),
        };
        let mut options = ControlOptions::for_proxy(&proxy, Path::new("proxy.yaml")).unwrap();
        options.token = Some(TOKEN.into());
        options.trust_bundle = Some(plane_tls().1.clone());
        options.cache = cache.to_owned();
        options.advertise = "10.1.2.3:4143".into();
        let bootstrap = Bootstrap::load(proxy, cache);
        let server = Server::start(bootstrap.config()).unwrap();
        let control = Control::spawn(server.shared().clone(), bootstrap, options).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = listener.local_addr().unwrap();
        tokio::spawn(api::serve_with_control(
            listener,
            server.shared().clone(),
            Some(control.clone()),
        ));
        Sidecar {
            server,
            control,
            outbound,
            api,
        }
    }

    /// The control-plane version being served.
    fn version(&self) -> u64 {
        self.server.shared().runtime().config.snapshot.version()
    }

    fn stop(self) {
        self.server.shared().start_drain();
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, host: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("a response within 5s")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// A backend answering every request with its name.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}",
                            name.len()
                        );
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "not true within 5s: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------- scenarios

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_applied_and_acked_and_a_bad_one_is_nacked() {
    let dir = scratch_dir("updates");
    let cache = dir.join("cache.json");
    let mut plane = Plane::spawn().await;
    let sidecar = Sidecar::start(&plane.addr.to_string(), &cache).await;
    let mut conn = plane.session().await;

    // Who the proxy is, on an authenticated stream.
    assert_eq!(conn.authorization.as_deref(), Some("Bearer s3cret"));
    let hello = &conn.hello;
    assert_eq!(
        (
            hello.proxy.as_str(),
            hello.namespace.as_str(),
            hello.service.as_str()
        ),
        ("web-1", "shop", "web")
    );
    assert_eq!(hello.address, "10.1.2.3:4143");
    assert_eq!(hello.labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!((hello.weight, hello.applied_version), (1, 0));

    // No config yet: not ready.
    let (status, body) = http(sidecar.api, "GET", "/ready", "api", "").await;
    assert_eq!(
        (status, body.as_str()),
        (503, "waiting for the control plane\n")
    );

    // A full update is served and acknowledged.
    let reviews = backend("reviews").await;
    let dead = free_port();
    conn.send(full(
        10,
        vec![service("reviews", reviews), checked_service("flaky", dead)],
    ))
    .await;
    assert_eq!(conn.verdict().await, Verdict::Ack(10));
    assert_eq!(sidecar.version(), 10);
    assert_eq!(http(sidecar.api, "GET", "/ready", "api", "").await.0, 200);
    assert_eq!(
        http(sidecar.outbound, "GET", "/", "reviews", "").await,
        (200, "reviews".into())
    );

    // The active health check's verdict on the dead endpoint is reported.
    let state = conn.health_of(dead).await;
    assert_eq!(
        (
            state.namespace.as_str(),
            state.service.as_str(),
            state.healthy
        ),
        ("default", "flaky", false)
    );

    // Incremental: an upsert adds a route, a removal drops a service.
    conn.send(incremental(
        11,
        vec![route("shop", "shop.example", "reviews")],
        vec![key("Service", "flaky")],
    ))
    .await;
    assert_eq!(conn.verdict().await, Verdict::Ack(11));
    let snapshot = sidecar.server.shared().runtime().config.snapshot.clone();
    assert_eq!(snapshot.version(), 11);
    assert!(snapshot.service_in("default", "flaky").is_none());
    assert_eq!(
        http(sidecar.outbound, "GET", "/", "shop.example", "").await,
        (200, "reviews".into())
    );

    // A bad update is refused with its error; the old config keeps serving.
    conn.send(incremental(
        12,
        vec![route("bad", "bad.example", "missing")],
        vec![],
    ))
    .await;
    match conn.verdict().await {
        Verdict::Nack(12, error) => assert!(
            error.contains("unknown service `missing`"),
            "NACK error: {error}"
        ),
        other => panic!("expected a NACK of 12, got {other:?}"),
    }
    assert_eq!(sidecar.version(), 11);
    assert_eq!(
        http(sidecar.outbound, "GET", "/", "shop.example", "").await,
        (200, "reviews".into())
    );

    // The next incremental builds on what was sent, fixing the bad route.
    conn.send(incremental(13, vec![service("missing", reviews)], vec![]))
        .await;
    assert_eq!(conn.verdict().await, Verdict::Ack(13));
    assert_eq!(
        http(sidecar.outbound, "GET", "/", "bad.example", "").await,
        (200, "reviews".into())
    );

    // A version in parts is applied, and answered, once: after its last part.
    let mut first = incremental(
        14,
        vec![route("parts", "parts.example", "reviews2")],
        vec![],
    );
    first.more = true;
    conn.send(first).await;
    conn.send(incremental(14, vec![service("reviews2", reviews)], vec![]))
        .await;
    assert_eq!(conn.verdict().await, Verdict::Ack(14));
    assert_eq!(sidecar.version(), 14);
    assert_eq!(
        http(sidecar.outbound, "GET", "/", "parts.example", "").await,
        (200, "reviews".into())
    );

    // The cache holds the applied set.
    let cached: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    assert_eq!(cached["version"], 14);
    assert_eq!(cached["documents"].as_array().map(Vec::len), Some(6));

    sidecar.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_second_address_and_restarts_from_the_cache() {
    let dir = scratch_dir("failover");
    let cache = dir.join("cache.json");
    let mut first = Plane::spawn().await;
    let mut second = Plane::spawn().await;
    let addresses = format!("http://{},{}", first.addr, second.addr);
    let sidecar = Sidecar::start(&addresses, &cache).await;
    let reviews = backend("reviews").await;

    let mut conn = first.session().await;
    conn.send(full(5, vec![service("reviews", reviews)])).await;
    assert_eq!(conn.verdict().await, Verdict::Ack(5));
    eventually("connected", || sidecar.control.is_connected()).await;

    // The first control plane goes away: the proxy is on the second soon after.
    let lost = Instant::now();
    first.stop();
    drop(conn);
    let mut conn = second.session().await;
    let elapsed = lost.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "failover took {elapsed:?}"
    );
    assert_eq!(conn.hello.applied_version, 5);
    conn.send(full(
        6,
        vec![
            service("reviews", reviews),
            route("r", "r.example", "reviews"),
        ],
    ))
    .await;
    assert_eq!(conn.verdict().await, Verdict::Ack(6));
    sidecar.stop();
    drop(conn);

    // A restart serves the cached config at once, before any control plane answers.
    let unreachable = free_port();
    let restarted = Sidecar::start(&unreachable.to_string(), &cache).await;
    assert!(restarted.control.is_ready());
    assert_eq!(restarted.version(), 6);
    assert_eq!(http(restarted.api, "GET", "/ready", "api", "").await.0, 200);
    assert_eq!(
        http(restarted.outbound, "GET", "/", "r.example", "").await,
        (200, "reviews".into())
    );
    restarted.stop();

    // And tells the control plane which version it serves.
    let again = Sidecar::start(&second.addr.to_string(), &cache).await;
    let conn = second.session().await;
    assert_eq!(conn.hello.applied_version, 6);
    again.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_api_forwards_to_the_control_plane() {
    let dir = scratch_dir("locks");
    let mut plane = Plane::spawn().await;
    let sidecar = Sidecar::start(&plane.addr.to_string(), &dir.join("cache.json")).await;
    let conn = plane.session().await;
    eventually("connected", || sidecar.control.is_connected()).await;
    let api = sidecar.api;

    let (status, body) = http(
        api,
        "POST",
        "/v1/locks/jobs",
        "api",
        r#"{"owner":"a","ttl":"10s"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let lease: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        lease,
        serde_json::json!({"name": "jobs", "owner": "a", "token": 1, "ttl_ms": 10_000})
    );

    let (status, body) = http(
        api,
        "POST",
        "/v1/locks/jobs",
        "api",
        r#"{"owner":"b","ttl":"10s"}"#,
    )
    .await;
    assert_eq!((status, body.as_str()), (409, r#"{"error":"held by a"}"#));

    let (status, body) = http(
        api,
        "PUT",
        "/v1/locks/jobs",
        "api",
        r#"{"owner":"a","token":1,"ttl":"20s"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""ttl_ms":20000"#), "{body}");
    assert_eq!(
        http(
            api,
            "PUT",
            "/v1/locks/other",
            "api",
            r#"{"owner":"a","token":1}"#
        )
        .await
        .0,
        404
    );

    let (status, body) = http(api, "DELETE", "/v1/locks/jobs?owner=a&token=1", "api", "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"released":true}"#));
    let (status, body) = http(api, "DELETE", "/v1/locks/jobs?owner=a&token=1", "api", "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"released":false}"#));

    let (status, body) = http(api, "POST", "/v1/locks/jobs", "api", "{owner:").await;
    assert_eq!(status, 400);
    assert!(body.contains("the body is not valid JSON"), "{body}");
    assert_eq!(http(api, "GET", "/v1/locks/jobs", "api", "").await.0, 405);

    // Without a session (the control plane is gone), lock calls are unavailable.
    plane.stop();
    drop(conn);
    eventually("disconnected", || !sidecar.control.is_connected()).await;
    let (status, _) = http(
        api,
        "POST",
        "/v1/locks/jobs",
        "api",
        r#"{"owner":"a","ttl":"1s"}"#,
    )
    .await;
    assert_eq!(status, 503);
    sidecar.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_proxy_has_no_locks() {
    let outbound = free_port();
    let text = format!("kind: Proxy\nmetadata: {{name: s}}\nspec: {{service: s, listen: {{outbound: '{outbound}'}}}}\n");
    let config = sinew_model::ProxyConfig::parse("s.yaml", &text, 1).unwrap();
    let server = Server::start(config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api::serve(listener, server.shared().clone()));
    let (status, body) = http(
        addr,
        "POST",
        "/v1/locks/jobs",
        "api",
        r#"{"owner":"a","ttl":"1s"}"#,
    )
    .await;
    assert_eq!(status, 503);
    assert!(body.contains("static mode"), "{body}");
    assert_eq!(http(addr, "GET", "/ready", "api", "").await.0, 200);
    server.shared().start_drain();
}
