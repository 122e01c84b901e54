#!/usr/bin/env bash
# Builds SmolVM, sets up the host (Debian packages, guest kernel, images) and
# runs a first command in a sandbox. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# Root installs packages and builds images; others go through sudo for setup only.
as_root=()
if [ "$(id -u)" -ne 0 ]; then as_root=(sudo env "SMOLVM_HOME=${SMOLVM_HOME:-$HOME/.smolvm}"); fi

swift build -c release
"${as_root[@]}" .build/release/smolvm setup
.build/release/smolvm run -- sh -c 'echo "Hello from $(uname -sr) inside a SmolVM sandbox"'
