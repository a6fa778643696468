//! A small client of the control plane's REST API (`docs/reference/api.md`):
//! where the server is, the admin token, and one JSON call at a time.
//!
//! Shared by `apply`, `get`, `delete` and `status`. A `401` and a server that
//! cannot be reached are turned into one clear sentence here; every other
//! status is the calling command's to judge.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Where the control plane listens unless told otherwise.
const DEFAULT_SERVER: &str = "http://127.0.0.1:7700";
/// How long one call may take, connect to last body byte.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

const ENV_SERVER: &str = "SINEW_SERVER";
const ENV_TOKEN: &str = "SINEW_TOKEN";
const ENV_TOKEN_FILE: &str = "SINEW_TOKEN_FILE";

/// How to reach the control plane; flattened into each client command.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ServerArgs {
    /// The control plane's URL [env: SINEW_SERVER] [default: http://127.0.0.1:7700]
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// File holding the admin token (`sinew control` writes it to DIR/admin.token);
    /// else env SINEW_TOKEN, else the file named by env SINEW_TOKEN_FILE
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

impl ServerArgs {
    /// A client for the server and token these flags (and the environment) name.
    pub(crate) fn client(&self) -> Result<Client, String> {
        let settings = self.settings(|name| std::env::var(name).ok())?;
        Ok(Client::new(settings))
    }

    /// Resolves the flags against `env`: flag first, then environment, then default.
    fn settings(&self, env: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let server = match &self.server {
            Some(url) => url.clone(),
            None => env(ENV_SERVER)
                .filter(|url| !url.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_SERVER.to_owned()),
        };
        let base = parse_server(&server)?;
        let (token, source) = if let Some(file) = &self.token_file {
            (
                Some(read_token_file(file)?),
                TokenSource::File(file.clone()),
            )
        } else if let Some(token) = env(ENV_TOKEN).filter(|t| !t.trim().is_empty()) {
            (Some(token.trim().to_owned()), TokenSource::Env)
        } else if let Some(file) = env(ENV_TOKEN_FILE).filter(|f| !f.is_empty()) {
            let file = PathBuf::from(file);
            (Some(read_token_file(&file)?), TokenSource::File(file))
        } else {
            (None, TokenSource::None)
        };
        let authorization = token
            .map(|token| {
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    format!("the token from {source} holds characters a header cannot carry")
                })
            })
            .transpose()?;
        Ok(Settings {
            base,
            authorization,
            source,
        })
    }
}

/// The resolved server and credentials.
#[derive(Debug)]
struct Settings {
    /// `http://host:port` plus any path prefix, without a trailing `/`.
    base: String,
    authorization: Option<HeaderValue>,
    source: TokenSource,
}

/// Where the token came from, named when the server refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenSource {
    None,
    File(PathBuf),
    Env,
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::None => f.write_str("nowhere"),
            TokenSource::File(path) => write!(f, "{}", path.display()),
            TokenSource::Env => f.write_str(ENV_TOKEN),
        }
    }
}

/// `URL` → `http://host:port[/prefix]`; a bare `host:port` is taken as `http://`.
fn parse_server(url: &str) -> Result<String, String> {
    let url = url.trim();
    let full = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let uri: Uri = full
        .parse()
        .map_err(|_| format!("--server {url:?} is not a URL (e.g. {DEFAULT_SERVER})"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "--server {url:?}: the `{other}` scheme is not supported, only http://"
            ))
        }
        None => {
            return Err(format!(
                "--server {url:?} is not a URL (e.g. {DEFAULT_SERVER})"
            ))
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("--server {url:?} names no host"));
    };
    if uri.query().is_some() {
        return Err(format!("--server {url:?} must not have a query"));
    }
    let prefix = uri.path().trim_end_matches('/');
    Ok(format!("http://{authority}{prefix}"))
}

fn read_token_file(path: &PathBuf) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(token.to_owned())
}

/// One answer of the control plane: its status and JSON body (`Null` when empty).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: serde_json::Value,
}

impl Reply {
    /// The server's `{"error": …}` sentence, or the status when there is none.
    pub(crate) fn error(&self) -> String {
        match self.body.get("error").and_then(|e| e.as_str()) {
            Some(error) => error.to_owned(),
            None => format!("the control plane answered {}", self.status),
        }
    }

    /// An answer the command does not expect, as one sentence.
    pub(crate) fn unexpected(&self) -> String {
        match self.body.get("error").and_then(|e| e.as_str()) {
            Some(error) => format!(
                "the control plane answered {}: {error}",
                self.status.as_u16()
            ),
            None => format!("the control plane answered {}", self.status),
        }
    }
}

/// A REST client of one control plane.
#[derive(Debug)]
pub(crate) struct Client {
    settings: Settings,
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

impl Client {
    fn new(settings: Settings) -> Self {
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build(HttpConnector::new());
        Self { settings, http }
    }

    /// The server's base URL, for messages.
    pub(crate) fn server(&self) -> &str {
        &self.settings.base
    }

    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> Result<Reply, String> {
        self.call(Method::GET, path, &[], Bytes::new()).await
    }

    /// `DELETE path`.
    pub(crate) async fn delete(&self, path: &str) -> Result<Reply, String> {
        self.call(Method::DELETE, path, &[], Bytes::new()).await
    }

    /// `POST path` with `body` and extra `headers`.
    pub(crate) async fn post(
        &self,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Reply, String> {
        self.call(Method::POST, path, headers, body).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Reply, String> {
        let server = self.server();
        let uri = format!("{server}{path}");
        let mut request = Request::builder()
            .method(method)
            .uri(&uri)
            .header(http::header::ACCEPT, "application/json");
        if let Some(authorization) = &self.settings.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/yaml");
        }
        for (name, value) in headers {
            request = request.header(name, value.clone());
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("cannot build a request for {uri}: {e}"))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    format!(
                        "cannot reach the control plane at {server}: {}",
                        root_cause(&e)
                    )
                } else {
                    format!(
                        "the call to the control plane at {server} failed: {}",
                        root_cause(&e)
                    )
                }
            })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("the control plane at {server} broke off its answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                format!(
                    "the control plane at {server} did not answer within {}s",
                    CALL_TIMEOUT.as_secs()
                )
            })??;
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                // Not JSON (a proxy in between, another server): keep its text as the error.
                let text = String::from_utf8_lossy(&bytes).trim().to_owned();
                serde_json::json!({ "error": text })
            })
        };
        if status == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized());
        }
        Ok(Reply { status, body })
    }

    /// Why a `401` happened and how to pass the token, as one sentence.
    fn unauthorized(&self) -> String {
        let how = format!(
            "pass the admin token (DIR/admin.token of `sinew control`) with --token-file FILE, \
             or set {ENV_TOKEN} or {ENV_TOKEN_FILE}"
        );
        match &self.settings.source {
            TokenSource::None => format!(
                "the control plane at {} needs the admin token: {how}",
                self.server()
            ),
            source => format!(
                "the control plane at {} refused the token from {source}: {how}",
                self.server()
            ),
        }
    }
}

/// The innermost error's text (`Connection refused (os error 111)`), which
/// says more than hyper's outer "client error (Connect)".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// A path segment with everything but unreserved characters percent-encoded.
pub(crate) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Runs a command's calls on a small single-threaded runtime.
pub(crate) fn block_on<T>(future: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn args(server: Option<&str>, token_file: Option<PathBuf>) -> ServerArgs {
        ServerArgs {
            server: server.map(str::to_owned),
            token_file,
        }
    }

    #[test]
    fn server_comes_from_the_flag_then_the_environment_then_the_default() {
        let s = args(None, None).settings(env(&[])).unwrap();
        assert_eq!(s.base, "http://127.0.0.1:7700");
        let s = args(None, None)
            .settings(env(&[(ENV_SERVER, "http://10.0.0.1:80/")]))
            .unwrap();
        assert_eq!(s.base, "http://10.0.0.1:80");
        let s = args(Some("cp:7701/prefix/"), None)
            .settings(env(&[(ENV_SERVER, "http://10.0.0.1:80")]))
            .unwrap();
        assert_eq!(s.base, "http://cp:7701/prefix");
    }

    #[test]
    fn unsupported_servers_are_refused_with_a_reason() {
        let e = parse_server("https://cp:7700").unwrap_err();
        assert!(e.contains("`https` scheme is not supported"), "{e}");
        let e = parse_server("http://cp:7700/?x=1").unwrap_err();
        assert!(e.contains("query"), "{e}");
        let e = parse_server("http://").unwrap_err();
        assert!(e.contains("not a URL") || e.contains("no host"), "{e}");
    }

    #[test]
    fn token_comes_from_the_flag_then_sinew_token_then_sinew_token_file() {
        let dir = std::env::temp_dir().join(format!("sinew-client-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let flag_file = dir.join("flag.token");
        let env_file = dir.join("env.token");
        std::fs::write(&flag_file, "from-flag\n").unwrap();
        std::fs::write(&env_file, "from-env-file\n").unwrap();
        let env_file_str = env_file.to_str().unwrap();
        let all = [(ENV_TOKEN, "from-env"), (ENV_TOKEN_FILE, env_file_str)];

        let s = args(None, Some(flag_file.clone()))
            .settings(env(&all))
            .unwrap();
        assert_eq!(s.authorization.unwrap(), "Bearer from-flag");
        assert_eq!(s.source, TokenSource::File(flag_file.clone()));
        let s = args(None, None).settings(env(&all)).unwrap();
        assert_eq!(s.authorization.unwrap(), "Bearer from-env");
        assert_eq!(s.source, TokenSource::Env);
        let s = args(None, None)
            .settings(env(&[(ENV_TOKEN_FILE, env_file_str)]))
            .unwrap();
        assert_eq!(s.authorization.unwrap(), "Bearer from-env-file");
        let s = args(None, None).settings(env(&[])).unwrap();
        assert!(s.authorization.is_none());

        std::fs::write(&flag_file, "  \n").unwrap();
        let e = args(None, Some(flag_file.clone()))
            .settings(env(&[]))
            .unwrap_err();
        assert!(e.contains("is empty"), "{e}");
        let e = args(None, Some(dir.join("absent")))
            .settings(env(&[]))
            .unwrap_err();
        assert!(e.starts_with("cannot read the token file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("reviews-v1.x"), "reviews-v1.x");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn an_unreachable_server_is_named() {
        // A port that was just free: nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = args(Some(&format!("http://{addr}")), None)
            .client()
            .unwrap();
        let e = block_on(async { client.get("/v1/proxies").await }).unwrap_err();
        assert!(
            e.starts_with(&format!(
                "cannot reach the control plane at http://{addr}: "
            )),
            "{e}"
        );
    }
}
