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
        // An event's key and data are slices of the message they arrived
        // in (no copy per event), and its headers stay in name order, as
        // the broker stores them (no hashing, no sort).
        .bytes(".sinew.v1.Event")
        .btree_map(".sinew.v1.Event.headers")
        .compile_fds(fds)?;
    Ok(())
}
