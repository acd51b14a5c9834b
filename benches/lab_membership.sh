#!/usr/bin/env bash
# benches/lab_membership.sh: membership with N real daemons (issue 18 item 3) — how long a lab
# of N hosts takes to converge, to see a SIGKILLed daemon down and to spread a record update,
# and what each daemon costs in memory and CPU while the cluster is idle.
#
#   benches/lab_membership.sh [--hosts N] [--containers C] [--steady S]
#
#   --hosts N        daemons, 3..250 (default 100): netns-lab/lab.sh up N C
#   --containers C   containers per host, 0..8 (default 1)
#   --steady S       seconds of the idle window in which CPU is measured, 10..600 (default 60)
#
# Environment:
#   WEFT_BIN          the weft binary to measure; default: `cargo build --release` and use
#                     <target dir>/release/weft (copied into the run's directory first)
#   WEFT_LAB_PEERS    how the hosts find each other, passed to lab.sh: seed (default: h1 joins
#                     through h2, every other host through h1, gossip does the rest) or mesh
#   WEFT_LAB_TIMEOUT  seconds a daemon may take to answer `weft status` at start (lab.sh);
#                     default 30 here (N daemons start at once)
#   LAB_MEMBERSHIP_CONVERGE  seconds the lab may take to converge; default 300
#   LAB_MEMBERSHIP_DETECT    seconds the others may take to see the killed daemon down; default 120
#   LAB_MEMBERSHIP_UPDATE    seconds the others may take to see the new container; default 120
#   LAB_MEMBERSHIP_SETTLE    seconds between convergence and the idle window; default 10
#   LAB_MEMBERSHIP_LOGS      a directory to copy every daemon's log into before the lab goes
#
# Needs root and ip (iproute2).
#
# The lab: netns-lab/lab.sh up N C, tagged lm<PID in base 36> (at most 6 bytes), state in
# /tmp/weft-lab-membership-<tag>.*/lab: namespaces <tag>ul (the underlay switch), <tag>h1 …
# <tag>h<N> (hosts 10.200.0.<i>/24, one daemon each, with lab.sh's permanent underlay neighbour
# entries) and <tag>h<i>c<j> (containers). Everything (daemons, namespaces, the run's
# directory) is removed at exit, also on failure and Ctrl-C: `lab.sh down`, then a check that
# nothing of the run's tag remains. Traffic stays in the lab's namespaces (shared LAB.md).
#
# What is measured, in this order (every wait is bounded; "sees" = that daemon's `weft peers
# --json`, polled host by host, a host leaving the poll once it shows the awaited state, so a
# time is late by at most one sweep over the hosts still waiting — the sweep time is printed):
#  1. Convergence: from lab.sh starting the first daemon (its `launched` file) until every
#     daemon lists all N-1 others as alive. lab.sh up still attaches containers meanwhile, as
#     it does for anyone who runs it. A full sweep then checks that all still do (a host that
#     no longer does is waited for again, and its time is taken anew).
#  2. Idle cost: LAB_MEMBERSHIP_SETTLE s later, user+system CPU of every daemon over S s
#     (/proc/PID/stat; nothing polls them meanwhile), in % of one core; VmRSS and VmHWM at the
#     end (/proc/PID/status). Median and max over the N daemons.
#  3. Record update: a new container h2c<C+1> attached with `weft attach` on h2; from the
#     moment the command returned until every other daemon lists h2 with C+1 containers.
#  4. Failure detection: h<N>'s daemon is killed with SIGKILL (by its PID);
#     from the signal until every other daemon lists h<N> as down (or no longer lists it). The
#     daemons log "member down" when they declare it, so the same times are also read from
#     their logs (exact, not limited by the poll).
#  5. False downs: "member down" lines, in all logs over the whole run, for any member but the
#     killed one (and how many of them came before the polls saw the lab converged). A member
#     declared down and back between two polls shows only in the logs, so the convergence
#     time reported is the later of the polls' and the last "member up" any daemon logged.
# PIDs come from lab.sh's PID files, checked against their command line, never found by name.
#
# Prints a Markdown table (header and one row) and the command, then details. Exits 1 if a
# step did not finish in its time (after printing what it measured), non-zero with the reason
# on any other failure.
set -euo pipefail
shopt -s nullglob

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cmdline="$0${*:+ $*}"
readonly here repo cmdline
readonly lab_sh=$repo/netns-lab/lab.sh

say() { printf 'lab_membership.sh: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}
# shellcheck source=benches/common.sh
source "$here/common.sh"
usage() {
	sed -n '6,10s/^#   //p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

# --- arguments and environment ------------------------------------------------------------

hosts=100 containers=1 steady_s=60
while (($#)); do
	case $1 in
	--hosts | --containers | --steady)
		(($# >= 2)) || usage
		[[ $2 =~ ^[0-9]{1,3}$ ]] || die "$1 wants a number, got '$2'"
		case $1 in
		--hosts) hosts=$((10#$2)) ;;
		--containers) containers=$((10#$2)) ;;
		--steady) steady_s=$((10#$2)) ;;
		esac
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
((hosts >= 3 && hosts <= 250)) || die "--hosts must be 3..250 (lab.sh allows at most 250), got $hosts"
((containers <= 8)) || die "--containers must be 0..8, got $containers"
((steady_s >= 10 && steady_s <= 600)) || die "--steady must be 10..600 s, got $steady_s"
peers_mode=${WEFT_LAB_PEERS:-seed}
lab_timeout=${WEFT_LAB_TIMEOUT:-30}
converge_s=${LAB_MEMBERSHIP_CONVERGE:-300}
detect_s=${LAB_MEMBERSHIP_DETECT:-120}
update_s=${LAB_MEMBERSHIP_UPDATE:-120}
settle_s=${LAB_MEMBERSHIP_SETTLE:-10}
[[ $peers_mode == seed || $peers_mode == mesh ]] || die "WEFT_LAB_PEERS must be seed or mesh"
for v in "$lab_timeout" "$converge_s" "$detect_s" "$update_s" "$settle_s"; do
	[[ $v =~ ^[0-9]{1,4}$ ]] ||
		die "WEFT_LAB_TIMEOUT and LAB_MEMBERSHIP_* must be whole seconds (0..9999), got '$v'"
done
readonly hosts containers steady_s peers_mode lab_timeout converge_s detect_s update_s settle_s
# The member whose record changes and the one that is killed.
readonly updated=2 victim=$hosts new_container=h2c$((containers + 1))
# Hosts asked at once in a sweep of polls.
readonly poll_jobs=8

(($(id -u) == 0)) || die "must run as root (creates network namespaces)"
[[ -x $lab_sh ]] || die "$lab_sh is missing or not executable"
for c in ip timeout awk sort date getconf; do
	command -v "$c" >/dev/null || die "'$c' is not installed"
done
clk_tck=$(getconf CLK_TCK)
readonly clk_tck

weft_src=$(weft_binary)

# --- the run's names and its cleanup --------------------------------------------------------

tag=$(run_tag lm) # at most 6 bytes; the longest name, <tag>h250c9, is at most 12
readonly tag
work=''
lab=''
up_pid=''

# cleanup: end a `lab.sh up` still running (it removes its partial lab itself), `lab.sh down`,
# then check that nothing of this run is left: daemons recorded in $work/pids (still checked
# against their command line) get SIGKILL, namespaces of our tag are emptied and deleted.
# SIGINT is ignored from here on so a second Ctrl-C cannot cut the cleanup short.
cleanup() {
	local rc=$? pid h name i pids=()
	trap - EXIT TERM
	trap '' INT
	if [[ -n $up_pid ]] && pid_alive "$up_pid"; then
		say "stopping lab.sh up (pid $up_pid)"
		kill -TERM "$up_pid" 2>/dev/null || true
		for ((i = 0; i < 600; i++)); do
			pid_alive "$up_pid" || break
			sleep 0.1
		done
	fi
	if [[ -n ${LAB_MEMBERSHIP_LOGS:-} && -n $lab && -d $lab ]]; then
		mkdir -p -- "$LAB_MEMBERSHIP_LOGS" && for h in "$lab"/h*/; do
			cp -- "$h/weft.log" "$LAB_MEMBERSHIP_LOGS/$(basename "$h").log" 2>/dev/null || true
		done
		say "daemon logs copied to $LAB_MEMBERSHIP_LOGS"
	fi
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
	if [[ -n $work && -d $work && $work == /tmp/weft-lab-membership-"$tag".* ]]; then rm -rf -- "$work"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ -z $(our_namespaces) ]] || die "namespaces tagged '$tag' already exist; not touching them"
work=$(mktemp -d "/tmp/weft-lab-membership-$tag.XXXXXX")
lab=$work/lab
# A private copy: a rebuild in the tree during the run does not change what is measured.
cp -- "$weft_src" "$work/weft"
readonly work lab weft=$work/weft

# --- time -----------------------------------------------------------------------------------

# now_us: the Unix time in microseconds.
now_us() {
	local t=${EPOCHREALTIME/,/.}
	printf '%s\n' "${t/./}"
}

# secs US: microseconds as seconds with one decimal.
secs() { awk -v u="$1" 'BEGIN {printf "%.1f", u / 1e6}'; }

# log_us TIMESTAMP: a daemon log's RFC 3339 timestamp as Unix microseconds.
log_us() { date -u -d "$1" +%s%6N; }

# --- polling the daemons --------------------------------------------------------------------

# peers I: h<I>'s `weft peers --json` (bounded in time); fails if it does not answer.
peers() { timeout 10 "$weft" peers --json --socket "$lab/h$1/weft.sock" 2>/dev/null; }

# The awaited states, each a test on one host's view (fails while not reached). The pretty
# JSON has one field a line, an entry's "name" first: awk reads it in ~2 ms where jq takes
# ~45 ms to start, which made a sweep over 100 hosts take seconds on a busy 2-core machine.
# sees_all I: h<I> lists every other host alive.
sees_all() {
	local n
	n=$(peers "$1" | awk -F'"' '$2 == "name" {n = $4} $2 == "state" && $4 == "alive" && n != "" && !(n in a) {a[n] = 1; c++}
		END {print c + 0}') || return 1
	((n == hosts - 1))
}
# sees_update I: h<I> lists h<updated> with one container more than it started with.
sees_update() {
	local n
	n=$(peers "$1" | awk -F'"' -v who="h$updated" '$2 == "name" {n = $4}
		$2 == "containers" && n == who {v = $3; gsub(/[^0-9]/, "", v); if (v + 0 > m) m = v + 0}
		END {print m + 0}') || return 1
	((n == containers + 1))
}
# sees_victim_down I: h<I> lists h<victim> as down, or no longer at all.
sees_victim_down() {
	local states
	states=$(peers "$1" | awk -F'"' -v who="h$victim" '$2 == "name" {n = $4} $2 == "state" && n == who {print $4}') ||
		return 1
	[[ -z $states ]] || ! grep -qvx down <<<"$states"
}

# poll_until TEST SINCE_US LIMIT_S HOSTS...: polls TEST on the hosts until each has passed once
# or LIMIT_S seconds after SINCE_US; a host leaves the poll when it passes. A sweep asks up to
# $poll_jobs hosts at once (one at a time, a sweep over 100 hosts took 9-20 s on a busy 2-core
# machine). Writes "I US" (the microseconds from SINCE_US to the answer that showed host I
# pass) to $work/times, the longest sweep's duration (µs) to $work/sweep, and returns 1 if a
# host never passed.
poll_until() {
	local test=$1 since=$2 limit=$3 i p t0 t sweep_max=0 pending=() left=() queries=()
	shift 3
	pending=("$@")
	: >"$work/times"
	while ((${#pending[@]} > 0)); do
		t0=$(now_us)
		: >"$work/passed"
		queries=()
		for i in "${pending[@]}"; do
			if ((${#queries[@]} >= poll_jobs)); then
				wait -n "${queries[@]}" 2>/dev/null || true
				mapfile -t queries < <(for p in "${queries[@]}"; do if pid_alive "$p"; then printf '%s\n' "$p"; fi; done)
			fi
			{
				if "$test" "$i"; then printf '%d %d\n' "$i" $(($(now_us) - since)) >>"$work/passed"; fi
			} &
			queries+=("$!")
		done
		# Only our queries: a plain `wait` would also wait for a lab.sh up still running.
		wait "${queries[@]}" 2>/dev/null || true
		cat "$work/passed" >>"$work/times"
		left=()
		for i in "${pending[@]}"; do
			grep -q "^$i " "$work/passed" || left+=("$i")
		done
		t=$(now_us)
		((t - t0 <= sweep_max)) || sweep_max=$((t - t0))
		pending=("${left[@]}")
		((${#pending[@]} > 0)) || break
		if ((t - since > limit * 1000000)); then
			printf '%d\n' "$sweep_max" >"$work/sweep"
			say "not reached within ${limit} s by ${#pending[@]} hosts: $(printf 'h%s ' "${pending[@]:0:20}")"
			return 1
		fi
		if [[ -n $up_pid ]] && ! pid_alive "$up_pid"; then check_up; fi
		sleep 0.2
	done
	printf '%d\n' "$sweep_max" >"$work/sweep"
}

# check_up: once the background `lab.sh up` has ended, fail unless it succeeded.
check_up() {
	local rc=0
	wait "$up_pid" || rc=$?
	up_pid=''
	((rc == 0)) || {
		tail -n 30 "$work/up.log" >&2
		die "lab.sh up $hosts $containers failed (exit $rc; its messages above)"
	}
}

# stats FILE COLUMN: "median max" of a numeric column (1-based) of FILE.
stats() {
	sort -g -k"$2,$2" "$1" | awk -v c="$2" '{v[NR] = $c}
		END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[NR]}'
}

# cpu_ticks PID: user + system CPU ticks of PID so far (/proc/PID/stat fields 14 and 15).
cpu_ticks() {
	local stat f
	stat=$(<"/proc/$1/stat") || return 1
	read -r -a f <<<"${stat##*) }"
	printf '%d\n' $((f[11] + f[12]))
}

# kb FIELD PID: a /proc/PID/status field in kB ("VmRSS" …).
kb() { awk -v f="$1:" '$1 == f {print $2; exit}' "/proc/$2/status"; }

all_hosts() { seq 1 "$hosts"; }

# --- the run --------------------------------------------------------------------------------

# Results, filled in as the steps finish.
converged=0 updated_ok=0 detected_ok=0 logged=0 false_downs=0 converged_at=0
started=$(date -u '+%Y-%m-%d %H:%M UTC')
t_run=$SECONDS
say "run $tag: $hosts hosts, $containers containers each, membership $peers_mode; scratch $work"

# 1. Convergence, polled while lab.sh up is still attaching containers.
# Not through lab_sh(): a function in the background is a subshell, and its PID would not be
# lab.sh's, which must get the TERM of cleanup() to remove its partial lab itself.
WEFT_LAB_DIR=$lab WEFT_LAB_TAG=$tag WEFT_BIN=$work/weft WEFT_LAB_PEERS=$peers_mode \
	WEFT_LAB_TIMEOUT=$lab_timeout WEFT_LAB_EXTRA='' "$lab_sh" up "$hosts" "$containers" >"$work/up.log" 2>&1 &
up_pid=$!
until [[ -s $lab/launched ]]; do
	pid_alive "$up_pid" || check_up
	((SECONDS - t_run < 600)) || die "lab.sh up started no daemon within 600 s"
	sleep 0.2
done
launched=$(<"$lab/launched")
launched=${launched/./}
say "daemons starting; waiting up to ${converge_s} s until each sees all $((hosts - 1)) others alive"
mapfile -t todo < <(all_hosts)
: >"$work/converge"
converge_sweep=0
while :; do
	if ! poll_until sees_all "$launched" "$converge_s" "${todo[@]}"; then break; fi
	cat "$work/times" >>"$work/converge"
	converge_sweep=$(($(<"$work/sweep") > converge_sweep ? $(<"$work/sweep") : converge_sweep))
	[[ -z $up_pid ]] || check_up
	# A full sweep: whoever lost a member since is waited for again, its time taken anew.
	todo=()
	for ((i = 1; i <= hosts; i++)); do
		sees_all "$i" || todo+=("$i")
	done
	if ((${#todo[@]} == 0)); then
		converged=1
		break
	fi
	say "${#todo[@]} hosts lost a member again: $(printf 'h%s ' "${todo[@]:0:20}")"
	for i in "${todo[@]}"; do sed -i "/^$i /d" "$work/converge"; done
done
[[ -z $up_pid ]] || check_up
if ((converged)); then
	read -r converge_med converge_max < <(stats "$work/converge" 2)
	converged_at=$(now_us)
	say "converged: the last daemon saw all others alive $(secs "$converge_max") s after the first started"
	# The same from the daemons' logs: when each logged "member up" for the last of the others.
	: >"$work/converge_log"
	for ((i = 1; i <= hosts; i++)); do
		ts=$(grep 'member up peer=' "$lab/h$i/weft.log" | tail -n 1 | cut -d' ' -f1)
		if [[ -n $ts ]] && t=$(log_us "$ts"); then printf '%d %d\n' "$i" $((t - launched)) >>"$work/converge_log"; fi
	done
	read -r clog_med clog_max < <(stats "$work/converge_log" 2)
	# A member that flapped between two polls shows only in the logs: the lab has converged
	# when the polls say so and no daemon has logged a member coming up since.
	converge_all=$((clog_max > converge_max ? clog_max : converge_max))
fi
for ((i = 1; i <= hosts; i++)); do
	if pid=$(our_daemon_pid "$i"); then
		printf '%s h%d\n' "$pid" "$i" >>"$work/pids"
	elif ((converged)); then
		tail -n 20 "$lab/h$i/weft.log" >&2 || true
		die "daemon h$i is not running after convergence (end of its log above)"
	fi
done

# 2. Idle cost.
if ((converged)); then
	say "settling ${settle_s} s, then measuring CPU over ${steady_s} s with nothing polling"
	sleep "$settle_s"
	: >"$work/cpu0"
	while read -r pid h; do
		c0=$(cpu_ticks "$pid") || die "daemon $h (pid $pid) ended before the idle window"
		printf '%s %s %s\n' "$h" "$pid" "$c0" >>"$work/cpu0"
	done <"$work/pids"
	w0=$(now_us)
	load0=$(cut -d' ' -f1 /proc/loadavg)
	sleep "$steady_s"
	w1=$(now_us)
	load1=$(cut -d' ' -f1 /proc/loadavg)
	: >"$work/cost"
	while read -r h pid c0; do
		c1=$(cpu_ticks "$pid") || die "daemon $h (pid $pid) ended during the idle window"
		printf '%s %s %s %s\n' "$h" \
			"$(awk -v d=$((c1 - c0)) -v hz="$clk_tck" -v us=$((w1 - w0)) 'BEGIN {printf "%.3f", 100 * d / hz / (us / 1e6)}')" \
			"$(kb VmRSS "$pid")" "$(kb VmHWM "$pid")" >>"$work/cost"
	done <"$work/cpu0"
	read -r cpu_med cpu_max < <(stats "$work/cost" 2)
	read -r rss_med rss_max < <(stats "$work/cost" 3)
	read -r _ hwm_max < <(stats "$work/cost" 4)
	cpu_total=$(awk '{s += $2} END {printf "%.1f", s}' "$work/cost")
	say "idle: CPU median $cpu_med % max $cpu_max % of a core; VmRSS median $((${rss_med%.*} / 1024)) MiB"
fi

# 3. Record update: a container attached on h<updated>.
if ((converged)); then
	ns=${tag}$new_container
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	a0=$(now_us)
	timeout 30 "$weft" attach --socket "$lab/h$updated/weft.sock" --netns "$ns" --network default \
		--name "$new_container" >"$work/attach.out" 2>&1 || {
		cat "$work/attach.out" >&2
		die "weft attach of $new_container on h$updated failed"
	}
	u0=$(now_us)
	say "attached $new_container on h$updated ($(((u0 - a0) / 1000)) ms); waiting for every other daemon to list it"
	mapfile -t todo < <(all_hosts | grep -vx "$updated")
	if poll_until sees_update "$u0" "$update_s" "${todo[@]}"; then updated_ok=1; fi
	cp "$work/times" "$work/update"
	update_sweep=$(<"$work/sweep")
	update_med=0 update_max=0
	[[ ! -s $work/update ]] || read -r update_med update_max < <(stats "$work/update" 2)
fi

# 4. Failure detection: SIGKILL to h<victim>, by its PID (the moment of the signal is exact).
if ((converged)); then
	pid=$(our_daemon_pid "$victim") || die "daemon h$victim is not running"
	k0=$(now_us)
	kill -KILL "$pid"
	for ((i = 0; i < 100; i++)); do
		pid_alive "$pid" || break
		sleep 0.1
	done
	! pid_alive "$pid" || die "daemon h$victim (pid $pid) survived SIGKILL for 10 s"
	say "h$victim (pid $pid) killed; waiting for every other daemon to list it down"
	mapfile -t todo < <(all_hosts | grep -vx "$victim")
	if poll_until sees_victim_down "$k0" "$detect_s" "${todo[@]}"; then detected_ok=1; fi
	cp "$work/times" "$work/detect"
	detect_sweep=$(<"$work/sweep")
	detect_med=0 detect_max=0
	[[ ! -s $work/detect ]] || read -r detect_med detect_max < <(stats "$work/detect" 2)
	# The same moments from the daemons' logs: the first "member down peer=h<victim>" after
	# the signal, per host.
	: >"$work/detect_log"
	for i in "${todo[@]}"; do
		while read -r ts rest; do
			[[ $rest =~ member\ down.*peer=h$victim( |$) ]] || continue
			t=$(log_us "$ts") || continue
			if ((t >= k0)); then
				printf '%d %d\n' "$i" $((t - k0)) >>"$work/detect_log"
				break
			fi
		done <"$lab/h$i/weft.log"
	done
	logged=$(wc -l <"$work/detect_log")
	if ((logged > 0)); then read -r dlog_med dlog_max < <(stats "$work/detect_log" 2); fi
fi

# 5. False downs: "member down" for anyone but the victim, in every log, over the whole run.
: >"$work/false_downs"
for ((i = 1; i <= hosts; i++)); do
	grep -h 'member down' "$lab/h$i/weft.log" | grep -Ev "peer=h$victim( |\$)" |
		sed "s/^/h$i: /" >>"$work/false_downs" || true
done
false_downs=$(wc -l <"$work/false_downs")
# Those logged before the polls saw the lab converged (start-up) and after (steady state).
false_early=0
while read -r _ ts _; do
	if t=$(log_us "$ts") && ((converged && t <= converged_at)); then false_early=$((false_early + 1)); fi
done <"$work/false_downs"

# --- the result -----------------------------------------------------------------------------

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
version=$("$weft" --version | awk '{print $2}')
if [[ -z ${WEFT_BIN:-} ]] && commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null); then
	[[ -z $(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null) ]] || commit+=-dirty
	version+=" ($commit)"
fi
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
bq='`'
na='n/a'
{
	printf '\n## weft membership with %d real daemons, %s\n\n' "$hosts" "$started"
	printf '| date | weft | hosts | converged (s) | record update seen by all (s) | SIGKILL seen down by all (s) | false downs | VmRSS median / max (MiB) | CPU idle median / max (%% of a core) |\n'
	printf '|---|---|---:|---:|---:|---:|---:|---:|---:|\n'
	printf '| %s | %s | %d | %s | %s | %s | %d | %s | %s |\n' "$started" "$version" "$hosts" \
		"$( ((converged)) && secs "$converge_all" || printf '> %s' "$converge_s")" \
		"$( ((converged)) && { ((updated_ok)) && secs "$update_max" || printf '> %s' "$update_s"; } || echo $na)" \
		"$( ((converged)) && { ((detected_ok)) && secs "$detect_max" || printf '> %s' "$detect_s"; } || echo $na)" \
		"$false_downs" \
		"$( ((converged)) && printf '%s / %s' "$(mib "${rss_med%.*}")" "$(mib "$rss_max")" || echo $na)" \
		"$( ((converged)) && printf '%.2f / %.2f' "$cpu_med" "$cpu_max" || echo $na)"
	printf '\nCommand: %s%s%s  \n' "$bq" "$cmdline" "$bq"
	printf 'Machine: %s, %s cores, Linux %s; %s (%s)  \n' "${cpu_model:-unknown CPU}" "$(nproc)" \
		"$(uname -r)" "$("$weft" --version)" "$weft_src"
	printf 'Lab: netns-lab/lab.sh up %d %d, WEFT_LAB_PEERS=%s\n\n' "$hosts" "$containers" "$peers_mode"
	if ((converged)); then
		printf -- '- Converged %s s after the first daemon started: polled, every daemon listed all %d others alive by %s s (median daemon %s s; sweeps up to %s s); by their logs, the last daemon logged "member up" for the last of the others at %s s (median %s s).\n' \
			"$(secs "$converge_all")" $((hosts - 1)) "$(secs "$converge_max")" "$(secs "$converge_med")" "$(secs "$converge_sweep")" \
			"$(secs "$clog_max")" "$(secs "$clog_med")"
		printf -- '- Idle, %d s from %d s after convergence (load average %s → %s): CPU per daemon median %.2f %%, max %.2f %% of a core, all %d together %s %%; VmRSS median %s MiB, max %s MiB, VmHWM max %s MiB.\n' \
			"$steady_s" "$settle_s" "$load0" "$load1" "$cpu_med" "$cpu_max" "$hosts" "$cpu_total" \
			"$(mib "${rss_med%.*}")" "$(mib "$rss_max")" "$(mib "$hwm_max")"
		printf -- '- Record update (%sweft attach%s of %s on h%d, which took %d ms): seen by %d of %d daemons, all within %s s, median %s s (polled, sweeps up to %s s).\n' \
			"$bq" "$bq" "$new_container" "$updated" $(((u0 - a0) / 1000)) "$(wc -l <"$work/update")" $((hosts - 1)) \
			"$(secs "$update_max")" "$(secs "$update_med")" "$(secs "$update_sweep")"
		printf -- '- SIGKILL of h%d: listed down by %d of %d daemons, all within %s s, median %s s (polled, sweeps up to %s s)' \
			"$victim" "$(wc -l <"$work/detect")" $((hosts - 1)) "$(secs "$detect_max")" "$(secs "$detect_med")" "$(secs "$detect_sweep")"
		if ((logged > 0)); then
			printf '; by their logs, %d daemons declared it down, the last %s s and the median %s s after the signal.\n' \
				"$logged" "$(secs "$dlog_max")" "$(secs "$dlog_med")"
		else
			printf '; no daemon logged "member down" for it.\n'
		fi
	else
		printf -- '- Did not converge within %s s: %d of %d daemons saw all others alive.\n' \
			"$converge_s" "$(wc -l <"$work/converge" 2>/dev/null || echo 0)" "$hosts"
	fi
	printf -- '- False downs ("member down" logged for a member other than h%d, whole run): %d, of them %d before the polls saw the lab converged\n' \
		"$victim" "$false_downs" "$false_early"
	head -n 10 "$work/false_downs" | sed 's/^/    /'
	printf 'Run took %d s (before cleanup).\n' $((SECONDS - t_run))
}
((converged && updated_ok && detected_ok)) || exit 1
