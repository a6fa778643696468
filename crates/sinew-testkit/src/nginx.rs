//! `Nginx`: a real nginx on a free loopback port, in its own temp prefix, as an independent upstream.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::Command;

use crate::port::free_port;
use crate::process::Process;
use crate::tempdir::TempDir;
use crate::upstream::Upstream;

/// How long [`NginxBuilder::spawn`] waits for the port to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Describes an nginx to start; see [`Nginx::builder`].
///
/// The instance runs in the foreground as one process (`daemon off;
/// master_process off;`), with its pid file, temp paths and document root
/// inside its own temporary prefix directory, so it runs as root without
/// touching `/var`. Its error log goes to stderr and is captured.
#[derive(Debug)]
pub struct NginxBuilder {
    bin: PathBuf,
    dir: TempDir,
    addr: SocketAddr,
    http2: bool,
    http: String,
    server: String,
    files: Vec<(String, Vec<u8>)>,
}

impl NginxBuilder {
    /// The address it will listen on (known before start, for self-referencing directives).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its prefix directory (relative paths in directives resolve against it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Listen with `http2` (nginx 1.22 syntax): cleartext HTTP/2 with prior
    /// knowledge only (h2c); HTTP/1.1 requests are then refused.
    pub fn http2(mut self) -> Self {
        self.http2 = true;
        self
    }

    /// Directives added inside the `http { }` block.
    pub fn http_directives(mut self, directives: &str) -> Self {
        self.http.push_str(directives);
        self.http.push('\n');
        self
    }

    /// Directives added inside the `server { }` block (locations, `gzip on;`, …).
    pub fn server_directives(mut self, directives: &str) -> Self {
        self.server.push_str(directives);
        self.server.push('\n');
        self
    }

    /// A file at `path` (relative, e.g. `big.bin` or `a/b.txt`) under the document root.
    pub fn file(mut self, path: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.to_owned(), contents.into()));
        self
    }

    /// The `nginx.conf` this builder describes.
    pub fn render(&self) -> String {
        let dir = self.dir.path().display();
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dir}/nginx.pid;\n\
             error_log stderr notice;\nevents {{ worker_connections 1024; }}\nhttp {{\n\
             access_log off;\ndefault_type application/octet-stream;\n\
             client_body_temp_path {dir}/tmp/body;\nproxy_temp_path {dir}/tmp/proxy;\n\
             fastcgi_temp_path {dir}/tmp/fastcgi;\nuwsgi_temp_path {dir}/tmp/uwsgi;\n\
             scgi_temp_path {dir}/tmp/scgi;\n"
        );
        out.push_str(&self.http);
        let http2 = if self.http2 { " http2" } else { "" };
        let _ = write!(
            out,
            "server {{\nlisten {}{http2};\nserver_name _;\nroot {dir}/www;\n",
            self.addr
        );
        out.push_str(&self.server);
        out.push_str("}\n}\n");
        out
    }

    /// Writes the config and the files, starts nginx and waits (bounded) until
    /// its port accepts connections; panics with its error log if it does not.
    pub async fn spawn(self) -> Nginx {
        let config = self.render();
        let dir = self.dir.path();
        std::fs::create_dir_all(dir.join("www")).expect("create nginx document root");
        std::fs::create_dir_all(dir.join("tmp")).expect("create nginx temp dir");
        for (path, contents) in &self.files {
            let full = dir.join("www").join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).expect("create nginx file's directory");
            }
            std::fs::write(&full, contents).expect("write nginx file");
        }
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, &config).expect("write nginx.conf");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg("stderr");
        let process = Process::spawn(cmd)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let mut nginx = Nginx {
            process,
            addr: self.addr,
            config,
            dir: self.dir,
        };
        nginx.wait_listening().await;
        nginx
    }
}

/// A running nginx (see [`NginxBuilder`]); killed on drop, its prefix directory removed.
#[derive(Debug)]
pub struct Nginx {
    process: Process,
    addr: SocketAddr,
    config: String,
    dir: TempDir,
}

impl Nginx {
    /// Starts describing an nginx run from the binary at `bin`
    /// (from [`crate::require_external`]`("nginx")`).
    pub fn builder(bin: impl Into<PathBuf>) -> NginxBuilder {
        NginxBuilder {
            bin: bin.into(),
            dir: TempDir::new("nginx"),
            addr: free_port(),
            http2: false,
            http: String::new(),
            server: String::new(),
            files: Vec::new(),
        }
    }

    /// Its listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its prefix directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `nginx.conf` it runs with.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// Its error log so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    async fn wait_listening(&mut self) {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.process.try_exit() {
                panic!(
                    "nginx exited ({status})\n--- nginx.conf ---\n{}\n--- stderr ---\n{}",
                    self.config,
                    self.stderr()
                );
            }
            if TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "nginx not listening on {} within {START_TIMEOUT:?}\n--- stderr ---\n{}",
                    self.addr,
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Upstream for Nginx {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}
