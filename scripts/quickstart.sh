#!/usr/bin/env bash
# Builds SmolVM, sets up the host (Debian packages, guest kernel, images) and
# runs a first command in a sandbox. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# Root installs packages and builds images; others go through sudo for setup only.
as_root=()
if [ "$(id -u)" -ne 0 ]; then as_root=(sudo env "SMOLVM_HOME=${SMOLVM_HOME:-$HOME/.smolvm}"); fi

# SQLite's headers are the one build dependency outside the Swift toolchain.
if ! dpkg-query -W -f='${Status}' libsqlite3-dev 2>/dev/null | grep -q "ok installed"; then
    "${as_root[@]}" apt-get update -q
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libsqlite3-dev
fi

swift build -c release
"${as_root[@]}" .build/release/smolvm setup
.build/release/smolvm run -- sh -c 'echo "Hello from $(uname -sr) inside a SmolVM sandbox"'
