#!/usr/bin/env bash
# Build the Debian package target/debian/procward_VERSION_ARCH.deb with
# cargo-deb (installed from crates.io when missing). Extra arguments go to
# `cargo deb` (the tests use `--profile dev` to package the debug build).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null; then
  echo "scripts/package.sh: installing cargo-deb"
  cargo install cargo-deb --version 3.8.0 --locked --quiet
fi

profile=release
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--profile" ] && profile=${args[$((i + 1))]}
done
case "$profile" in
  dev) bin=target/debug/procward; cargo build --quiet ;;
  *) bin=target/$profile/procward; cargo build --quiet --profile "$profile" ;;
esac

# Man pages and completions from the clap definitions.
rm -rf target/assets
"$bin" assets --out target/assets >/dev/null
gzip -9n target/assets/man/*.1
# The Japanese page is written by hand (contrib/man/ja), kept with README.ja.md.
mkdir -p target/assets/man-ja
gzip -9nc contrib/man/ja/procward.1 > target/assets/man-ja/procward.1.gz

cargo deb --no-build --strip "$@"
