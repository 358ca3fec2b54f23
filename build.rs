//! Generates the Pub/Sub API client and server from `proto/pubsub.proto`, with a pure-Rust
//! protobuf compiler (no `protoc` needed on the build machine).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/pubsub.proto");
    let descriptors = protox::compile(["proto/pubsub.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
