# benches/common.sh: helpers the benchmark scripts share; sourced, never run. Each script
# defines say() and die() before sourcing this file.

# weft_binary: prints the weft binary to measure: $WEFT_BIN, or target/release/weft after a
# `cargo build --release` of the repository at $repo.
weft_binary() {
	local bin
	if [[ -n ${WEFT_BIN:-} ]]; then
		bin=$WEFT_BIN
	else
		say "building weft (cargo build --release)"
		(cd "$repo" && cargo build --release) >&2 || die "cargo build --release failed"
		bin=${CARGO_TARGET_DIR:-$repo/target}/release/weft
	fi
	[[ -x $bin ]] || die "weft binary '$bin' is missing or not executable"
	printf '%s\n' "$bin"
}

# run_tag PREFIX: PREFIX followed by this shell's PID in base 36 (at most 4 digits), the
# unique prefix of a run's namespaces and links (LAB.md rule 2).
run_tag() {
	local n=$(($$ % 1679616)) tag='' digits=0123456789abcdefghijklmnopqrstuvwxyz
	while :; do
		tag=${digits:n%36:1}$tag
		n=$((n / 36))
		((n > 0)) || break
	done
	printf '%s%s\n' "$1" "$tag"
}

# pid_alive PID: whether PID runs (a zombie does not count).
pid_alive() {
	local stat
	stat=$(cat 2>/dev/null "/proc/$1/stat") || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}
