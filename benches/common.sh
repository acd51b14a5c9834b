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

# --- lab runs through lab.sh (peers_rss.sh, lab_membership.sh) -----------------------------
# These read the calling script's globals: $tag (the run's namespace prefix), $lab (the lab
# directory), $work (where the binary was copied), $lab_sh, $peers_mode and $lab_timeout.

# our_namespaces: this run's namespaces that exist (exact lab.sh names with our tag only).
our_namespaces() {
	local name
	ip netns list 2>/dev/null | while read -r name _; do
		if [[ $name =~ ^${tag}(ul|h[0-9]+(c[0-9]+)?)$ ]]; then printf '%s\n' "$name"; fi
	done
}

# lab_sh ARGS...: lab.sh on this run's lab, with this run's tag and binary, no extra config.
lab_sh() {
	WEFT_LAB_DIR=$lab WEFT_LAB_TAG=$tag WEFT_BIN=$work/weft WEFT_LAB_PEERS=$peers_mode \
		WEFT_LAB_TIMEOUT=$lab_timeout WEFT_LAB_EXTRA='' "$lab_sh" "$@"
}

# our_daemon_pid I: the PID of host h<I>'s daemon, from lab.sh's PID file, if it runs and its
# command line names this lab's config for h<I>; fails otherwise.
our_daemon_pid() {
	local i=$1 pid cl
	[[ -f $lab/h$i/weft.pid ]] || return 1
	pid=$(<"$lab/h$i/weft.pid")
	[[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" || return 1
	cl=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
	[[ $cl == *weft* && $cl == *"$lab/h$i/node.toml"* ]] || return 1
	printf '%s\n' "$pid"
}
