//! Generates the Pub/Sub API client from `proto/pubsub.proto`, with a pure-Rust protobuf compiler
//! (no `protoc` needed on the build machine), and its server for the emulator when the `sandbox`
//! feature is on.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/pubsub.proto");
    let descriptors = protox::compile(["proto/pubsub.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(std::env::var_os("CARGO_FEATURE_SANDBOX").is_some())
        .compile_fds(descriptors)?;
    Ok(())
}
