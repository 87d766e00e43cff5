# Helpers for level-1 scenario scripts (sourced before the script).
#
# Environment: VMM, GUEST_BZIMAGE, GUEST_VMLINUX, GUEST_INITRD, GUEST_CMDLINE,
# WORK (scratch directory), DATA (the scenario's files), SANDBOX_MODE
# (nested or direct), STEP_TIMEOUT (seconds a run_vmm may take).

# uptime_ms prints the milliseconds since boot (10 ms resolution).
uptime_ms() {
	local up _
	read -r up _ < /proc/uptime
	# "1${frac}" keeps a fraction such as "05" from reading as octal.
	echo $(( ${up%.*} * 1000 + 1${up#*.} * 10 - 1000 ))
}

# run_vmm NAME VMM-ARGS... runs "$VMM VMM-ARGS..." once as the step NAME:
# prints "@@STEP name=NAME begin", the vmm's output, then
# "@@RESULT name=NAME rc=RC ms=WALL timedout=0|1" and, when rc != 0,
# "@@ERROR name=NAME <last line of the vmm's stderr>". stdin is /dev/null;
# stdout and stderr are also kept in $WORK/NAME.out and $WORK/NAME.err.
# A step is never repeated here: a boot that failed, whatever the cause,
# fails its step (tests/README.md, "Faults of the nested sandbox").
# Returns the vmm's exit status.
run_vmm() {
	local step=$1
	shift
	local limit=${STEP_TIMEOUT:-120}
	local out_fifo="$WORK/.$step.out.fifo" err_fifo="$WORK/.$step.err.fifo"
	rm -f "$out_fifo" "$err_fifo"
	mkfifo "$out_fifo" "$err_fifo" || return 125
	tee "$WORK/$step.out" < "$out_fifo" &
	local out_pid=$!
	tee "$WORK/$step.err" < "$err_fifo" >&2 &
	local err_pid=$!

	echo "@@STEP name=$step begin"
	local start end status before
	before=$(_l1_memory_events)
	start=$(uptime_ms)
	timeout -k 5 "$limit" "$VMM" "$@" < /dev/null > "$out_fifo" 2> "$err_fifo"
	status=$?
	end=$(uptime_ms)
	# A process the vmm left behind may hold the fifos open: stop waiting
	# for the tees after 2 s.
	( sleep 2; kill "$out_pid" "$err_pid" 2>/dev/null ) &
	local reaper=$!
	wait "$out_pid" "$err_pid"
	kill "$reaper" 2>/dev/null
	rm -f "$out_fifo" "$err_fifo"

	local timedout=0
	[ $(( end - start )) -ge $(( limit * 1000 )) ] && timedout=1
	echo
	echo "@@RESULT name=$step rc=$status ms=$(( end - start )) timedout=$timedout"
	metric "$step" $(_l1_memory_delta "$before" "$(_l1_memory_events)")
	if [ "$status" -ne 0 ]; then
		echo "@@ERROR name=$step $(grep -v '^[[:space:]]*$' "$WORK/$step.err" | tail -n 1)"
	fi
	return "$status"
}

# vmm_error NAME FILE... is run_vmm's "@@ERROR" line for a step that
# starts its vmms itself (API boots, restores): given those vmms' stderr
# files, it reports a triple fault or a stop report if any has one (the
# kinds of failure the harness tells the sandbox's from vmm's by), else
# the last line of the first file with something in it.
vmm_error() {
	local step=$1 line
	shift
	line=$(grep -h -e 'guest triple fault' -e "these registers are not the guest's" "$@" 2> /dev/null | tail -n 1)
	if [ -z "$line" ]; then
		line=$(cat "$@" 2> /dev/null | grep -v '^[[:space:]]*$' | tail -n 1)
	fi
	echo "@@ERROR name=$step $line"
}

# _l1_memory_events prints level 1's counters of the memory-management
# events that change the host pages behind a running guest (huge-page
# collapses and splits, page migration and compaction), which KVM must
# follow with nested-page-table invalidations: evidence when a guest fails.
_l1_memory_events() {
	awk '$1 ~ /^(thp_collapse_alloc|thp_split_page|thp_fault_alloc|pgmigrate_success|compact_stall|numa_pages_migrated)$/ { printf "%s=%s ", $1, $2 }' /proc/vmstat 2>/dev/null
}

# _l1_memory_delta BEFORE AFTER prints "l1_NAME=DELTA" for each counter.
_l1_memory_delta() {
	echo "$1 / $2" | awk '{ for (i = 1; i <= NF; i++) { if ($i == "/") { after = 1; continue }
		split($i, kv, "="); if (after) d[kv[1]] = kv[2] - b[kv[1]]; else b[kv[1]] = kv[2] } }
		END { for (k in d) printf "l1_%s=%d ", k, d[k] }'
}

# metric NAME KEY=VALUE... attaches measurements to the step NAME.
metric() {
	local step=$1
	shift
	echo "@@METRIC name=$step $*"
}

# guest_cmdline NAME prints the default guest command line that selects the
# guest script NAME (/scenarios/NAME.sh in the guest initramfs).
guest_cmdline() {
	echo "$GUEST_CMDLINE vmmtest=$1"
}
