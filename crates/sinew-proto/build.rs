//! Compiles `proto/` with protox (pure Rust), so a fresh machine needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/sinew/v1/control.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_transport(true)
        // Documents are shared, not copied, into every stream's messages.
        .bytes(".sinew.v1.Document.json")
        .compile_fds(fds)?;
    Ok(())
}
