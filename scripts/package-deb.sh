#!/usr/bin/env bash
# scripts/package-deb.sh: build weft's Debian package with cargo-deb.
#
# Builds the release binary, has it write its man pages (weft(8), weft-<command>(8) and
# weft.toml(5)) and shell completions into <target>/release/deb-extra/ (where
# [package.metadata.deb] in Cargo.toml looks for them), then runs `cargo deb --no-build --strip`.
# Installs cargo-deb first if it is missing. Extra arguments go to `cargo deb` (e.g.
# --deb-revision 2, --dbgsym). Prints the path of the .deb last.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! cargo deb --version >/dev/null 2>&1; then
	echo "package-deb: installing cargo-deb" >&2
	cargo install cargo-deb --locked
fi

cargo build --release --locked --bin weft

target_dir=$(cargo metadata --format-version 1 --no-deps |
	sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[[ -n $target_dir ]] || {
	echo "package-deb: cannot find cargo's target directory" >&2
	exit 1
}
weft=$target_dir/release/weft
extra=$target_dir/release/deb-extra

rm -rf "$extra"
mkdir -p "$extra/man"
"$weft" man --dir "$extra/man"
# weft.8, weft-<command>.8 and weft.toml.5. cargo-deb compresses man pages only when it did
# not find them under the target dir.
gzip -9n "$extra"/man/*.8 "$extra"/man/*.5
"$weft" completions bash >"$extra/weft.bash"
"$weft" completions zsh >"$extra/_weft"
"$weft" completions fish >"$extra/weft.fish"

# The release profile keeps debug info for profiling; the package ships a stripped binary
# unless asked for the symbols some other way (e.g. --dbgsym makes a separate .ddeb).
strip=--strip
for arg in "$@"; do
	case $arg in --dbgsym | --separate-debug-symbols | --no-strip) strip= ;; esac
done

# Cargo.toml names no maintainer; Debian's DEBFULLNAME/DEBEMAIL (as dch uses them) fill it in.
maintainer=()
if [[ -n ${DEBEMAIL:-} ]]; then
	maintainer=(--maintainer "${DEBFULLNAME:-weft packager} <$DEBEMAIL>")
else
	echo "package-deb: set DEBFULLNAME and DEBEMAIL to fill the package's Maintainer field" >&2
fi

cargo deb --no-build ${strip:+"$strip"} "${maintainer[@]}" "$@"
