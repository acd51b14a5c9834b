#!/usr/bin/env bash
# netns-lab/lab.sh: build, inspect and remove a multi-host weft lab out of network namespaces.
#
#   lab.sh up [HOSTS=3] [CONTAINERS_PER_HOST=2]   build the lab, start one daemon per host
#   lab.sh down                                   remove everything the lab created (idempotent)
#   lab.sh exec NODE CMD...                       run CMD in NODE (ul, h<i> or h<i>c<j>)
#   lab.sh ip CONTAINER                           print a container's overlay address
#   lab.sh status                                 list namespaces, daemons and containers
#   lab.sh stop-daemon h<i> [SIGNAL=TERM]         signal a daemon (waits if the signal ends it)
#   lab.sh start-daemon h<i>                      start a stopped daemon again
#   lab.sh ui [h<i>=h1] [PORT=9571]               serve h<i>'s status page (its loopback
#                                                 listener) at http://127.0.0.1:PORT/ here,
#                                                 through a unix socket in the lab directory
#
# Environment:
#   WEFT_LAB_DIR      lab state (PKI, configs, logs, PIDs); default /run/weft-lab
#   WEFT_LAB_TAG      prefix of every namespace (read by `up` only, later recorded in
#                     $WEFT_LAB_DIR/tag); [a-z][a-z0-9]*, at most 6 bytes; default wl + the PID
#                     in base 36
#   WEFT_BIN          the weft binary; default <repo>/target/release/weft, built if missing
#   WEFT_LAB_TIMEOUT  seconds a daemon may take to answer `weft status`; default 10
#   WEFT_LAB_PEERS    seed (default: one membership seed per host) or mesh (static [[peer]]s)
#   WEFT_LAB_EXTRA    a directory; its all.toml and h<i>.toml are appended to every host's
#                     (resp. host i's) node.toml: services, [dns], [network.policy], …
#   WEFT_LAB_DUAL     1: a dual-stack network (10.42.0.0/16 and fd42::/48; host i also owns
#                     fd42:0:0:<i>::/64), each container's IPv6 address in h<i>c<j>.ip6
#
# Files in $WEFT_LAB_DIR that scripts may read: tag, hosts, containers, launched (the Unix
# time, with microseconds, at which `up` started the first daemon), h<i>/weft.pid,
# h<i>/weft.log, h<i>/weft.sock, h<i>c<j>.ip.
#
# Shape (see shared LAB.md):
#   <tag>ul        the underlay switch: bridge br0, one port <tag>h<i> per host
#   <tag>h<i>      a host: eth0 = 10.200.0.<i>/24, MAC 02:00:0a:c8:00:<i in hex>, mtu 1500, a
#                  weft daemon listening on :51820, and a permanent neighbour (ARP) entry for
#                  every other host's uplink (see static_neighbours: labs above ~30 hosts
#                  overflow the kernel's shared ARP table otherwise)
#   <tag>h<i>c<j>  a container, attached to its host's daemon with `weft attach`
# Nothing is created in the caller's namespace. Under /etc only /etc/netns/<tag>h<i>c<j>/
# resolv.conf appears: the daemon writes it at attach (pointing the container at weft DNS) and
# removes it at detach; `down` removes any a killed daemon left. Only names
# of the exact forms above are ever deleted, so labs with other tags are never touched.
#
# Overlay MTU: the underlay MTU is 1500 on every link, and one overlay frame costs
#     1500 - 20 (IPv4) - 8 (UDP) - 16 (weft transport header: type, receiver index, counter)
#          - 16 (Poly1305 tag) - 4 (inner frame header: kind + VNI) - 14 (inner Ethernet)
#   = 1422 bytes of inner IP packet, the MTU a container's interface may use.
set -euo pipefail
shopt -s nullglob

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
dir=${WEFT_LAB_DIR:-/run/weft-lab}
timeout_s=${WEFT_LAB_TIMEOUT:-10}
# seed: every host knows one seed and learns the rest by gossip; mesh: every host lists every
# other as a static [[peer]].
peers_mode=${WEFT_LAB_PEERS:-seed}
extra=${WEFT_LAB_EXTRA:-}
dual=${WEFT_LAB_DUAL:-0}
[[ $peers_mode == seed || $peers_mode == mesh ]] || { printf 'lab.sh: WEFT_LAB_PEERS must be seed or mesh\n' >&2; exit 2; }
readonly here repo dir timeout_s
readonly port=51820 vni=42 network=default underlay_mtu=1500
readonly marker=.weft-lab # a directory without it is never removed
tag=''                    # set by new_tag or load_tag
bin=''                    # set by resolve_bin

say() { printf 'lab.sh: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}
usage() {
	sed -n '4,10s/^#   //p' "${BASH_SOURCE[0]}" >&2
	exit "${1:-2}"
}

# --- names --------------------------------------------------------------------------------

# ns NODE: the namespace name of NODE (ul, h<i>, h<i>c<j>) in this lab.
ns() { printf '%s%s' "$tag" "$1"; }

check_tag() {
	[[ $1 =~ ^[a-z][a-z0-9]{0,5}$ ]] ||
		die "bad tag '$1': want [a-z][a-z0-9]*, at most 6 bytes (interface names are <= 15)"
}

# new_tag: the tag for a new lab, from WEFT_LAB_TAG or wl + this PID in base 36 (<= 4 digits).
new_tag() {
	local n=$(($$ % 1679616)) s='' digits=0123456789abcdefghijklmnopqrstuvwxyz
	while :; do
		s=${digits:n%36:1}$s
		n=$((n / 36))
		((n > 0)) || break
	done
	tag=${WEFT_LAB_TAG:-wl$s}
	check_tag "$tag"
}

load_tag() {
	[[ -f $dir/tag ]] || die "no lab in $dir (start one with: $0 up)"
	tag=$(<"$dir/tag")
	check_tag "$tag"
}

check_node() {
	[[ $1 =~ ^(ul|h[0-9]+(c[0-9]+)?)$ ]] || die "bad node '$1': want ul, h<i> or h<i>c<j>"
}

check_host() {
	[[ $1 =~ ^h[0-9]+$ && -d $dir/$1 ]] || die "no host '$1' in the lab at $dir"
}

# lab_namespaces TAG: the existing namespaces that belong to the lab tagged TAG, containers
# first. Only exact <tag>ul, <tag>h<i>, <tag>h<i>c<j> match, so a lab tagged "wl1" never
# claims the namespaces of a lab tagged "wl12".
lab_namespaces() {
	local t=$1 name
	ip netns list 2>/dev/null | while read -r name _; do
		if [[ $name =~ ^${t}(ul|h[0-9]+(c[0-9]+)?)$ ]]; then printf '%s\n' "$name"; fi
	done | sort -r
}

# --- daemons ------------------------------------------------------------------------------

# pid_alive PID: whether PID runs (a zombie, already dead, does not count).
pid_alive() {
	local stat
	stat=$(cat 2>/dev/null "/proc/$1/stat") || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

# daemon_pid HOST: print the PID of HOST's daemon if it is alive and is the one this lab
# started (its command line names weft and this host's config), else fail.
daemon_pid() {
	local h=$1 pid cmdline
	[[ -f $dir/$h/weft.pid ]] || return 1
	pid=$(<"$dir/$h/weft.pid")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	# A zombie has an empty command line and so counts as gone.
	cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
	[[ $cmdline == *weft* && $cmdline == *"$dir/$h/node.toml"* ]] || return 1
	printf '%s\n' "$pid"
}

# wait_daemon_gone HOST SECONDS: wait until HOST's daemon has exited.
wait_daemon_gone() {
	local h=$1 deadline=$((SECONDS + $2))
	while daemon_pid "$h" >/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# terminate_daemon HOST: SIGTERM, up to 5 s of grace, then SIGKILL.
terminate_daemon() {
	local h=$1 pid
	pid=$(daemon_pid "$h") || return 0
	say "stopping daemon $h (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_daemon_gone "$h" 5; then
		say "daemon $h (pid $pid) ignored SIGTERM for 5 s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		wait_daemon_gone "$h" 5 || say "warning: daemon $h (pid $pid) survived SIGKILL"
	fi
}

resolve_bin() {
	if [[ -n ${WEFT_BIN:-} ]]; then
		bin=$WEFT_BIN
	else
		bin=${CARGO_TARGET_DIR:-$repo/target}/release/weft
		if [[ ! -x $bin ]]; then
			say "building $bin (cargo build --release)"
			(cd "$repo" && cargo build --release) >&2 || die "cargo build --release failed"
		fi
	fi
	[[ -x $bin ]] || die "weft binary '$bin' is missing or not executable"
}

# launch HOST: start HOST's daemon in the host namespace and record its PID. `ip netns exec`
# execs the command in place, so $! is the daemon itself. NO_COLOR keeps the log plain text.
launch() {
	local h=$1
	NO_COLOR=1 ip netns exec "$(ns "$h")" "$bin" run --config "$dir/$h/node.toml" \
		</dev/null >>"$dir/$h/weft.log" 2>&1 &
	printf '%s\n' "$!" >"$dir/$h/weft.pid"
}

# wait_ready HOST: wait (bounded) until `weft status` answers on HOST's control socket. Only
# right after launch, in the same shell: the PID is our child, but may not have exec'd yet.
wait_ready() {
	local h=$1 deadline=$((SECONDS + timeout_s))
	until "$bin" status --socket "$dir/$h/weft.sock" >/dev/null 2>&1; do
		if ! pid_alive "$(<"$dir/$h/weft.pid")"; then
			tail -n 30 "$dir/$h/weft.log" >&2 || true
			die "daemon $h exited during startup (log above: $dir/$h/weft.log)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 30 "$dir/$h/weft.log" >&2 || true
			die "daemon $h did not answer 'weft status' within ${timeout_s}s (log above)"
		fi
		sleep 0.1
	done
}

# --- up -----------------------------------------------------------------------------------

# uplink_mac I: the MAC address of host i's uplink eth0, 02:00:0a:c8:00:<i> (locally
# administered; 0a:c8 = 10.200, the underlay's prefix). Fixed, so that the neighbour entries
# below need no lookup; unique within the lab's own bridge, which is all that matters.
uplink_mac() { printf '02:00:0a:c8:%02x:%02x' $(($1 >> 8)) $(($1 & 255)); }

# static_neighbours HOSTS: a permanent neighbour (ARP) entry in every host for every other
# host's uplink, written before any daemon starts.
#
# Why: the kernel has one IPv4 neighbour table for all namespaces, and its dynamic entries, all
# namespaces together, are capped at net.ipv4.neigh.default.gc_thresh3 (1024 by default, and
# only settable in the initial namespace, i.e. for the whole machine). Hosts that all gossip
# with each other need N(N-1) entries: 1,560 at 40 hosts, 9,900 at 100. Past ~32 hosts the
# table overflows ("neighbor table overflow!" in dmesg), ARP between random pairs fails, the
# failure detector sees those pairs' probes vanish, and members flap between alive, suspect and
# down without the lab ever converging. Permanent entries are exempt from that cap (and from
# garbage collection), live in the lab's own namespaces, and go with them: nothing outside the
# lab changes (LAB.md "Large labs"). Only 10.200.0.1..N get one: addresses a test adds to the
# underlay later (an attacker's, a flooder's) resolve by ARP as usual. An `ip link set eth0
# down` in a host flushes its entries too; ARP then takes over, which is fine in small labs.
static_neighbours() {
	local hosts=$1 i k macs=()
	((hosts > 1)) || return 0
	for ((k = 1; k <= hosts; k++)); do macs[k]=$(uplink_mac "$k"); done
	for ((i = 1; i <= hosts; i++)); do
		for ((k = 1; k <= hosts; k++)); do
			if ((k != i)); then
				printf 'neigh replace 10.200.0.%d lladdr %s dev eth0 nud permanent\n' "$k" "${macs[k]}"
			fi
		done | ip -n "$(ns "h$i")" -batch - || die "could not add the underlay neighbours of h$i"
	done
}

write_config() {
	local i=$1 hosts=$2 hd=$dir/h$1 k subnet='"10.42.0.0/16"'
	[[ $dual != 1 ]] || subnet='["10.42.0.0/16", "fd42::/48"]'
	{
		cat <<-EOF
			# weft lab node h$i (generated by netns-lab/lab.sh; tag $tag)
			[node]
			name = "h$i"
			key = "$dir/pki/h$i.key"
			cert = "$dir/pki/h$i.crt"
			ca = "$dir/pki/ca.crt"
			state_dir = "$hd/state"
			control_socket = "$hd/weft.sock"

			[underlay]
			listen = "10.200.0.$i:$port"

			[[network]]
			name = "$network"
			vni = $vni
			subnet = $subnet
		EOF
		if [[ $peers_mode == mesh ]]; then
			for ((k = 1; k <= hosts; k++)); do
				((k != i)) || continue
				printf '\n[[peer]]\nendpoint = "10.200.0.%d:%d"\n' "$k" "$port"
			done
		elif ((hosts > 1)); then
			# One seed each: h1 joins through h2, everyone else through h1; gossip does the rest.
			k=$((i == 1 ? 2 : 1))
			printf '\n[membership]\nseeds = ["10.200.0.%d:%d"]\n' "$k" "$port"
		fi
		# DNS forwards names outside its domain to the host's resolvers by default; in the lab
		# nothing may leave the namespaces (LAB.md), so no upstreams unless extra config says.
		if ! grep -qs '^\[dns\]' -- "$extra/all.toml" "$extra/h$i.toml"; then
			printf '\n[dns]\nupstreams = []\n'
		fi
		# Extra configuration (services, DNS, policy) for every host, then for this host.
		for k in all "h$i"; do
			if [[ -n $extra && -f $extra/$k.toml ]]; then
				printf '\n# from %s\n' "$extra/$k.toml"
				cat -- "$extra/$k.toml"
			fi
		done
	} >"$hd/node.toml"
}

# lab_running: whether $dir holds a lab with live namespaces or daemons.
lab_running() {
	local t h
	[[ -f $dir/tag ]] || return 1
	t=$(<"$dir/tag")
	[[ $t =~ ^[a-z][a-z0-9]{0,5}$ ]] || return 1
	[[ -z $(lab_namespaces "$t") ]] || return 0
	for h in "$dir"/h*/; do
		h=$(basename "$h")
		if daemon_pid "$h" >/dev/null; then return 0; fi
	done
	return 1
}

up_failed() {
	local rc=$?
	trap - EXIT INT TERM
	((rc != 0)) || return 0
	say "up failed (exit $rc): removing the partial lab"
	# Daemons this shell launched that have not exec'd weft yet escape daemon_pid: end them here.
	local pids
	pids=$(jobs -pr)
	# shellcheck disable=SC2086 # a list of PIDs
	[[ -z $pids ]] || kill -TERM $pids 2>/dev/null || true
	cmd_down || true
	exit "$rc"
}

cmd_up() {
	local hosts=${1:-3} containers=${2:-2} i j h c out addr
	if ! [[ $hosts =~ ^[0-9]{1,3}$ ]] || ((hosts < 1 || hosts > 250)); then
		die "HOSTS must be 1..250, got '$hosts'"
	fi
	if ! [[ $containers =~ ^[0-9]{1,3}$ ]] || ((containers > 250)); then
		die "CONTAINERS_PER_HOST must be 0..250, got '$containers'"
	fi
	hosts=$((10#$hosts)) containers=$((10#$containers))
	(($(id -u) == 0)) || die "must run as root (creates network namespaces)"
	command -v ip >/dev/null || die "ip (iproute2) is not installed"

	if [[ -d $dir ]]; then
		lab_running && die "a lab is already running in $dir (tag $(<"$dir/tag")); remove it with: $0 down"
		if [[ -n $(ls -A "$dir") ]]; then
			[[ -f $dir/$marker ]] || die "$dir exists and is not a lab directory; refusing to use it"
			say "removing the stale lab in $dir"
			cmd_down
		fi
	fi
	new_tag
	((${#tag} + ${#hosts} + ${#containers} + 2 <= 15)) ||
		die "namespace name ${tag}h${hosts}c${containers} is longer than 15 bytes"
	# Never adopt namespaces that another run created with the same tag.
	[[ -z $(lab_namespaces "$tag") ]] ||
		die "namespaces tagged '$tag' already exist: pick another WEFT_LAB_TAG"
	resolve_bin

	trap up_failed EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	mkdir -p "$dir/pki"
	: >"$dir/$marker"
	printf '%s\n' "$tag" >"$dir/tag"
	printf '%s\n' "$hosts" >"$dir/hosts"
	printf '%s\n' "$containers" >"$dir/containers"
	say "lab $tag in $dir: $hosts hosts, $containers containers each"

	# Underlay: one switch namespace and one uplink per host, all MTU 1500.
	ip netns add "$(ns ul)"
	ip -n "$(ns ul)" link set lo up
	ip -n "$(ns ul)" link add br0 type bridge
	ip -n "$(ns ul)" link set br0 up
	for ((i = 1; i <= hosts; i++)); do
		h=$(ns "h$i")
		ip netns add "$h"
		ip -n "$h" link set lo up
		ip -n "$(ns ul)" link add "$h" mtu "$underlay_mtu" type veth \
			peer name eth0 mtu "$underlay_mtu" netns "$h"
		ip -n "$(ns ul)" link set "$h" master br0 up
		ip -n "$h" link set eth0 address "$(uplink_mac "$i")"
		ip -n "$h" addr add "10.200.0.$i/24" dev eth0
		ip -n "$h" link set eth0 up
	done
	static_neighbours "$hosts"

	# PKI: one CA, one key and certificate per host, each host owning 10.42.<i>.0/24.
	"$bin" ca init --name lab --out-key "$dir/pki/ca.key" --out-cert "$dir/pki/ca.crt" >/dev/null
	for ((i = 1; i <= hosts; i++)); do
		"$bin" keygen --out "$dir/pki/h$i.key" >/dev/null
		v6=()
		[[ $dual != 1 ]] || v6=(--subnet "fd42:0:0:$i::/64")
		"$bin" ca sign --ca-key "$dir/pki/ca.key" --ca-cert "$dir/pki/ca.crt" --name "h$i" \
			--public-key-file "$dir/pki/h$i.key.pub" --subnet "10.42.$i.0/24" "${v6[@]}" --group lab \
			--out "$dir/pki/h$i.crt" >/dev/null
		mkdir -p "$dir/h$i/state"
		: >"$dir/h$i/weft.log"
		write_config "$i" "$hosts"
	done

	# When the first daemon started (Unix time, µs): benches measure convergence from here.
	printf '%s\n' "${EPOCHREALTIME/,/.}" >"$dir/launched"
	for ((i = 1; i <= hosts; i++)); do launch "h$i"; done
	for ((i = 1; i <= hosts; i++)); do wait_ready "h$i"; done
	say "daemons ready"

	for ((i = 1; i <= hosts; i++)); do
		for ((j = 1; j <= containers; j++)); do
			c=h${i}c$j
			ip netns add "$(ns "$c")"
			ip -n "$(ns "$c")" link set lo up
			out=$("$bin" attach --socket "$dir/h$i/weft.sock" --netns "$(ns "$c")" \
				--network "$network" --name "$c") || die "weft attach of $c failed"
			# One address per line, IPv4 first (two on a dual-stack network).
			addr=$(head -n 1 <<<"$out")
			addr=${addr%%/*}
			[[ $addr =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
				die "weft attach of $c printed no IPv4 address on its first line: '$out'"
			printf '%s\n' "$addr" >"$dir/$c.ip"
			if [[ $dual == 1 ]]; then
				addr6=$(sed -n 2p <<<"$out")
				[[ $addr6 == fd42:* ]] || die "weft attach of $c printed no IPv6 address: '$out'"
				printf '%s\n' "$addr6" >"$dir/$c.ip6"
			fi
			say "$c: $addr"
		done
	done

	trap - EXIT INT TERM
	say "lab $tag is up; inspect with: $0 status; remove with: $0 down"
}

# --- down ---------------------------------------------------------------------------------

# kill_ns_processes NS: end whatever still runs inside one of the lab's own namespaces (e.g. a
# test's iperf3 server), by PID, so that deleting the namespace really frees it.
kill_ns_processes() {
	local name=$1 pid i alive pids=()
	mapfile -t pids < <(ip netns pids "$name" 2>/dev/null)
	((${#pids[@]} > 0)) || return 0
	say "ending processes left in $name: ${pids[*]}"
	kill -TERM "${pids[@]}" 2>/dev/null || true
	for ((i = 0; i < 20; i++)); do
		alive=0
		for pid in "${pids[@]}"; do
			if pid_alive "$pid"; then alive=1; fi
		done
		((alive)) || return 0
		sleep 0.1
	done
	kill -KILL "${pids[@]}" 2>/dev/null || true
}

cmd_down() {
	local d h name pid rc=0
	if [[ ! -d $dir ]]; then
		say "no lab in $dir: nothing to remove"
		return 0
	fi
	if [[ ! -f $dir/$marker && -n $(ls -A "$dir") ]]; then
		die "$dir is not a lab directory (no $marker); refusing to remove it"
	fi
	stop_ui
	# Signal every daemon first, then wait for each: they shut down in parallel (a 101-host
	# lab took 25 s one by one).
	for d in "$dir"/h*/; do
		h=$(basename "$d")
		if [[ $h =~ ^h[0-9]+$ ]] && pid=$(daemon_pid "$h"); then kill -TERM "$pid" 2>/dev/null || true; fi
	done
	for d in "$dir"/h*/; do
		h=$(basename "$d")
		if [[ $h =~ ^h[0-9]+$ ]]; then terminate_daemon "$h"; fi
	done
	if [[ -f $dir/tag ]]; then
		load_tag
		for name in $(lab_namespaces "$tag"); do
			kill_ns_processes "$name"
			ip netns del "$name" || rc=1
			# The resolv.conf a daemon wrote for a container it could not detach (killed).
			if [[ -f /etc/netns/$name/resolv.conf ]] && head -n1 "/etc/netns/$name/resolv.conf" | grep -q '^# written by weft'; then
				rm -f -- "/etc/netns/$name/resolv.conf"
				rmdir -- "/etc/netns/$name" 2>/dev/null || true
			fi
		done
		[[ -z $(lab_namespaces "$tag") ]] || {
			say "warning: namespaces tagged $tag remain"
			rc=1
		}
	fi
	rm -rf -- "$dir"
	say "lab in $dir removed"
	return "$rc"
}

# --- inspection and restarts --------------------------------------------------------------

cmd_exec() {
	(($# >= 2)) || usage
	load_tag
	check_node "$1"
	local node=$1
	shift
	exec ip netns exec "$(ns "$node")" "$@"
}

cmd_ip() {
	(($# == 1)) || usage
	[[ $1 =~ ^h[0-9]+c[0-9]+$ ]] || die "bad container '$1': want h<i>c<j>"
	[[ -f $dir/$1.ip ]] || die "no container $1 in the lab at $dir"
	cat "$dir/$1.ip"
}

cmd_status() {
	local d h pid name state c
	load_tag
	printf 'lab %s in %s: %s hosts, %s containers per host\n' \
		"$tag" "$dir" "$(cat "$dir/hosts")" "$(cat "$dir/containers")"
	printf '\n%-6s %-10s %-15s %s\n' HOST NETNS UNDERLAY DAEMON
	for d in "$dir"/h*/; do
		h=$(basename "$d")
		[[ $h =~ ^h[0-9]+$ ]] || continue
		if pid=$(daemon_pid "$h"); then state="running (pid $pid)"; else state=stopped; fi
		printf '%-6s %-10s %-15s %s\n' "$h" "$(ns "$h")" "10.200.0.${h#h}" "$state"
	done
	printf '\n%-8s %-12s %s\n' CONTAINER NETNS ADDRESS
	for c in "$dir"/h*c*.ip; do
		name=$(basename "$c" .ip)
		printf '%-8s %-12s %s\n' "$name" "$(ns "$name")" "$(<"$c")"
	done
	printf '\nnamespaces: %s\n' "$(lab_namespaces "$tag" | sort | tr '\n' ' ')"
}

cmd_stop_daemon() {
	(($# >= 1 && $# <= 2)) || usage
	local h=$1 sig=${2:-TERM} pid
	load_tag
	check_host "$h"
	sig=${sig#SIG}
	sig=${sig^^}
	pid=$(daemon_pid "$h") || die "daemon $h is not running"
	kill -s "$sig" "$pid"
	case $sig in
	TERM | INT | QUIT | KILL | 15 | 2 | 3 | 9)
		wait_daemon_gone "$h" 10 || die "daemon $h (pid $pid) still runs 10 s after SIG$sig"
		rm -f "$dir/$h/weft.pid"
		say "daemon $h (pid $pid) stopped by SIG$sig"
		;;
	*) say "sent SIG$sig to daemon $h (pid $pid)" ;;
	esac
}

# cmd_ui: two socat relays, one in the host's namespace from a unix socket to its loopback
# listener, one here from 127.0.0.1:PORT to that socket; their PIDs go to ui.pids (killed by
# `down`). Traffic stays on loopback and in the lab's namespace (LAB.md rule 1).
cmd_ui() {
	(($# <= 2)) || usage
	local h=${1:-h1} ui_port=${2:-9571} sock
	load_tag
	check_host "$h"
	if ! [[ $ui_port =~ ^[0-9]+$ ]] || ((ui_port < 1 || ui_port > 65535)); then die "bad port $ui_port"; fi
	command -v socat >/dev/null || die "socat is needed (scripts/install-deps.sh)"
	stop_ui
	sock=$dir/$h/ui.sock
	rm -f -- "$sock"
	ip netns exec "$(ns "$h")" socat "UNIX-LISTEN:$sock,fork,mode=600" TCP:127.0.0.1:9571 >/dev/null 2>&1 &
	echo $! >>"$dir/ui.pids"
	socat "TCP-LISTEN:$ui_port,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$sock" >/dev/null 2>&1 &
	echo $! >>"$dir/ui.pids"
	say "status page of $h: http://127.0.0.1:$ui_port/ (stops with lab.sh down)"
}

stop_ui() {
	local pid
	[[ -f $dir/ui.pids ]] || return 0
	while read -r pid; do
		if [[ $pid =~ ^[0-9]+$ ]]; then kill "$pid" 2>/dev/null || true; fi
	done <"$dir/ui.pids"
	rm -f -- "$dir/ui.pids"
}

cmd_start_daemon() {
	(($# == 1)) || usage
	local h=$1 pid
	load_tag
	check_host "$h"
	if pid=$(daemon_pid "$h"); then die "daemon $h already runs (pid $pid)"; fi
	resolve_bin
	printf -- '--- restarted by lab.sh at %s ---\n' "$(date -u +%FT%TZ)" >>"$dir/$h/weft.log"
	launch "$h"
	wait_ready "$h"
	say "daemon $h started (pid $(<"$dir/$h/weft.pid"))"
}

main() {
	(($# >= 1)) || usage
	local cmd=$1
	shift
	case $cmd in
	up) cmd_up "$@" ;;
	down) cmd_down ;;
	exec) cmd_exec "$@" ;;
	ip) cmd_ip "$@" ;;
	status) cmd_status ;;
	stop-daemon) cmd_stop_daemon "$@" ;;
	start-daemon) cmd_start_daemon "$@" ;;
	ui) cmd_ui "$@" ;;
	-h | --help | help) usage 0 ;;
	*) usage ;;
	esac
}

main "$@"
