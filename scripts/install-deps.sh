#!/usr/bin/env bash
# scripts/install-deps.sh: install the system tools that weft's lab scripts and tests use.
#
# Idempotent: installs (Debian/Ubuntu, as root) only what is missing, and runs `apt-get update`
# only when something is. Then checks that cargo has clippy and rustfmt, which CI needs; pass
# --no-rust to skip that check (the lab demo only needs the binary).
set -euo pipefail

check_rust=1
case ${1:-} in
'') ;;
--no-rust) check_rust=0 ;;
*)
	echo "usage: $0 [--no-rust]" >&2
	exit 2
	;;
esac

# package:command — a package counts as present if its command is on PATH or dpkg has it.
wanted=(
	iproute2:ip
	iputils-ping:ping
	iperf3:iperf3
	dnsutils:dig
	socat:socat
	ethtool:ethtool         # tests/vxlan_interop.rs: veth segments kernel VXLAN's superframes
	tcpdump:tcpdump
	procps:pgrep
	nftables:nft
	curl:curl
	prometheus:promtool
	systemd:systemd-analyze # tests/systemd_unit.rs
	man-db:man              # tests/cli_gen.rs renders the man pages
	dnsmasq-base:dnsmasq    # tests/discovery_lab.rs: the upstream resolver inside the lab
	chromium:chromium       # tests/status_page.rs: renders the status page headless
	# tests/cni_podman.rs: podman (CNI backend) runs a busybox-static rootfs on weft; the two
	# packages named twice have no command of that name, so dpkg decides.
	podman:podman
	runc:runc
	containernetworking-plugins:containernetworking-plugins
	busybox-static:busybox-static
	# tests/docker_lab.rs: a dockerd and a containerd per lab host, with private roots.
	docker.io:dockerd
	containerd:containerd
)

installed() {
	command -v "$2" >/dev/null 2>&1 ||
		dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for entry in "${wanted[@]}"; do
	if ! installed "${entry%%:*}" "${entry#*:}"; then missing+=("${entry%%:*}"); fi
done

if ((${#missing[@]} == 0)); then
	echo "install-deps: system packages present"
else
	echo "install-deps: missing ${missing[*]}"
	if (($(id -u) != 0)); then
		echo "install-deps: run as root to install them" >&2
		exit 1
	fi
	if ! command -v apt-get >/dev/null; then
		echo "install-deps: no apt-get here; install ${missing[*]} by hand" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	# The tests start their own dockerd and containerd inside lab namespaces; installing the
	# packages must not start the machine's (a policy-rc.d that refuses, for this install only).
	policy=/usr/sbin/policy-rc.d
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
		trap 'rm -f "$policy"' EXIT
	fi
	apt-get install -y --no-install-recommends "${missing[@]}"
fi

if ((check_rust)); then
	for tool in clippy fmt; do
		if ! cargo "$tool" --version >/dev/null 2>&1; then
			echo "install-deps: 'cargo $tool' is missing (rustup component add ${tool/fmt/rustfmt})" >&2
			exit 1
		fi
	done
	echo "install-deps: cargo clippy and rustfmt present"
fi
