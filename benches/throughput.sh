#!/usr/bin/env bash
# benches/throughput.sh: weft's throughput next to the other ways of joining two hosts, measured
# side by side in one run (issue 8).
#
#   benches/throughput.sh [--quick] [--only CASES] [--profile]
#
#   --quick        1 × 3 s per iperf3 measurement and 50 pings (instead of median of 3 × 10 s
#                  and 200 pings): for trying the script out, not for numbers.
#   --only CASES   comma-separated subset of: veth,vxlan,vxlan-br,weft-aes,weft-chacha,weft-flood,
#                  weft-nooffload,weft-plain,weft-plain-rco,wg,boringtun,nebula
#                  (weft = weft-aes,weft-chacha)
#   --profile      record a system-wide CPU profile (perf, cpu-clock) of the first single-stream
#                  run of weft-aes, weft-chacha and weft-plain and print where each host's core spends
#                  its time
#
# Environment:
#   BENCH_PERF_DIR with --profile: keep the perf recordings (perf-<case>.data) in this folder
#   WEFT_BIN       the weft binary to measure; default: `cargo build --release` and use
#                  <repo>/target/release/weft (copied into the run's directory first)
#   BENCH_TIME     seconds per iperf3 run (overrides the mode's default)
#   BENCH_REPS     iperf3 runs per measurement, the median is reported (overrides the default)
#   BENCH_PINGS    pings per RTT measurement (overrides the default)
#   WEFT_OFFLOAD   true (default) or false: weft's TAP offloads in the weft-aes, weft-chacha
#                  and weft-flood cases (the weft-nooffload case always has them off)
#   WEFT_BUSY_POLL_US  weft's [underlay] busy_poll_us in every weft case (default 0)
#   BORINGTUN_THREADS  boringtun-cli's --threads (default 4, its own default)
#   BENCH_IPERF_ARGS   extra iperf3 client arguments for experiments (e.g. "-w 1M")
#   BENCH_GSO_SEGS     set the weft containers' eth0 gso_max_segs (experiments: superframe size)
#   BENCH_TCP_WMEM     net.ipv4.tcp_wmem of both iperf3 ends' namespaces, in every case
#                      (experiments: send buffer), e.g. "4096 16384 16777216"
#   FLOOD_BIN      the flooder of the weft-flood case; default: `cargo build --release
#                  --example flood` and use <target dir>/release/examples/flood
#   FLOOD_INIT_RATE, FLOOD_GARBAGE_RATE  the weft-flood case's initiations and garbage datagrams
#                  per second (default 5000 and 20000, as tests/flood_lab.rs)
#
# Needs root. Installs what it compares against from Debian if missing (iperf3,
# wireguard-tools + wireguard-go, nebula), and boringtun with `cargo install --locked
# boringtun-cli` if boringtun-cli is neither on PATH nor in ~/.cargo/bin; a reference that
# cannot be installed shows "n/a".
#
# weft encrypted has one row per session cipher: weft-aes sets `[underlay] cipher =
# "aes-256-gcm"` on both hosts, weft-chacha `"chacha20poly1305"`; each checks with `weft peers
# --json` on both hosts that the session really uses that cipher, else its row is "n/a" with
# what was negotiated. weft-flood and weft-nooffload keep the default `cipher = "auto"` (AES-256-GCM
# where the CPU has AES and PCLMULQDQ, ChaCha20-Poly1305 otherwise) and name what it chose.
#
# The lab (rebuilt from scratch for every transport, so no case sees another's leftovers):
#   <tag>a, <tag>b   two "hosts" joined by one veth pair <tag>ua <-> <tag>ub,
#                    underlay 10.201.0.1/24 and 10.201.0.2/24, MTU 1500.
#   <tag>ac, <tag>bc weft only: one container per host, attached with `weft attach`.
# Every process of host a (tunnel daemon, iperf3/ping end) runs on core 0 (`taskset -c 0`),
# every process of host b on core 1, so a run is one core per host and not bimodal.
#
# weft-flood is weft encrypted measured while host b's tunnel port is flooded (issue 15, item 7;
# tests/flood_lab.rs checks that a member still joins): from 10.201.0.201, XX initiations with
# a correct mac1 and a new sender index each ($FLOOD_INIT_RATE/s); from 10.201.0.202, random
# datagrams of 1..1400 bytes ($FLOOD_GARBAGE_RATE/s). Both addresses are extra addresses on
# host a's underlay veth, so they go with its namespace. The flooders (examples/flood, paced in
# 10 ms bursts, bounded in time, stopped with the case) run in host a's namespace on core 0:
# there is no third core, and on core 1 the attacker's own work (building and sending the
# datagrams, and the kernel's receive path to b's socket, which veth runs in the sender's
# context) would be charged to the host under attack. On core 0 they take from the sending
# host instead, so the row's loss is an upper bound of what the floods cost b; the flooders'
# CPU is printed with it, and so are the drop counters of b that show the floods arrived.
# iperf3 always uses `-C cubic`: the machine default bbr overflows userspace tunnels' socket
# buffers. Data flows a -> b; ping runs from a to b.
#
# Transports and their overlay MTU (underlay 1500):
#   raw veth        1500, no tunnel
#   kernel VXLAN    VNI 42, UDP 4789, 10.44.0.0/24; 1500 - 20 IP - 8 UDP - 8 VXLAN - 14 Eth = 1450;
#                   between the hosts' own namespaces (the reference every ratio is to)
#   kernel VXLAN, containers on a bridge (vxlan-br): the same, plumbed as Flannel and Docker's
#                   overlay do it and as weft's rows run: the VXLAN device on a bridge in each
#                   host, a container per host on it through a veth pair (MTU 1450)
#   weft encrypted  10.42.0.0/16; 1500 - 20 - 8 - 16 hdr - 16 tag - 4 inner hdr - 14 Eth = 1422
#                   (both ciphers have 16-byte tags: the same MTU for AES-256-GCM and ChaCha)
#   weft plain      encryption = "none" (RFC 7348 VXLAN, UDP 4789): 1450, as kernel VXLAN;
#                   weft-plain-rco adds remote_checksum = true (TCP segments leave with remote
#                   checksum offload, so the sender sums no payload)
#   wireguard-go    10.45.0.0/24; 1420 (WireGuard's default; 1500 - 20 - 8 - 32 = 1440 would fit)
#   boringtun       10.47.0.0/24; 1420, as wireguard-go, configured the same way with `wg`;
#                   its default 4 threads, on the host's one core: in quick runs here they
#                   beat `--threads 1` (1.1-1.3 against 0.7-0.9 Gbit/s), since one thread
#                   leaves the core idle while it waits (BORINGTUN_THREADS)
#   nebula          10.46.0.0/24; 1420 as WireGuard (its 60 bytes of overhead leave 1440;
#                   nebula's own default is 1300), static_host_map, no lighthouse, UDP 4242
#
# Columns: throughput is iperf3's receiver figure (median over the runs); ping avg/p99 over
# the pings; "daemon CPU s" is the user+system CPU time of both hosts' tunnel daemons together
# (/proc/PID/stat) per single-stream run; "RSS MB" is the larger VmRSS of the two daemons at
# the end. Kernel transports have no daemon.
set -euo pipefail
shopt -s nullglob

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cmdline="$0${*:+ $*}"
readonly here repo cmdline
readonly all_cases="veth vxlan vxlan-br weft-aes weft-chacha weft-flood weft-nooffload weft-plain weft-plain-rco wg boringtun nebula"

say() { printf 'throughput.sh: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}
# shellcheck source=benches/common.sh
source "$here/common.sh"
usage() {
	sed -n '4,10s/^#   //p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

# --- arguments ----------------------------------------------------------------------------

quick=0 profile=0
cases=$all_cases
while (($#)); do
	case $1 in
	--quick) quick=1 ;;
	--profile) profile=1 ;;
	--only)
		(($# >= 2)) || usage
		cases=${2//,/ }
		# `weft`, the one encrypted row before ciphers were negotiated: now one row per cipher.
		cases=$(sed -E 's/(^| )weft( |$)/\1weft-aes weft-chacha\2/g' <<<"$cases")
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
for c in $cases; do
	[[ " $all_cases " == *" $c "* ]] || die "unknown case '$c' (want: ${all_cases// /,})"
done
if ((quick)); then
	dur=${BENCH_TIME:-3} reps=${BENCH_REPS:-1} pings=${BENCH_PINGS:-50}
else
	dur=${BENCH_TIME:-10} reps=${BENCH_REPS:-3} pings=${BENCH_PINGS:-200}
fi
[[ $dur =~ ^[1-9][0-9]{0,2}$ && $reps =~ ^[1-9]$ && $pings =~ ^[1-9][0-9]{0,3}$ ]] ||
	die "BENCH_TIME must be 1..999, BENCH_REPS 1..9, BENCH_PINGS 1..9999"
flood_init_rate=${FLOOD_INIT_RATE:-5000} flood_garbage_rate=${FLOOD_GARBAGE_RATE:-20000}
[[ $flood_init_rate =~ ^[1-9][0-9]{0,5}$ && $flood_garbage_rate =~ ^[1-9][0-9]{0,5}$ ]] ||
	die "FLOOD_INIT_RATE and FLOOD_GARBAGE_RATE must be 1..999999 datagrams per second"
[[ ${BORINGTUN_THREADS:-4} =~ ^[1-9][0-9]?$ ]] || die "BORINGTUN_THREADS must be 1..99"
readonly quick cases dur reps pings profile flood_init_rate flood_garbage_rate

(($(id -u) == 0)) || die "must run as root (creates network namespaces)"
for c in ip taskset timeout awk sort getconf; do
	command -v "$c" >/dev/null || die "'$c' is not installed"
done

# --- installing the references ------------------------------------------------------------

declare -A skip=() # case -> why it cannot run
failed=()          # cases that were tried and failed (the run then exits with 3)
apt_updated=0

# candidate PKG: whether Debian offers PKG (after one `apt-get update` if it does not).
candidate() {
	local c
	c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
	if [[ -z $c || $c == "(none)" ]] && ((!apt_updated)); then
		apt_updated=1
		say "apt-get update (package $1 has no candidate)"
		apt-get update -qq >&2 || say "warning: apt-get update failed"
		c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
	fi
	[[ -n $c && $c != "(none)" ]]
}

# ensure PKG CMD...: install PKG unless every CMD is on PATH; fail if it cannot.
ensure() {
	local pkg=$1 c missing=0
	shift
	for c in "$@"; do command -v "$c" >/dev/null || missing=1; done
	((missing)) || return 0
	command -v apt-get >/dev/null || {
		say "$pkg is missing and there is no apt-get"
		return 1
	}
	candidate "$pkg" || {
		say "package $pkg is not available in this Debian release"
		return 1
	}
	say "installing $pkg"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >&2 || {
		say "apt-get install $pkg failed"
		return 1
	}
	for c in "$@"; do command -v "$c" >/dev/null || return 1; done
}

wanted() { [[ " $cases " == *" $1 "* ]]; }

ensure iperf3 iperf3 || die "iperf3 is needed and could not be installed"
ensure iputils-ping ping || die "ping is needed and could not be installed"
if wanted wg; then
	if ! ensure wireguard-tools wg; then
		skip[wg]="wireguard-tools (wg) could not be installed"
	elif ! ensure wireguard-go wireguard-go; then
		skip[wg]="Debian package wireguard-go is not available here"
	fi
fi
# boringtun_binary: prints boringtun-cli from PATH or ~/.cargo/bin, after `cargo install --locked
# boringtun-cli` if it is in neither; fails if it cannot be installed.
boringtun_binary() {
	local bin
	bin=$(command -v boringtun-cli) || bin=${CARGO_HOME:-$HOME/.cargo}/bin/boringtun-cli
	if [[ ! -x $bin ]]; then
		command -v cargo >/dev/null || {
			say "boringtun-cli is missing and there is no cargo to install it"
			return 1
		}
		say "installing boringtun (cargo install --locked boringtun-cli; a few minutes)"
		cargo install --locked boringtun-cli >&2 || {
			say "cargo install --locked boringtun-cli failed"
			return 1
		}
	fi
	[[ -x $bin ]] || return 1
	printf '%s\n' "$bin"
}

if wanted boringtun; then
	if ! ensure wireguard-tools wg; then
		skip[boringtun]="wireguard-tools (wg) could not be installed"
	elif ! boringtun_src=$(boringtun_binary); then
		skip[boringtun]="boringtun-cli could not be installed (cargo install --locked boringtun-cli)"
	fi
fi
if wanted nebula && ! ensure nebula nebula nebula-cert; then
	skip[nebula]="Debian package nebula could not be installed"
fi
if ((profile)) && ! ensure linux-perf perf; then
	say "warning: perf (Debian linux-perf) could not be installed: no profile"
fi

# jq reads `weft peers --json` (the negotiated cipher) and weft-flood's counters.
for c in weft-aes weft-chacha weft-flood weft-nooffload; do
	if wanted "$c" && ! ensure jq jq; then
		skip[$c]="jq (to read weft's peers and counters) could not be installed"
	fi
done

# flood_binary: prints the flooder of the weft-flood case: $FLOOD_BIN, or the example built by
# `cargo build --release --example flood` (never part of the weft binary).
flood_binary() {
	local bin
	if [[ -n ${FLOOD_BIN:-} ]]; then
		bin=$FLOOD_BIN
	else
		say "building the flooder (cargo build --release --example flood)"
		(cd "$repo" && cargo build --release --example flood) >&2 || die "cargo build --release --example flood failed"
		bin=${CARGO_TARGET_DIR:-$repo/target}/release/examples/flood
	fi
	[[ -x $bin ]] || die "flooder '$bin' is missing or not executable"
	printf '%s\n' "$bin"
}

if wanted weft-aes || wanted weft-chacha || wanted weft-flood || wanted weft-nooffload || wanted weft-plain || wanted weft-plain-rco; then
	weft_src=$(weft_binary)
fi
if wanted weft-flood && [[ -z ${skip[weft-flood]:-} ]]; then
	flood_src=$(flood_binary)
fi

# --- the run's names and its cleanup --------------------------------------------------------

tag=$(run_tag tp) # at most 6 bytes: names below are at most 9
readonly tag
readonly nsa=${tag}a nsb=${tag}b nsac=${tag}ac nsbc=${tag}bc
readonly ula=10.201.0.1 ulb=10.201.0.2
work=''
case_pid=''

# stop_pids PID...: SIGTERM, up to 5 s of grace, then SIGKILL. Only for PIDs this run started
# (daemons, recorded at launch) or found inside this run's own namespaces.
stop_pids() {
	local pid i alive
	(($#)) || return 0
	kill -TERM "$@" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		alive=0
		for pid in "$@"; do if pid_alive "$pid"; then alive=1; fi; done
		((alive)) || return 0
		sleep 0.1
	done
	say "pids $* ignored SIGTERM for 5 s: SIGKILL"
	kill -KILL "$@" 2>/dev/null || true
}

# our_namespaces: the namespaces of this run that exist (exact names only).
our_namespaces() {
	local name
	ip netns list 2>/dev/null | while read -r name _; do
		case $name in "$nsa" | "$nsb" | "$nsac" | "$nsbc") printf '%s\n' "$name" ;; esac
	done
}

# lab_down: stop this run's daemons (recorded in $work/daemons) with SIGTERM so they remove
# what they created, end anything else still running inside our namespaces, delete them.
lab_down() {
	local pid marker name pids=()
	if [[ -n $work && -f $work/daemons ]]; then
		while read -r pid marker; do
			# The marker (a path of this run or a tagged interface name) proves the PID is ours.
			if pid_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"; then
				pids+=("$pid")
			fi
		done <"$work/daemons"
		stop_pids "${pids[@]}"
		: >"$work/daemons"
	fi
	for name in $(our_namespaces | sort -r); do
		mapfile -t pids < <(ip netns pids "$name" 2>/dev/null)
		stop_pids "${pids[@]}"
		ip netns del "$name" 2>/dev/null || say "warning: could not delete namespace $name"
	done
	# wireguard-go and boringtun leave their UAPI sockets behind when they are killed.
	rm -f "/var/run/wireguard/${tag}wa.sock" "/var/run/wireguard/${tag}wb.sock" \
		"/var/run/wireguard/${tag}ta.sock" "/var/run/wireguard/${tag}tb.sock"
	if [[ -n $work && -f $work/made-wireguard-dir ]]; then rmdir /var/run/wireguard 2>/dev/null || true; fi
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $case_pid ]] && pid_alive "$case_pid"; then stop_pids "$case_pid"; fi
	lab_down
	[[ -n $(our_namespaces) ]] && say "warning: namespaces of this run remain: $(our_namespaces | tr '\n' ' ')"
	if [[ -n ${BENCH_PERF_DIR:-} && -n $work ]]; then
		mkdir -p "$BENCH_PERF_DIR" && cp -- "$work"/perf-*.data "$BENCH_PERF_DIR"/ 2>/dev/null || true
	fi
	if [[ -n $work && -d $work && $work == /tmp/weft-bench-"$tag".* ]]; then rm -rf -- "$work"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for c in "$nsa" "$nsb" "$nsac" "$nsbc"; do
	[[ -z $(ip netns list | awk -v n="$c" '$1 == n') ]] || die "namespace $c already exists; not touching it"
done
work=$(mktemp -d "/tmp/weft-bench-$tag.XXXXXX")
mkdir "$work/res"
: >"$work/daemons"
if [[ -n ${weft_src:-} ]]; then
	# A private copy: a rebuild in the tree during the run does not change what is measured.
	cp "$weft_src" "$work/weft"
fi
if [[ -n ${flood_src:-} ]]; then cp "$flood_src" "$work/flood"; fi
readonly work weft=$work/weft flood=$work/flood
hz=$(getconf CLK_TCK)
readonly hz

# --- the lab ------------------------------------------------------------------------------

# on HOST CMD...: run CMD in host namespace a or b (or container ac/bc), pinned to the host's core.
on() {
	local where=$1
	shift
	case $where in
	a) ip netns exec "$nsa" taskset -c 0 "$@" ;;
	b) ip netns exec "$nsb" taskset -c 1 "$@" ;;
	ac) ip netns exec "$nsac" taskset -c 0 "$@" ;;
	bc) ip netns exec "$nsbc" taskset -c 1 "$@" ;;
	*) die "bad place '$where'" ;;
	esac
}

lab_up() {
	ip netns add "$nsa"
	ip netns add "$nsb"
	ip -n "$nsa" link set lo up
	ip -n "$nsb" link set lo up
	ip -n "$nsa" link add "${tag}ua" mtu 1500 type veth peer name "${tag}ub" mtu 1500 netns "$nsb"
	ip -n "$nsa" addr add "$ula/24" dev "${tag}ua"
	ip -n "$nsb" addr add "$ulb/24" dev "${tag}ub"
	ip -n "$nsa" link set "${tag}ua" up
	ip -n "$nsb" link set "${tag}ub" up
	wait_ping a "$ulb" 10 || die "underlay veth does not answer ping"
}

# daemon WHERE MARKER LOG CMD...: start a tunnel daemon pinned in WHERE; prints its PID.
# `ip netns exec` and `taskset` exec in place, so $! ends up being the daemon itself.
daemon() {
	local where=$1 marker=$2 log=$3
	shift 3
	ip netns exec "$(ns_of "$where")" taskset -c "$(core_of "$where")" "$@" </dev/null >>"$log" 2>&1 &
	printf '%s %s\n' "$!" "$marker" >>"$work/daemons"
	printf '%s\n' "$!"
}

# wait_ping WHERE IP SECONDS: until one ping from WHERE to IP is answered.
wait_ping() {
	local deadline=$((SECONDS + $3))
	until on "$1" ping -n -q -c 1 -W 1 "$2" >/dev/null 2>&1; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

# wait_listen WHERE PORT: until a TCP listener on PORT exists in WHERE (10 s at most).
wait_listen() {
	local deadline=$((SECONDS + 10))
	until [[ -n $(on "$1" ss -Hltn "sport = :$2" 2>/dev/null) ]]; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

cpu_ticks() { # PID: utime + stime in clock ticks
	local stat f
	stat=$(<"/proc/$1/stat") || return 1
	read -ra f <<<"${stat##*) }"
	printf '%s\n' $((f[11] + f[12]))
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

median() { sort -g | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]}'; }

# iperf WHERE IP STREAMS: one iperf3 run, prints the receiver's Mbit/s.
iperf() {
	local out
	out=$(timeout -k 5 $((dur + 30)) ip netns exec "$(ns_of "$1")" taskset -c "$(core_of "$1")" \
		iperf3 -c "$2" -t "$dur" -C cubic -f m -P "$3" ${BENCH_IPERF_ARGS:-} --connect-timeout 5000 2>&1) || {
		say "error: iperf3 to $2 failed: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
		return 1
	}
	# The sender's retransmissions tell a lossy path (drops in a queue or socket buffer) from
	# a slow one.
	say "    retransmissions: $(awk '/sender/ {for (i = 2; i < NF; i++) if ($i == "Mbits/sec") r = $(i + 1)} END {print r}' <<<"$out")"
	awk '/receiver/ {for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") v = $(i - 1)} END {if (v == "") exit 1; print v}' <<<"$out"
}
ns_of() { case $1 in a) echo "$nsa" ;; b) echo "$nsb" ;; ac) echo "$nsac" ;; bc) echo "$nsbc" ;; esac }
core_of() { case $1 in a | ac) echo 0 ;; *) echo 1 ;; esac }

# measure CLIENT SERVER IP [DAEMON_PID...]: every measurement of one transport into $res.*
measure() {
	local cl=$1 sv=$2 ip=$3 srv i t0=0 t1=0 p out rss=0 r
	shift 3
	if [[ -n ${BENCH_TCP_WMEM:-} ]]; then
		ip netns exec "$(ns_of "$cl")" sysctl -qw net.ipv4.tcp_wmem="$BENCH_TCP_WMEM"
		ip netns exec "$(ns_of "$sv")" sysctl -qw net.ipv4.tcp_wmem="$BENCH_TCP_WMEM"
	fi
	ip netns exec "$(ns_of "$sv")" taskset -c "$(core_of "$sv")" iperf3 -s -p 5201 \
		</dev/null >"$work/iperf3-server.log" 2>&1 &
	srv=$!
	wait_listen "$sv" 5201 || die "iperf3 server did not start: $(cat "$work/iperf3-server.log")"

	for p in "$@"; do t0=$((t0 + $(cpu_ticks "$p"))); done
	local perf_pid=''
	if ((profile)) && [[ ${res##*/} == weft-aes || ${res##*/} == weft-chacha || ${res##*/} == weft-plain ]] && command -v perf >/dev/null; then
		# The whole machine (both host cores), sampled by the clock: this VM has no PMU.
		perf record -q -a -g -e cpu-clock -F 999 -o "$work/perf-${res##*/}.data" -- sleep "$dur" \
			>"$work/perf.log" 2>&1 &
		perf_pid=$!
	fi
	for ((i = 0; i < reps; i++)); do
		iperf "$cl" "$ip" 1 >>"$res.tcp1"
		say "  1 stream run $((i + 1))/$reps: $(tail -n 1 "$res.tcp1") Mbit/s"
		if [[ -n $perf_pid ]]; then
			wait "$perf_pid" || say "warning: perf record failed: $(tail -n 2 "$work/perf.log")"
			perf_pid=''
		fi
	done
	for p in "$@"; do t1=$((t1 + $(cpu_ticks "$p"))); done
	if (($#)); then
		awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$reps" 'BEGIN {printf "%.2f\n", t / hz / n}' >"$res.cpu"
	fi
	for ((i = 0; i < reps; i++)); do
		iperf "$cl" "$ip" 4 >>"$res.tcp4"
		say "  4 streams run $((i + 1))/$reps: $(tail -n 1 "$res.tcp4") Mbit/s"
	done
	stop_pids "$srv"

	out=$(timeout -k 5 $((pings / 50 + 30)) ip netns exec "$(ns_of "$cl")" taskset -c "$(core_of "$cl")" \
		ping -n -i 0.01 -W 1 -c "$pings" -w $((pings / 50 + 20)) "$ip" 2>&1) || true
	awk '/ time=/ {sub(/.*time=/, ""); print $1 * 1000}' <<<"$out" | sort -g >"$res.rtts"
	r=$(wc -l <"$res.rtts")
	((r > 0)) || die "no ping to $ip was answered"
	((r == pings)) || printf '%s of %s pings answered\n' "$r" "$pings" >>"$res.note"
	awk '{s += $1} END {printf "%.0f\n", s / NR}' "$res.rtts" >"$res.rtt_avg"
	awk -v n="$r" 'NR == int(n * 0.99 + 0.999) {printf "%.0f\n", $1}' "$res.rtts" >"$res.rtt_p99"
	say "  ping avg $(<"$res.rtt_avg") µs, p99 $(<"$res.rtt_p99") µs"
	# The same at 0.2 ms intervals: the cores never go idle, so this is the path's own latency
	# without the wake-ups of idle virtual CPUs that the 10 ms pings pay.
	out=$(timeout -k 5 30 ip netns exec "$(ns_of "$cl")" taskset -c "$(core_of "$cl")" \
		ping -n -i 0.0002 -W 1 -c 1000 -w 20 "$ip" 2>&1) || true
	awk '/ time=/ {sub(/.*time=/, ""); s += $1 * 1000; n++} END {if (n) printf "%.0f\n", s / n}' \
		<<<"$out" >"$res.rtt_fast"
	say "  ping at 0.2 ms intervals: avg $(cat "$res.rtt_fast") µs"

	for p in "$@"; do
		r=$(rss_kb "$p") || die "daemon $p is gone"
		if ((r > rss)); then rss=$r; fi
	done
	if (($#)); then awk -v k="$rss" 'BEGIN {printf "%.1f\n", k / 1024}' >"$res.rss"; fi
}

# --- the transports -------------------------------------------------------------------------

case_veth() {
	lab_up
	measure a b "$ulb"
}

# case_vxlan [bridged]: kernel VXLAN between the hosts' own namespaces (the reference row), or
# with "bridged" as container overlays plumb it (Flannel's and Docker's VXLAN): the VXLAN
# device on a bridge in each host, one container per host on that bridge through a veth pair,
# iperf3 and ping between the containers, as weft's rows run.
case_vxlan() {
	local bridged=${1:-} h me peer n
	lab_up
	for h in a b; do
		if [[ $h == a ]]; then me=$ula peer=$ulb n=1; else me=$ulb peer=$ula n=2; fi
		ip -n "$(ns_of "$h")" link add "${tag}vx" type vxlan id 42 dstport 4789 \
			local "$me" remote "$peer" dev "${tag}u$h"
		if [[ $bridged == bridged ]]; then
			ip -n "$(ns_of "$h")" link add "${tag}br" type bridge
			ip -n "$(ns_of "$h")" link set "${tag}vx" master "${tag}br"
			ip netns add "$(ns_of "${h}c")"
			ip -n "$(ns_of "${h}c")" link set lo up
			ip -n "$(ns_of "$h")" link add "${tag}c$h" mtu 1450 type veth peer name eth0 mtu 1450 \
				netns "$(ns_of "${h}c")"
			ip -n "$(ns_of "$h")" link set "${tag}c$h" master "${tag}br"
			ip -n "$(ns_of "${h}c")" addr add "10.44.0.$n/24" dev eth0
			ip -n "$(ns_of "${h}c")" link set eth0 up
			ip -n "$(ns_of "$h")" link set "${tag}c$h" up
			ip -n "$(ns_of "$h")" link set "${tag}br" up
		else
			ip -n "$(ns_of "$h")" addr add "10.44.0.$n/24" dev "${tag}vx"
		fi
		ip -n "$(ns_of "$h")" link set "${tag}vx" up
	done
	if [[ $bridged == bridged ]]; then
		wait_ping ac 10.44.0.2 10 || die "kernel VXLAN, bridged: 10.44.0.2 does not answer"
		measure ac bc 10.44.0.2
	else
		wait_ping a 10.44.0.2 10 || die "kernel VXLAN: 10.44.0.2 does not answer"
		measure a b 10.44.0.2
	fi
}

# case_weft MODE [OFFLOAD [flood]]: MODE is plain or, for an encrypted network, the
# `[underlay] cipher` of both hosts (auto, aes-256-gcm or chacha20poly1305); OFFLOAD is true
# (default) or false; with "flood", host b's tunnel port is flooded while the case measures
# (weft-flood).
case_weft() {
	local mode=$1 offload=${2:-${WEFT_OFFLOAD:-true}} flooded=${3:-} d=$work/case-${res##*/} h i peer_ul pa pb out ipb
	lab_up
	mkdir -p "$d"
	"$weft" ca init --name bench --out-key "$d/ca.key" --out-cert "$d/ca.crt" >/dev/null
	i=0
	for h in a b; do
		i=$((i + 1))
		mkdir -p "$d/$h/state"
		"$weft" keygen --out "$d/$h.key" >/dev/null
		"$weft" ca sign --ca-key "$d/ca.key" --ca-cert "$d/ca.crt" --name "$h" \
			--public-key-file "$d/$h.key.pub" --subnet "10.42.$i.0/24" --out "$d/$h.crt" >/dev/null
		if [[ $h == a ]]; then peer_ul=$ulb; else peer_ul=$ula; fi
		{
			cat <<-EOF
				# weft node $h for benches/throughput.sh ($mode)
				[node]
				name = "$h"
				key = "$d/$h.key"
				cert = "$d/$h.crt"
				ca = "$d/ca.crt"
				state_dir = "$d/$h/state"
				control_socket = "$d/$h/weft.sock"

				[underlay]
				listen = "10.201.0.$i:51820"
				workers = 1
				offload = $offload
				busy_poll_us = ${WEFT_BUSY_POLL_US:-0}
				$([[ $mode == plain* ]] || printf 'cipher = "%s"' "$mode")

				[[network]]
				name = "bench"
				vni = 42
				subnet = "10.42.0.0/16"
			EOF
			if [[ $mode == plain* ]]; then
				printf 'encryption = "none"\nremotes = ["%s"]\n' "$peer_ul"
				if [[ $mode == plain-rco ]]; then printf 'remote_checksum = true\n'; fi
			else
				printf '\n[membership]\nseeds = ["%s:51820"]\n' "$peer_ul"
			fi
		} >"$d/$h.toml"
	done
	pa=$(daemon a "$d/a.toml" "$d/a.log" env NO_COLOR=1 "$weft" run --config "$d/a.toml")
	pb=$(daemon b "$d/b.toml" "$d/b.log" env NO_COLOR=1 "$weft" run --config "$d/b.toml")
	for h in a b; do
		local deadline=$((SECONDS + 15)) p
		if [[ $h == a ]]; then p=$pa; else p=$pb; fi
		until "$weft" status --socket "$d/$h/weft.sock" >/dev/null 2>&1; do
			pid_alive "$p" || die "weft daemon $h exited at startup: $(tail -n 5 "$d/$h.log" | tr '\n' ' ')"
			((SECONDS < deadline)) || die "weft daemon $h did not answer 'weft status' within 15 s"
			sleep 0.1
		done
	done
	for h in a b; do
		ip netns add "$(ns_of "${h}c")"
		ip -n "$(ns_of "${h}c")" link set lo up
		out=$("$weft" attach --socket "$d/$h/weft.sock" --netns "$(ns_of "${h}c")" \
			--network bench --name "bench$h") || die "weft attach on host $h failed"
		out=$(tail -n 1 <<<"$out")
		out=${out%%/*}
		[[ $out =~ ^[0-9]+(\.[0-9]+){3}$ ]] || die "weft attach on host $h printed no address: '$out'"
		say "  container $h: $out (eth0 mtu $(ip -n "$(ns_of "${h}c")" -o link show eth0 | awk '{for (i = 1; i < NF; i++) if ($i == "mtu") print $(i + 1)}'))"
		if [[ $h == b ]]; then ipb=$out; fi
		if [[ -n ${BENCH_GSO_SEGS:-} ]]; then ip -n "$(ns_of "${h}c")" link set eth0 gso_max_segs "$BENCH_GSO_SEGS"; fi
	done
	wait_ping ac "$ipb" 30 || die "weft $mode: container b ($ipb) does not answer container a within 30 s"
	if [[ $mode != plain* ]]; then check_cipher "$d" "$mode"; fi
	if [[ $flooded == flood ]]; then flood_start "$d"; fi
	measure ac bc "$ipb" "$pa" "$pb"
	if [[ $flooded == flood ]]; then flood_stop "$d"; fi
}

# check_cipher D CONFIGURED: the cipher both hosts' `weft peers --json` show for their session
# with the other, into $res.cipher; fails unless both name the same one and, with CONFIGURED
# other than auto, that one.
check_cipher() {
	local d=$1 want=$2 h o got seen=()
	for h in a b; do
		if [[ $h == a ]]; then o=b; else o=a; fi
		got=$("$weft" peers --json --socket "$d/$h/weft.sock" |
			jq -r --arg o "$o" '.[] | select(.name == $o and .connected) | .cipher // empty') ||
			die "weft peers --json on host $h failed"
		[[ -n $got ]] || die "host $h shows no live session with $o after the containers pinged"
		seen+=("$got")
	done
	[[ ${seen[0]} == "${seen[1]}" ]] || die "the hosts disagree on the session cipher: a says ${seen[0]}, b ${seen[1]}"
	[[ $want == auto || ${seen[0]} == "$want" ]] ||
		die "cipher = \"$want\" on both hosts, but the session negotiated ${seen[0]}"
	printf '%s\n' "${seen[0]}" >"$res.cipher"
	say "  session cipher: ${seen[0]} (configured: $want; both hosts agree)"
}

# The counters of host b that show where the floods went (`weft status --json`, engine.counters).
readonly flood_counters="drop_unknown_type drop_handshake_size drop_handshake_rate drop_preauth_queue_full
pending_source_full pending_full cookies_sent bad_mac1 malformed noise"
readonly flood_init_src=10.201.0.201 flood_garbage_src=10.201.0.202
flood_pids=() flood_t0=0

# flood_start D: the two flooders of weft-flood at host b's tunnel port, from two extra
# addresses on host a's underlay veth, in host a's namespace on core 0 (see the header).
flood_start() {
	local d=$1 bound p
	# Only a backstop (they are stopped with the case): every iperf3 run with its start-up and
	# the pings, with a minute to spare.
	bound=$((2 * reps * (dur + 10) + pings / 50 + 60))
	ip -n "$nsa" addr add "$flood_init_src/32" dev "${tag}ua"
	ip -n "$nsa" addr add "$flood_garbage_src/32" dev "${tag}ua"
	"$weft" status --json --socket "$d/b/weft.sock" >"$d/b-before.json"
	flood_t0=$(date +%s%N)
	flood_pids=(
		"$(daemon a "$flood" "$d/flood-init.log" "$flood" --to "$ulb:51820" --bind "$flood_init_src" \
			--kind init --ca "$d/ca.crt" --rate "$flood_init_rate" --seconds "$bound")"
		"$(daemon a "$flood" "$d/flood-garbage.log" "$flood" --to "$ulb:51820" --bind "$flood_garbage_src" \
			--kind garbage --rate "$flood_garbage_rate" --seconds "$bound")"
	)
	# As flood_lab: let the floods fill what they can fill before anything is measured.
	sleep 2
	for p in "${flood_pids[@]}"; do
		pid_alive "$p" || die "a flooder ended at startup: $(cat "$d"/flood-*.log | tr '\n' ' ')"
	done
	say "  flooding $ulb:51820: initiations $flood_init_rate/s from $flood_init_src, garbage $flood_garbage_rate/s from $flood_garbage_src (core 0)"
}

# flood_sent LOG: "N (R/s)" from a flooder's last line, "flood KIND: SRC -> DST: N datagrams
# sent (M attempted) in T s, R/s".
flood_sent() { awk '$1 == "flood" {print $6 " (" $14 ")"}' "$1"; }

# flood_stop D: stops the flooders and writes into $res.flood what they sent, what CPU they
# took and what host b counted meanwhile; fails if b did not count both floods.
flood_stop() {
	local d=$1 p ticks=0 secs n before after deltas=()
	for p in "${flood_pids[@]}"; do
		pid_alive "$p" || die "a flooder ended before the case did: $(cat "$d"/flood-*.log | tr '\n' ' ')"
		ticks=$((ticks + $(cpu_ticks "$p")))
	done
	secs=$(awk -v a="$flood_t0" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f\n", (b - a) / 1e9}')
	stop_pids "${flood_pids[@]}"
	flood_pids=()
	"$weft" status --json --socket "$d/b/weft.sock" >"$d/b-after.json"
	for n in $flood_counters; do
		before=$(jq -r ".engine.counters.$n // empty" "$d/b-before.json")
		after=$(jq -r ".engine.counters.$n // empty" "$d/b-after.json")
		[[ $before =~ ^[0-9]+$ && $after =~ ^[0-9]+$ ]] || die "host b's status has no counter $n"
		deltas+=("$n +$((after - before))")
		printf '%s %s\n' "$n" $((after - before)) >>"$res.flood-counters"
	done
	{
		printf 'in %s s the flooders sent %s initiations from %s and %s garbage datagrams from %s,' \
			"$secs" "$(flood_sent "$d/flood-init.log")" "$flood_init_src" "$(flood_sent "$d/flood-garbage.log")" "$flood_garbage_src"
		awk -v t="$ticks" -v hz="$hz" -v s="$secs" \
			'BEGIN {printf " taking %.2f CPU s per s of core 0 (host a'"'"'s);", t / hz / s}'
		printf ' host b counted %s\n' "$(printf '%s, ' "${deltas[@]}" | sed 's/, $//')"
	} >"$res.flood"
	say "  under flood: $(<"$res.flood")"
	awk '$1 == "drop_unknown_type" && $2 > 0 {g = 1} $1 == "drop_handshake_rate" && $2 > 0 {i = 1}
		END {exit !(g && i)}' "$res.flood-counters" ||
		die "host b did not count both floods (drop_unknown_type for garbage, drop_handshake_rate for initiations)"
}

# wg_tunnel IMPL: two userspace WireGuard daemons, IMPL wireguard-go or boringtun, configured
# alike with `wg` through their UAPI sockets (/var/run/wireguard/<interface>.sock), and measured.
wg_tunnel() {
	local impl=$1 d=$work/${res##*/} h i pa pb letter net
	case $impl in
	wireguard-go) letter=w net=10.45.0 ;;
	boringtun) letter=t net=10.47.0 ;;
	*) die "bad WireGuard implementation '$impl'" ;;
	esac
	lab_up
	mkdir -p "$d"
	for h in a b; do
		(umask 077 && wg genkey >"$d/$h.key")
		wg pubkey <"$d/$h.key" >"$d/$h.pub"
	done
	if [[ ! -d /var/run/wireguard ]]; then
		mkdir -p /var/run/wireguard
		: >"$work/made-wireguard-dir"
	fi
	for h in a b; do
		local ifname=${tag}$letter$h p
		if [[ $impl == wireguard-go ]]; then
			p=$(daemon "$h" "$ifname" "$d/$h.log" env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error wireguard-go -f "$ifname")
		else
			# Pinned to the host's core like every daemon, with its own default thread count (see
			# the header). It stays root (no sudo user to drop to) and logs to stderr.
			p=$(daemon "$h" "$ifname" "$d/$h.log" "$boringtun_src" --foreground --threads "${BORINGTUN_THREADS:-4}" \
				--disable-drop-privileges --verbosity error "$ifname")
		fi
		if [[ $h == a ]]; then pa=$p; else pb=$p; fi
	done
	i=0
	for h in a b; do
		i=$((i + 1))
		local deadline=$((SECONDS + 10)) p o peer_ul ifname=${tag}$letter$h
		if [[ $h == a ]]; then p=$pa o=b peer_ul=$ulb; else p=$pb o=a peer_ul=$ula; fi
		until [[ -S /var/run/wireguard/$ifname.sock ]]; do
			pid_alive "$p" || die "$impl $h exited at startup: $(tail -n 5 "$d/$h.log" | tr '\n' ' ')"
			((SECONDS < deadline)) || die "$impl $h did not create its socket within 10 s"
			sleep 0.1
		done
		ip netns exec "$(ns_of "$h")" wg set "$ifname" private-key "$d/$h.key" listen-port 51821 \
			peer "$(<"$d/$o.pub")" allowed-ips "$net.$((3 - i))/32" endpoint "$peer_ul:51821"
		ip -n "$(ns_of "$h")" addr add "$net.$i/24" dev "$ifname"
		ip -n "$(ns_of "$h")" link set "$ifname" mtu 1420 up
	done
	wait_ping a "$net.2" 15 || die "$impl: $net.2 does not answer"
	measure a b "$net.2" "$pa" "$pb"
}

case_wg() { wg_tunnel wireguard-go; }
case_boringtun() { wg_tunnel boringtun; }

case_nebula() {
	local d=$work/nebula h i pa pb
	lab_up
	mkdir -p "$d"
	nebula-cert ca -name bench -out-crt "$d/ca.crt" -out-key "$d/ca.key" >/dev/null
	i=0
	for h in a b; do
		i=$((i + 1))
		local peer_ul peer_ov
		if [[ $h == a ]]; then peer_ul=$ulb peer_ov=10.46.0.2; else peer_ul=$ula peer_ov=10.46.0.1; fi
		nebula-cert sign -ca-crt "$d/ca.crt" -ca-key "$d/ca.key" -name "$h" -ip "10.46.0.$i/24" \
			-out-crt "$d/$h.crt" -out-key "$d/$h.key" >/dev/null
		cat >"$d/$h.yml" <<-EOF
			# nebula host $h for benches/throughput.sh
			pki:
			  ca: $d/ca.crt
			  cert: $d/$h.crt
			  key: $d/$h.key
			static_host_map:
			  "$peer_ov": ["$peer_ul:4242"]
			lighthouse:
			  am_lighthouse: false
			  hosts: []
			listen:
			  host: 10.201.0.$i
			  port: 4242
			punchy:
			  punch: false
			tun:
			  disabled: false
			  dev: ${tag}n$h
			  mtu: 1420
			logging:
			  level: warning
			firewall:
			  outbound:
			    - port: any
			      proto: any
			      host: any
			  inbound:
			    - port: any
			      proto: any
			      host: any
		EOF
	done
	pa=$(daemon a "$d/a.yml" "$d/a.log" nebula -config "$d/a.yml")
	pb=$(daemon b "$d/b.yml" "$d/b.log" nebula -config "$d/b.yml")
	for h in a b; do
		local deadline=$((SECONDS + 10)) p
		if [[ $h == a ]]; then p=$pa; else p=$pb; fi
		until ip -n "$(ns_of "$h")" link show "${tag}n$h" >/dev/null 2>&1; do
			pid_alive "$p" || die "nebula $h exited at startup: $(tail -n 5 "$d/$h.log" | tr '\n' ' ')"
			((SECONDS < deadline)) || die "nebula $h did not create its tun device within 10 s"
			sleep 0.1
		done
	done
	wait_ping a 10.46.0.2 20 || die "nebula: 10.46.0.2 does not answer"
	measure a b 10.46.0.2 "$pa" "$pb"
}

# run_case NAME: one transport in a subshell of its own (errexit on, its own cleanup), so a
# failing transport becomes "n/a" with the reason instead of ending the whole run.
run_case() {
	local name=$1 rc fn
	case $name in
	weft-aes) fn="case_weft aes-256-gcm" ;;
	weft-chacha) fn="case_weft chacha20poly1305" ;;
	weft-flood) fn="case_weft auto ${WEFT_OFFLOAD:-true} flood" ;;
	weft-nooffload) fn="case_weft auto false" ;;
	weft-plain) fn="case_weft plain" ;;
	weft-plain-rco) fn="case_weft plain-rco" ;;
	vxlan-br) fn="case_vxlan bridged" ;;
	*) fn=case_$name ;;
	esac
	say "=== $name"
	(
		set -Eeuo pipefail
		trap 'say "error: failed: $BASH_COMMAND"' ERR
		trap 'lab_down' EXIT
		trap 'exit 130' INT
		trap 'exit 143' TERM
		res=$work/res/$name
		# shellcheck disable=SC2086 # "case_weft auto" is a function and its argument
		$fn
	) 2> >(tee "$work/res/$name.log" >&2) &
	case_pid=$!
	rc=0
	wait "$case_pid" || rc=$?
	case_pid=''
	if ((rc != 0)); then
		skip[$name]=$(grep -o 'error: .*' "$work/res/$name.log" | head -n 1 | cut -c 8-)
		[[ -n ${skip[$name]} ]] || skip[$name]="failed (exit $rc)"
		skip[$name]=$(tr '|' '/' <<<"${skip[$name]}" | sed 's/ *$//')
		failed+=("$name")
		say "$name: n/a: ${skip[$name]}"
	fi
}

# --- the run ------------------------------------------------------------------------------

started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
t_start=$SECONDS
say "run $tag: $cases; iperf3 ${reps} × ${dur} s, $pings pings; scratch $work"
for c in $all_cases; do
	wanted "$c" || continue
	[[ -z ${skip[$c]:-} ]] || {
		say "=== $c: n/a: ${skip[$c]}"
		continue
	}
	run_case "$c"
done
# Let the tee of the last case flush before the table.
sleep 0.2

# --- the table ----------------------------------------------------------------------------

label() {
	case $1 in
	veth) echo "raw veth" ;;
	vxlan) echo "kernel VXLAN" ;;
	weft-aes) echo "weft encrypted, AES-256-GCM" ;;
	weft-chacha) echo "weft encrypted, ChaCha20-Poly1305" ;;
	weft-flood) echo "weft encrypted under flood (cipher auto$(auto_chose weft-flood))" ;;
	weft-nooffload) echo "weft encrypted, offloads off (cipher auto$(auto_chose weft-nooffload))" ;;
	weft-plain) echo "weft plain (VXLAN)" ;;
	weft-plain-rco) echo "weft plain (VXLAN), remote checksum offload" ;;
	vxlan-br) echo "kernel VXLAN, containers on a bridge" ;;
	wg) echo "wireguard-go" ;;
	boringtun) echo "boringtun" ;;
	nebula) echo "nebula" ;;
	esac
}
get() { [[ -s $work/res/$1.$2 ]] && cat "$work/res/$1.$2"; }
auto_chose() { # CASE: ": <cipher>" that CASE's `cipher = "auto"` negotiated, if it got that far
	local c
	if c=$(get "$1" cipher); then printf ': %s' "$c"; fi
}
cipher_case() { # CIPHER: the weft row that measured it with the same settings otherwise
	case $1 in aes-256-gcm) echo weft-aes ;; chacha20poly1305) echo weft-chacha ;; *) return 1 ;; esac
}
gbit() { # CASE METRIC: median Gbit/s
	local m
	m=$(median <"$work/res/$1.$2") && [[ -n $m ]] && awk -v m="$m" 'BEGIN {printf "%.2f\n", m / 1000}'
}
ratio() { # A B -> A/B
	[[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f×\n", a / b; else exit 1}'
}

# profile_summary: per host core, the share of each program and the hottest symbols, from the
# perf record of CASE's (weft-aes, weft-chacha or weft-plain) first single-stream run.
profile_summary() {
	local c=$1 cpu host
	printf '\n### Where the time goes: %s, first single-stream run (perf, cpu-clock)\n' "$(label "$c")"
	for cpu in 0 1; do
		if ((cpu == 0)); then host="a (sender)"; else host="b (receiver)"; fi
		printf '\nCore %s, host %s: share of samples by thread, then the hottest symbols\n\n```\n' "$cpu" "$host"
		perf report -i "$work/perf-$c.data" --cpu "$cpu" --no-children --sort comm --stdio -g none 2>/dev/null |
			awk '/^ +[0-9.]+%/ && n < 4 {print; n++}'
		perf report -i "$work/perf-$c.data" --cpu "$cpu" --no-children --sort comm,sym --stdio -g none 2>/dev/null |
			awk '/^ +[0-9.]+%/ && n < 15 {sub(/ +$/, ""); print substr($0, 1, 110); n++}'
		printf '```\n'
	done
}

declare -A g1=()
for c in $all_cases; do
	if [[ -s $work/res/$c.tcp1 && -z ${skip[$c]:-} ]]; then g1[$c]=$(gbit "$c" tcp1); fi
done

kernel_version=$(uname -r)
# What `cipher = "auto"` looks at (the daemon asks the CPU; these are the kernel's names).
aes_flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'aes|vaes|pclmulqdq|vpclmulqdq' | tr '\n' ' ' | sed 's/ $//')
if grep -m1 '^flags' /proc/cpuinfo | grep -qw aes && grep -m1 '^flags' /proc/cpuinfo | grep -qw pclmulqdq; then
	aes_flags="hardware AES: ${aes_flags}"
else
	aes_flags="no hardware AES${aes_flags:+ (${aes_flags})}: AES-256-GCM runs in software"
fi
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
weft_version=''
[[ -x $weft ]] && weft_version=$("$weft" --version 2>/dev/null || true)
{
	printf '\n## weft throughput, %s\n\n' "$started"
	printf 'Command: %s%s%s  \n' '`' "$cmdline" '`'
	printf 'Machine: %s (%s), %s cores, Linux %s; %s; iperf3 %s × %s s (median), %s pings at 10 ms; load average at the end %s\n' \
		"${cpu_model:-unknown CPU}" "$aes_flags" "$(nproc)" "$kernel_version" "${weft_version:-weft not measured}" \
		"$reps" "$dur" "$pings" "$(cut -d' ' -f1-3 /proc/loadavg)"
	refs=()
	if wanted wg && [[ -z ${skip[wg]:-} ]]; then refs+=("$(wireguard-go --version 2>/dev/null | head -n 1)"); fi
	if wanted boringtun && [[ -z ${skip[boringtun]:-} ]]; then refs+=("$("$boringtun_src" --version 2>/dev/null) (--threads ${BORINGTUN_THREADS:-4})"); fi
	if ((${#refs[@]})); then printf 'References: %s\n' "$(printf '%s; ' "${refs[@]}" | sed 's/; $//')"; fi
	printf '\n| transport | TCP 1 stream Gbit/s | TCP 4 streams Gbit/s | ping avg µs | ping p99 µs | ping avg µs, 0.2 ms interval | daemon CPU s | Gbit per daemon CPU s | RSS MB | ratio to kernel VXLAN (1 stream) | ratio to boringtun (1 stream) | ratio to wireguard-go (1 stream) |\n'
	printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
	for c in $all_cases; do
		wanted "$c" || continue
		if [[ -n ${skip[$c]:-} ]]; then
			printf '| %s | n/a: %s | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |\n' "$(label "$c")" "${skip[$c]}"
			continue
		fi
		case $c in veth | vxlan | vxlan-br) cpu=kernel rss=kernel eff=kernel ;; *)
			cpu=$(get "$c" cpu || echo n/a) rss=$(get "$c" rss || echo n/a)
			eff=$(awk -v g="${g1[$c]:-}" -v c="$cpu" -v t="$dur" \
				'BEGIN {if (g != "" && c + 0 > 0) printf "%.1f\n", g * t / c; else print "n/a"}')
			;;
		esac
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$c")" \
			"${g1[$c]:-n/a}" "$(gbit "$c" tcp4 || echo n/a)" \
			"$(get "$c" rtt_avg || echo n/a)" "$(get "$c" rtt_p99 || echo n/a)" \
			"$(get "$c" rtt_fast || echo n/a)" "$cpu" "$eff" "$rss" \
			"$(ratio "${g1[$c]:-}" "${g1[vxlan]:-}" || echo n/a)" \
			"$(ratio "${g1[$c]:-}" "${g1[boringtun]:-}" || echo n/a)" \
			"$(ratio "${g1[$c]:-}" "${g1[wg]:-}" || echo n/a)"
	done
	printf '\n'
	printf 'Throughput: iperf3 -C cubic receiver rate, a -> b, one core per host (taskset). Daemon CPU s:\n'
	printf 'user+system CPU of both hosts'"'"' daemons per %s s single-stream run (kernel work done in their\n' "$dur"
	printf 'context included); Gbit per daemon CPU s = 1-stream Gbit/s × %s s / that. RSS: the larger VmRSS of the two.\n' "$dur"
	if [[ -n ${g1[weft-aes]:-} && -n ${g1[weft-chacha]:-} ]]; then
		printf 'weft AES-256-GCM over ChaCha20-Poly1305 in this run: 1 stream %s, 4 streams %s; daemon CPU s %s vs %s.\n' \
			"$(ratio "${g1[weft-aes]}" "${g1[weft-chacha]}" || echo n/a)" \
			"$(ratio "$(gbit weft-aes tcp4)" "$(gbit weft-chacha tcp4)" || echo n/a)" \
			"$(get weft-aes cpu || echo n/a)" "$(get weft-chacha cpu || echo n/a)"
	fi
	for c in weft-aes weft-chacha weft-flood weft-plain weft-plain-rco; do
		a=$(get "$c" rtt_avg) || continue
		v=$(get veth rtt_avg) || continue
		pa=$(get "$c" rtt_p99) || continue
		pv=$(get veth rtt_p99) || continue
		printf 'Added ping RTT of %s over raw veth: avg %+d µs, p99 %+d µs' "$(label "$c")" $((a - v)) $((pa - pv))
		if fa=$(get "$c" rtt_fast) && fv=$(get veth rtt_fast); then
			printf '; at 0.2 ms intervals avg %+d µs' $((fa - fv))
		fi
		printf '.\n'
	done
	if [[ -z ${skip[weft-flood]:-} ]] && flood_note=$(get weft-flood flood); then
		# Compared with the row of the cipher that weft-flood's `auto` chose.
		ref=$(cipher_case "$(get weft-flood cipher)") || ref=none
		printf 'Under flood (initiations %s/s, garbage %s/s at host b'"'"'s tunnel port): 1 stream %s, 4 streams %s of %s in this run;\n%s.\n' \
			"$flood_init_rate" "$flood_garbage_rate" \
			"$(ratio "${g1[weft-flood]:-}" "${g1[$ref]:-}" || echo "n/a")" \
			"$(ratio "$(gbit weft-flood tcp4)" "$(gbit "$ref" tcp4 2>/dev/null)" || echo "n/a")" \
			"$(if [[ $ref == none ]]; then echo "weft encrypted"; else label "$ref"; fi)" "$flood_note"
	fi
	for c in $all_cases; do
		if [[ -s $work/res/$c.note ]]; then printf 'Note (%s): %s\n' "$(label "$c")" "$(tr '\n' ' ' <"$work/res/$c.note")"; fi
	done
	printf 'Run took %d s.\n' $((SECONDS - t_start))
	for c in weft-aes weft-chacha weft-plain; do
		if [[ -s $work/perf-$c.data ]]; then profile_summary "$c"; fi
	done
}
if ((${#failed[@]})); then
	say "failed: ${failed[*]} (see the table)"
	exit 3
fi
