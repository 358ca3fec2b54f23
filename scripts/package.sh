#!/usr/bin/env bash
# Builds the Debian package of byocd with cargo-deb (metadata: [package.metadata.deb] in
# Cargo.toml): the production binary (release, `--no-default-features`: no emulators), the unit,
# the configuration, the docs and the maintainer scripts of debian/. Then checks what it built
# (scripts/check-package.sh). Prints the package's path last.
#
#   bash scripts/package.sh            # target/debian/byocd_<version>-1_<arch>.deb
#
# cargo-deb is installed when missing (`cargo install cargo-deb --locked`, pinned below).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version >/dev/null 2>&1; then
    echo "scripts/package.sh: installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked >&2
fi

target="${CARGO_TARGET_DIR:-target}"
out="$target/debian"
mkdir -p "$out"
# cargo-deb runs `cargo build --release` with the metadata's default-features = false.
cargo deb --output "$out/" >&2
deb=$(ls -t "$out"/byocd_*.deb | head -n 1)
bash scripts/check-package.sh "$deb" >&2
echo "$deb"
