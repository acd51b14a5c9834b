#!/usr/bin/env bash
# benches/peers_rss.sh: the memory (RSS) of a weft daemon that has N peers, each with an
# encrypted session up ("daemon RSS <= 30 MB with 100 peers").
#
#   benches/peers_rss.sh [--peers N]
#
#   --peers N      peers of the measured daemon, 1..249 (default 100). The lab has N + 1 hosts:
#                  h1, the measured daemon, and its N peers h2 … h<N+1> (netns-lab/lab.sh allows
#                  at most 250 hosts).
#
# Environment:
#   WEFT_BIN            the weft binary to measure; default: `cargo build --release` and use
#                       <repo>/target/release/weft (copied into the run's directory first)
#   WEFT_LAB_PEERS      how the lab's hosts find each other, passed to lab.sh: seed (default:
#                       each host knows one seed, gossip does the rest) or mesh (static peers)
#   WEFT_LAB_TIMEOUT    seconds a daemon may take to answer `weft status` at start (lab.sh);
#                       default 30 here (N + 1 daemons start at once)
#   PEERS_RSS_CONVERGE  seconds membership may take until h1 sees all N peers alive; default 240
#   PEERS_RSS_SESSIONS  seconds to get an encrypted session with every peer; default 120
#   PEERS_RSS_SETTLE    seconds between the last traffic and the measurement; default 5
#
# Needs root, ip (iproute2), jq and ping (installed from Debian if missing).
#
# The lab: netns-lab/lab.sh up N+1 0, tagged pr<PID in base 36> (at most 6 bytes), state in
# /tmp/weft-peers-rss-<tag>.*/lab, so namespaces <tag>ul (the underlay switch) and
# <tag>h1 … <tag>h<N+1> (hosts 10.200.0.<i>/24, one daemon each, overlay subnet 10.42.<i>.0/24),
# no containers. The script then gives every host a permanent ARP entry for every other host's
# uplink (inside the lab's namespaces): without them, more than ~32 hosts overflow the kernel's
# ARP table, which all namespaces share (see static_neighbours). Everything (daemons,
# namespaces, the run's directory) is removed at exit, also on failure and Ctrl-C (`lab.sh
# down`, then a check that nothing of the run's tag remains).
#
# Steps: bring the lab up; wait (bounded) until h1's `weft status` shows all N peers alive;
# `weft ping` every peer from h1 (an overlay probe through the encrypted session, which the
# probe establishes) until `weft status` shows a session with each; send a few ICMP pings from
# h1's namespace to every peer's gateway address 10.42.<i>.1 (real frames through h1's TAP and
# the tunnels, so h1's FDB learns every peer too); wait PEERS_RSS_SETTLE s; then read
# /proc/PID/status of every daemon (PIDs from lab.sh's PID files, checked against their command
# line, never found by name).
#
# Reported: peers alive and peers with a session in h1's status at measurement time; h1's
# VmRSS (resident now), VmHWM (peak resident), RssAnon (heap, stacks) and RssFile (mapped
# binary pages); the median and max VmRSS of all N + 1 daemons (the others hold a session with
# h1 and whichever others traffic made; they are not the measured case). MiB = /proc's kB / 1024;
# MB = 10^6 bytes. Exits 1 (after printing the result) if h1 does not hold a session with
# every peer at measurement time; on any earlier failure it exits non-zero with the reason.
set -euo pipefail
shopt -s nullglob

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cmdline="$0${*:+ $*}"
readonly here repo cmdline
readonly lab_sh=$repo/netns-lab/lab.sh

say() { printf 'peers_rss.sh: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}
# shellcheck source=benches/common.sh
source "$here/common.sh"
usage() {
	sed -n '4,8s/^#   //p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

# --- arguments and environment ------------------------------------------------------------

peers=100
while (($#)); do
	case $1 in
	--peers)
		(($# >= 2)) || usage
		peers=$2
		shift
		;;
	-h | --help) usage ;;
	*)
		say "unknown argument '$1'"
		usage
		;;
	esac
	shift
done
if ! [[ $peers =~ ^[0-9]{1,3}$ ]] || ((10#$peers < 1 || 10#$peers > 249)); then
	die "--peers must be 1..249 (lab.sh allows at most 250 hosts), got '$peers'"
fi
peers=$((10#$peers))
hosts=$((peers + 1))
peers_mode=${WEFT_LAB_PEERS:-seed}
lab_timeout=${WEFT_LAB_TIMEOUT:-30}
converge_s=${PEERS_RSS_CONVERGE:-240}
sessions_s=${PEERS_RSS_SESSIONS:-120}
settle_s=${PEERS_RSS_SETTLE:-5}
[[ $peers_mode == seed || $peers_mode == mesh ]] || die "WEFT_LAB_PEERS must be seed or mesh"
for v in "$lab_timeout" "$converge_s" "$sessions_s" "$settle_s"; do
	[[ $v =~ ^[0-9]{1,4}$ ]] ||
		die "WEFT_LAB_TIMEOUT and PEERS_RSS_* must be whole seconds (0..9999), got '$v'"
done
readonly peers hosts peers_mode lab_timeout converge_s sessions_s settle_s

(($(id -u) == 0)) || die "must run as root (creates network namespaces)"
[[ -x $lab_sh ]] || die "$lab_sh is missing or not executable"

# ensure PKG CMD: install Debian package PKG unless CMD is on PATH; fail if it cannot.
ensure() {
	command -v "$2" >/dev/null && return 0
	command -v apt-get >/dev/null || die "$2 is needed ($1) and there is no apt-get"
	say "installing $1"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$1" >&2 ||
		{ apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$1" >&2; } ||
		die "$2 is needed and apt-get install $1 failed"
	command -v "$2" >/dev/null || die "$2 is still missing after installing $1"
}
for c in ip timeout awk sort; do
	command -v "$c" >/dev/null || die "'$c' is not installed"
done
ensure jq jq
ensure iputils-ping ping

weft_src=$(weft_binary)

# --- the run's names and its cleanup --------------------------------------------------------

tag=$(run_tag pr) # at most 6 bytes; the longest name, <tag>h250, is at most 10
readonly tag
work=''
lab=''

# cleanup: stop our background pings, `lab.sh down` (daemons, namespaces, lab directory), then
# check that nothing of this run is left: daemons recorded in $work/pids (still checked against
# their command line) get SIGKILL, namespaces of our tag are emptied and deleted. SIGINT is
# ignored from here on, by this shell and the commands it starts, so a second Ctrl-C cannot cut
# the cleanup short (SIGKILL still can). On Ctrl-C, bash runs the INT trap once the command in
# the foreground has ended (at most 15 s: every weft CLI call runs under `timeout`); the
# daemons, in the same process group, get the SIGINT too and shut down on their own.
cleanup() {
	local rc=$? pid h name pids=()
	trap - EXIT TERM
	trap '' INT
	mapfile -t pids < <(jobs -pr)
	((${#pids[@]} == 0)) || kill -TERM "${pids[@]}" 2>/dev/null || true
	if [[ -n $lab ]]; then
		say "removing the lab (lab.sh down)"
		lab_sh down 2>&1 | grep -v 'stopping daemon' >&2 || say "warning: lab.sh down failed"
	fi
	if [[ -n $work && -f $work/pids ]]; then
		while read -r pid h; do
			if pid_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$lab/$h/node.toml"; then
				say "warning: daemon $h (pid $pid) survived lab.sh down: SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
			fi
		done <"$work/pids"
	fi
	for name in $(our_namespaces | sort -r); do
		say "warning: namespace $name survived lab.sh down: deleting it"
		mapfile -t pids < <(ip netns pids "$name" 2>/dev/null)
		((${#pids[@]} == 0)) || kill -KILL "${pids[@]}" 2>/dev/null || true
		ip netns del "$name" 2>/dev/null || say "warning: could not delete namespace $name"
	done
	[[ -z $(our_namespaces) ]] || say "warning: namespaces of this run remain: $(our_namespaces | tr '\n' ' ')"
	if [[ -n $work && -d $work && $work == /tmp/weft-peers-rss-"$tag".* ]]; then rm -rf -- "$work"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ -z $(our_namespaces) ]] || die "namespaces tagged '$tag' already exist; not touching them"
work=$(mktemp -d "/tmp/weft-peers-rss-$tag.XXXXXX")
lab=$work/lab
# A private copy: a rebuild in the tree during the run does not change what is measured.
cp -- "$weft_src" "$work/weft"
readonly work lab weft=$work/weft sock=$work/lab/h1/weft.sock

# --- helpers --------------------------------------------------------------------------------

# h1_status: h1's `weft status --json` (bounded in time).
h1_status() { timeout 15 "$weft" status --socket "$sock" --json; }

# peer_names STATE_FILTER: names of h1's peers matching a jq condition on a peer, one a line.
peer_names() {
	local json
	json=$(h1_status) || return 1
	jq -r ".engine.peers[] | select($1) | .name" <<<"$json" | sort -u
}

# missing FILE: the expected peer names h2 … h<N+1> that are not in FILE, space-separated.
missing() {
	local i out=''
	for ((i = 2; i <= hosts; i++)); do
		grep -qx "h$i" "$1" || out+=" h$i"
	done
	printf '%s\n' "${out# }"
}

# count FILE: how many of the expected peer names FILE holds.
count() {
	local i c=0
	for ((i = 2; i <= hosts; i++)); do
		if grep -qx "h$i" "$1"; then c=$((c + 1)); fi
	done
	printf '%d\n' "$c"
}

# static_neighbours: a permanent ARP entry in every host for every other host's uplink
# 10.200.0.<k>. The kernel keeps one ARP table for all namespaces, and caps its dynamic
# entries, all namespaces together, at net.ipv4.neigh.default.gc_thresh3 (1024 by default).
# N hosts that all gossip with each other need N(N-1) entries, 10,100 for 101 hosts: past ~32
# hosts the table overflows ("neighbor table overflow!" in dmesg), ARP fails between random
# pairs, and members flap between alive and down without ever converging (seen with lab.sh
# alone). Permanent entries do not count against that cap, and they live in our namespaces,
# so nothing outside the lab changes. The daemons already run (lab.sh starts them), so the
# first second or two of gossip may still see a few failed ARPs; membership recovers.
static_neighbours() {
	local i k mac macs=()
	for ((i = 1; i <= hosts; i++)); do
		mac=$(ip -n "${tag}h$i" -br link show dev eth0 | awk '{print $3}')
		[[ $mac =~ ^[0-9a-f]{2}(:[0-9a-f]{2}){5}$ ]] || die "no MAC address on ${tag}h$i eth0 ('$mac')"
		macs[i]=$mac
	done
	for ((i = 1; i <= hosts; i++)); do
		for ((k = 1; k <= hosts; k++)); do
			if ((k != i)); then
				printf 'neigh replace 10.200.0.%d lladdr %s dev eth0 nud permanent\n' "$k" "${macs[k]}"
			fi
		done | ip -n "${tag}h$i" -batch - || die "could not add the static neighbours of ${tag}h$i"
	done
}

# kb FIELD PID: a /proc/PID/status field in kB ("VmRSS" …), empty if unavailable.
kb() { awk -v f="$1:" '$1 == f {print $2; exit}' "/proc/$2/status" 2>/dev/null || true; }

# mib KB / mb KB: kB (KiB) as MiB and as MB (10^6 bytes), one decimal.
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k * 1024 / 1e6}'; }

# h1_check: fail (with the end of its log) if h1's daemon is not running any more.
h1_check() {
	our_daemon_pid 1 >/dev/null && return 0
	tail -n 20 "$lab/h1/weft.log" >&2 2>/dev/null || true
	die "h1's daemon is not running any more (end of its log above)"
}

# --- the run --------------------------------------------------------------------------------

started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
t_start=$SECONDS
say "run $tag: $hosts hosts (h1 + $peers peers), 0 containers, membership $peers_mode; scratch $work"

# 1. The lab.
lab_sh up "$hosts" 0 || die "lab.sh up $hosts 0 failed (its messages above)"
static_neighbours
t_up=$((SECONDS - t_start))
for ((i = 1; i <= hosts; i++)); do
	pid=$(our_daemon_pid "$i") || die "daemon h$i is not running after lab.sh up (log: $lab/h$i/weft.log)"
	printf '%s h%d\n' "$pid" "$i" >>"$work/pids"
done
say "lab up in ${t_up} s (static underlay neighbours added); waiting up to ${converge_s} s for h1 to see all $peers peers alive"

# 2. Membership: h1 sees every other host alive.
t0=$SECONDS
deadline=$((SECONDS + converge_s))
next_report=$((SECONDS + 10))
while :; do
	h1_check
	if peer_names '.state == "alive"' >"$work/alive" 2>/dev/null; then
		alive=$(count "$work/alive")
		((alive < peers)) || break
	else
		alive='?'
	fi
	if ((SECONDS >= deadline)); then
		say "h1 sees $alive of $peers peers alive after ${converge_s} s; missing: $(missing "$work/alive")"
		h1_status 2>/dev/null | jq -c '.engine.peers[] | {name, state, connected}' 2>/dev/null | head -n 20 >&2 || true
		die "membership did not converge within ${converge_s} s (PEERS_RSS_CONVERGE; is there 'neighbor table overflow' in dmesg?)"
	fi
	if ((SECONDS >= next_report)); then
		say "  h1 sees $alive/$peers peers alive ($((SECONDS - t0)) s)"
		next_report=$((SECONDS + 10))
	fi
	sleep 1
done
t_converge=$((SECONDS - t0))
say "membership converged in ${t_converge} s: h1 sees all $peers peers alive"

# 3. Sessions: a `weft ping` to every peer from h1, again to those without a session, until
# h1's status shows a session with each or the deadline passes.
t0=$SECONDS
deadline=$((SECONDS + sessions_s))
: >"$work/answered"
todo=()
for ((i = 2; i <= hosts; i++)); do todo+=("h$i"); done
while :; do
	for p in "${todo[@]}"; do
		if out=$(timeout 15 "$weft" ping --socket "$sock" --count 1 --json "$p" 2>/dev/null) &&
			jq -e 'select(.rtt_ms != null)' <<<"$out" >/dev/null 2>&1; then
			printf '%s\n' "$p" >>"$work/answered"
		fi
		((SECONDS < deadline)) || break
	done
	h1_check
	peer_names '.connected == true' >"$work/sessions" 2>/dev/null || : >"$work/sessions"
	read -r -a todo <<<"$(missing "$work/sessions")"
	((${#todo[@]} > 0 && SECONDS < deadline)) || break
	say "  no session yet with ${#todo[@]} peers (${todo[*]:0:10}…): pinging them again"
	sleep 1
done
t_sessions=$((SECONDS - t0))
sort -u -o "$work/answered" "$work/answered"
answered=$(count "$work/answered")
sessions=$(count "$work/sessions")
say "h1 holds a session with $sessions/$peers peers after ${t_sessions} s ($answered answered a weft ping)"

# 4. Data-plane traffic: 3 ICMP echoes from h1's namespace to each peer's gateway 10.42.<i>.1
# (through h1's bridge, TAP and the tunnel), 20 peers at a time; bounded by ping -w.
: >"$work/icmp"
for ((i = 2; i <= hosts; i++)); do
	(ip netns exec "${tag}h1" ping -n -q -c 3 -i 0.2 -w 5 "10.42.$i.1" >/dev/null 2>&1 &&
		printf 'h%d\n' "$i" >>"$work/icmp") &
	if (((i - 1) % 20 == 0)); then wait; fi
done
wait
icmp=$(count "$work/icmp")
say "ICMP to peers' gateways: $icmp/$peers answered; settling ${settle_s} s before measuring"
sleep "$settle_s"

# 5. The measurement.
h1_check
pid1=$(our_daemon_pid 1)
peer_names '.state == "alive"' >"$work/alive" || die "h1's weft status does not answer"
peer_names '.connected == true' >"$work/sessions" || die "h1's weft status does not answer"
alive=$(count "$work/alive")
sessions=$(count "$work/sessions")
h1_rss=$(kb VmRSS "$pid1") h1_hwm=$(kb VmHWM "$pid1")
h1_anon=$(kb RssAnon "$pid1") h1_file=$(kb RssFile "$pid1") h1_threads=$(awk '$1 == "Threads:" {print $2}' "/proc/$pid1/status")
[[ -n $h1_rss && -n $h1_hwm ]] || die "could not read /proc/$pid1/status"
: >"$work/rss"
for ((i = 1; i <= hosts; i++)); do
	if pid=$(our_daemon_pid "$i") && r=$(kb VmRSS "$pid") && [[ -n $r ]]; then
		printf '%s h%d\n' "$r" "$i" >>"$work/rss"
	fi
done
measured=$(wc -l <"$work/rss")
sort -n -o "$work/rss" "$work/rss"
median=$(awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2)}' "$work/rss")
read -r max max_host < <(tail -n 1 "$work/rss")
read -r min min_host < <(head -n 1 "$work/rss")
total=$(awk '{s += $1} END {print s}' "$work/rss")

# --- the result -----------------------------------------------------------------------------

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
bq='`' # a Markdown backquote
{
	printf '\n## weft daemon RSS with %d peers, %s\n\n' "$peers" "$started"
	printf 'Command: %s%s%s  \n' "$bq" "$cmdline" "$bq"
	printf 'Machine: %s, %s cores, Linux %s; %s (%s)  \n' "${cpu_model:-unknown CPU}" "$(nproc)" \
		"$(uname -r)" "$("$weft" --version)" "$weft_src"
	printf 'Lab: netns-lab/lab.sh, %d hosts (h1 measured + %d peers), 0 containers, WEFT_LAB_PEERS=%s\n\n' \
		"$hosts" "$peers" "$peers_mode"
	printf '| measure | value |\n|---|---:|\n'
	printf '| h1 peers alive (membership) | %d / %d |\n' "$alive" "$peers"
	printf '| h1 peers with an encrypted session | %d / %d |\n' "$sessions" "$peers"
	printf '| h1 VmRSS | %s MiB (%s MB, %s kB) |\n' "$(mib "$h1_rss")" "$(mb "$h1_rss")" "$h1_rss"
	printf '| h1 VmHWM (peak) | %s MiB (%s MB, %s kB) |\n' "$(mib "$h1_hwm")" "$(mb "$h1_hwm")" "$h1_hwm"
	printf '| h1 RssAnon / RssFile | %s / %s MiB |\n' "$(mib "${h1_anon:-0}")" "$(mib "${h1_file:-0}")"
	printf '| h1 threads | %s |\n' "${h1_threads:-?}"
	printf '| VmRSS of all %d daemons: median | %s MiB |\n' "$measured" "$(mib "$median")"
	printf '| VmRSS of all %d daemons: min / max | %s MiB (%s) / %s MiB (%s) |\n' "$measured" \
		"$(mib "$min")" "$min_host" "$(mib "$max")" "$max_host"
	printf '| VmRSS of all %d daemons: sum | %s MiB |\n' "$measured" "$(mib "$total")"
	printf '\n'
	printf 'Sessions: h1 sent one %sweft ping%s (overlay probe through the encrypted session) to every\n' "$bq" "$bq"
	printf 'peer, %d answered; then 3 ICMP echoes from h1 to every peer'"'"'s gateway 10.42.<i>.1, %d/%d\n' "$answered" "$icmp" "$peers"
	printf 'answered; measured %d s later. Peers alive / with a session: h1'"'"'s %sweft status%s at measurement.\n' \
		"$settle_s" "$bq" "$bq"
	printf 'MiB = /proc kB / 1024, MB = 10^6 bytes. The other daemons hold sessions with h1 and whichever\n'
	printf 'others traffic made: their figures are context, h1 is the measured case.\n'
	printf 'Timings: lab up %d s, membership converged %d s, sessions %d s; run took %d s (before cleanup).\n' \
		"$t_up" "$t_converge" "$t_sessions" $((SECONDS - t_start))
}
if ((sessions < peers)); then
	say "error: h1 holds a session with only $sessions of $peers peers; missing: $(missing "$work/sessions")"
	exit 1
fi
