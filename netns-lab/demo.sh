#!/usr/bin/env bash
# netns-lab/demo.sh: weft's main job, shown end to end on one machine.
#
# Installs the lab tools, builds the release binary, builds a lab of 3 hosts with 2 containers
# each (netns-lab/lab.sh up 3 2), pings every container from every other one across the
# encrypted overlay, runs one TCP transfer between containers on different hosts, and prints a
# summary with a text topology, and serves h1's status page at http://127.0.0.1:9571/
# (lab.sh ui). Exits non-zero if any ping or the transfer fails. The lab stays up for inspection;
# remove it with netns-lab/lab.sh down. Needs root. WEFT_BIN and WEFT_LAB_DIR are passed on to
# lab.sh; WEFT_DEMO_TCP=socat forces the socat transfer even when iperf3 is there.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
lab=$here/lab.sh
shown_lab=${lab#"$PWD"/}
readonly here repo lab shown_lab
readonly hosts=3 containers=2 port=5201

tmp=$(mktemp -d /tmp/weft-demo.XXXXXX)
cleanup() {
	local pid
	# Our own background jobs (a transfer's server) that are still running, by PID.
	for pid in $(jobs -pr); do kill "$pid" 2>/dev/null || true; done
	rm -rf -- "$tmp"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "dependencies"
bash "$repo/scripts/install-deps.sh" --no-rust
if [[ -z ${WEFT_BIN:-} ]]; then
	step "cargo build --release"
	(cd "$repo" && cargo build --release)
fi

step "lab.sh up $hosts $containers"
"$lab" up "$hosts" "$containers"

names=()
declare -A addr
for ((i = 1; i <= hosts; i++)); do
	for ((j = 1; j <= containers; j++)); do
		names+=("h${i}c$j")
		addr[h${i}c$j]=$("$lab" ip "h${i}c$j")
	done
done

# --- every container pings every other one -------------------------------------------------
step "pinging every container pair (ping -c 3 -i 0.2)"
declare -A cell
failed=0
for from in "${names[@]}"; do
	for to in "${names[@]}"; do
		[[ $from != "$to" ]] || continue
		if out=$("$lab" exec "$from" ping -n -q -c 3 -i 0.2 -W 2 "${addr[$to]}" 2>&1); then
			# rtt min/avg/max/mdev = 0.051/0.062/0.075/0.010 ms
			cell[$from,$to]=$(sed -n 's|^rtt [^=]*= [0-9.]*/\([0-9.]*\)/.*|\1|p' <<<"$out")
			grep -q ' 0% packet loss' <<<"$out" || cell[$from,$to]+='*'
		else
			cell[$from,$to]=FAIL
			failed=$((failed + 1))
			printf 'ping %s -> %s (%s) failed:\n%s\n' "$from" "$to" "${addr[$to]}" "$out"
		fi
	done
done

# --- TCP between containers on different hosts --------------------------------------------
client=h1c1 server=h2c1
srv=${addr[$server]}
tcp_ok=0

wait_listening() {
	local i
	for ((i = 0; i < 50; i++)); do
		[[ -z $("$lab" exec "$server" ss -Hltn "sport = :$port") ]] || return 0
		sleep 0.1
	done
	echo "nothing listens on $srv:$port in $server" >&2
	return 1
}

tcp_iperf3() {
	local server_pid
	"$lab" exec "$server" timeout 30 iperf3 -s -1 -B "$srv" -p "$port" \
		>"$tmp/server.log" 2>&1 &
	server_pid=$!
	wait_listening || return 1
	if ! "$lab" exec "$client" timeout 30 iperf3 -c "$srv" -p "$port" -t 3 -f m \
		>"$tmp/client.log" 2>&1; then
		cat "$tmp/client.log" "$tmp/server.log"
		return 1
	fi
	wait "$server_pid" || true
	cat "$tmp/client.log"
	# [  5]   0.00-3.00   sec   1.23 GBytes  3521 Mbits/sec                  receiver
	tcp_result=$(awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") v = $(i - 1) }
		END { if (v != "") print v " Mbit/s (iperf3, 3 s)" }' "$tmp/client.log")
	[[ -n $tcp_result ]]
}

tcp_socat() {
	local sent got start end server_pid
	head -c 50M /dev/urandom >"$tmp/sent"
	sent=$(sha256sum <"$tmp/sent")
	"$lab" exec "$server" timeout 60 socat -u "TCP-LISTEN:$port,bind=$srv,reuseaddr" \
		"OPEN:$tmp/received,creat,trunc" >"$tmp/server.log" 2>&1 &
	server_pid=$!
	wait_listening || return 1
	start=$(date +%s.%N)
	"$lab" exec "$client" timeout 60 socat -u "OPEN:$tmp/sent" "TCP:$srv:$port" || return 1
	wait "$server_pid" || {
		cat "$tmp/server.log"
		return 1
	}
	end=$(date +%s.%N)
	got=$(sha256sum <"$tmp/received")
	if [[ $got != "$sent" ]]; then
		echo "sha256 mismatch: sent ${sent%% *}, received ${got%% *}" >&2
		return 1
	fi
	tcp_result=$(awk -v s="$start" -v e="$end" \
		'BEGIN { printf "%.0f Mbit/s (socat, 50 MiB, sha256 verified)", 50 * 1048576 * 8 / (e - s) / 1e6 }')
}

tcp_result=''
if [[ ${WEFT_DEMO_TCP:-} != socat ]] && command -v iperf3 >/dev/null; then
	step "TCP: iperf3 from $client to $server ($srv), 3 s"
	if tcp_iperf3; then tcp_ok=1; fi
else
	step "TCP: 50 MiB from $client to $server ($srv) with socat"
	if tcp_socat; then tcp_ok=1; fi
fi

# --- summary ------------------------------------------------------------------------------
step "lab"
"$lab" status

step "ping matrix: average RTT in ms over 3 pings (row pings column; * = some replies lost)"
printf '%-9s' 'from\to'
for to in "${names[@]}"; do printf '%9s' "$to"; done
printf '\n'
for from in "${names[@]}"; do
	printf '%-9s' "$from"
	for to in "${names[@]}"; do
		if [[ $from == "$to" ]]; then printf '%9s' '-'; else printf '%9s' "${cell[$from,$to]}"; fi
	done
	printf '\n'
done

step "TCP throughput"
if ((tcp_ok)); then
	printf '%s (%s) -> %s (%s): %s\n' "$client" "${addr[$client]}" "$server" "$srv" "$tcp_result"
else
	printf '%s -> %s: FAILED\n' "$client" "$server"
fi

step "topology (h1's view: every host with its containers, then h1's tunnels)"
lab_dir=${WEFT_LAB_DIR:-/run/weft-lab}
bin=${WEFT_BIN:-$repo/target/release/weft}
for ((i = 1; i <= hosts; i++)); do
	printf 'h%d (10.200.0.%d):' "$i" "$i"
	for ((j = 1; j <= containers; j++)); do printf '  h%dc%d %s' "$i" "$j" "${addr[h${i}c$j]}"; done
	printf '\n'
done
printf '\n'
"$bin" peers --socket "$lab_dir/h1/weft.sock" || true

step "status page"
"$lab" ui h1 9571 || true

printf '\n'
((failed == 0)) || printf '%d of %d pings FAILED\n' "$failed" $((${#names[@]} * (${#names[@]} - 1)))
env_prefix=''
[[ -z ${WEFT_LAB_DIR:-} ]] || env_prefix="WEFT_LAB_DIR=$WEFT_LAB_DIR "
printf 'lab is up; inspect with %s%s exec h1c1 ip addr (nodes: ul, h<i>, h<i>c<j>); remove with %s%s down\n' \
	"$env_prefix" "$shown_lab" "$env_prefix" "$shown_lab"
((failed == 0 && tcp_ok)) || exit 1
