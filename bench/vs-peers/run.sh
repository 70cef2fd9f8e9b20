#!/usr/bin/env bash
# bench/vs-peers/run.sh: the kernel side by side with `opa run --server`,
# Cerbos and a bare net/http floor, in one run, on one core each.
#
# Every server is pinned to SERVER_CPU and the load generator (wrk) to
# LOAD_CPU; all servers are started first and measured one at a time, in
# ROUNDS rounds whose order rotates, and each must answer allow for the
# request before its runs count. The kernel runs twice: with recording on
# (the default: every decision in the audit log, the decision log sampled
# at 0.1) and off (--audit-decisions=false --decision-log-sample 0). It then
# measures the kernel's p99 at half its measured peak with an open-loop
# generator (bench/openloop). Prints the medians of the rounds, the ratios,
# and the machine's load average and the hypervisor's steal at each run.
#
# Needs: wrk (apt-get install wrk), go, npm, taskset; fetches OPA with
# `go install` and Cerbos's npm package into a temp dir (or OPA=, CERBOS=
# point at binaries). BASE=path/to/aibos also measures that binary (the
# "before" of a change) in the same rounds. Not run in CI.
#
#   bash bench/vs-peers/run.sh            # ROUNDS=3 DURATION=4 CONNS=8
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4}
CONNS=${CONNS:-8}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OPA_VERSION=${OPA_VERSION:-v1.22.3}
CERBOS_VERSION=${CERBOS_VERSION:-0.55.0}
work=$(mktemp -d "${TMPDIR:-/tmp}/vs-peers.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "vs-peers: wrk is missing: apt-get install -y wrk" >&2; exit 2; }

echo "building the kernel, the floor and the open-loop generator..." >&2
(cd "$root" && go build -o "$work/aibos" ./cmd/aibos)
(cd "$root/bench" && go build -o "$work/floor" ./floor && go build -o "$work/openloop" ./openloop)
if [[ -z "${OPA:-}" ]]; then
	echo "go install github.com/open-policy-agent/opa@$OPA_VERSION..." >&2
	GOBIN="$work/gobin" go install "github.com/open-policy-agent/opa@$OPA_VERSION"
	OPA="$work/gobin/opa"
fi
if [[ -z "${CERBOS:-}" ]]; then
	echo "npm install @cerbos/cerbos-linux-x64@$CERBOS_VERSION..." >&2
	npm install --silent --prefix "$work/npm" "@cerbos/cerbos-linux-x64@$CERBOS_VERSION" >/dev/null
	CERBOS="$work/npm/node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64"
fi

start() { # name, then the command, pinned; its output goes to $work/name.log
	local name=$1
	shift
	# exec: $! is then the server's own pid, which cleanup kills.
	(exec taskset -c "$SERVER_CPU" "$@") >"$work/$name.log" 2>&1 &
	pids+=($!)
}

# A server left on one of the ports would be measured instead of ours.
for port in 18200 18210 18220 18230 18240 18250 18260; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "vs-peers: port $port is in use; stop what listens there first" >&2
		exit 2
	fi
done

# kernel NAME BIN PORT FLAGS...
kernel() {
	local name=$1 bin=$2 port=$3
	shift 3
	start "$name" "$bin" serve --data "$work/$name-data" --http "127.0.0.1:$port" --raft "127.0.0.1:$((port + 1))" --log-level error "$@"
	url[$name]="http://127.0.0.1:$port/v1/check"
	body[$name]="$here/check.json"
	expect[$name]='"decision":"allow"'
	publish[$name]="http://127.0.0.1:$port/v1/policies"
	data[$name]="$work/$name-data"
	binof[$name]=$bin
}

declare -A url body expect publish data binof token
names=()
kernel kernel "$work/aibos" 18210
kernel kernel-norec "$work/aibos" 18220 --audit-decisions=false --decision-log-sample 0
names+=(kernel kernel-norec)
if [[ -n "${BASE:-}" ]]; then
	kernel base "$BASE" 18230
	kernel base-norec "$BASE" 18240 --audit-decisions=false --decision-log-sample 0
	names+=(base base-norec)
fi
start opa "$OPA" run --server --addr 127.0.0.1:18250 --log-level error "$here/refund.rego"
url[opa]=http://127.0.0.1:18250/v1/data/refund/allow body[opa]="$here/opa-check.json" expect[opa]='"result":true'
mkdir -p "$work/cerbos-policies"
cp "$here/cerbos/refund.yaml" "$work/cerbos-policies/"
start cerbos "$CERBOS" server --log-level error --set=server.httpListenAddr=127.0.0.1:18260 --set=server.grpcListenAddr=127.0.0.1:18261 \
	--set=storage.driver=disk --set=storage.disk.directory="$work/cerbos-policies" --set=audit.enabled=false
url[cerbos]=http://127.0.0.1:18260/api/check/resources body[cerbos]="$here/cerbos-check.json" expect[cerbos]='"refund":"EFFECT_ALLOW"'
start floor "$work/floor" -addr 127.0.0.1:18200
url[floor]=http://127.0.0.1:18200/v1/check body[floor]="$here/check.json" expect[floor]='"decision":"allow"'
names+=(opa cerbos floor)

# Wait for every server, publish the rule to the kernels, check answers.
for n in "${names[@]}"; do
	ok=
	for _ in $(seq 300); do
		if [[ -n "${publish[$n]:-}" && -z "${token[$n]:-}" ]]; then
			if [[ -s "${data[$n]}/root-token" ]]; then
				# The kernel authenticates every request: publish as root
				# (the token a new node writes to its data dir), then
				# decide with a pep token, as an enforcement point would.
				root=$(<"${data[$n]}/root-token")
				curl -sf -X PUT -H "Authorization: Bearer $root" -H 'Content-Type: application/yaml' \
					--data-binary "@$here/refund.yaml" "${publish[$n]}" >/dev/null 2>&1 || { sleep 0.1; continue; }
				token[$n]=$(AIBOS_TOKEN=$root "${binof[$n]}" token create --server "${publish[$n]%/v1/policies}" --principal vs-peers --role pep |
					grep -o 'aibos_[A-Za-z0-9_-]*' | head -1)
				[[ -n "${token[$n]}" ]] || { echo "vs-peers: $n: could not create a pep token" >&2; exit 1; }
			else
				# A BASE from before authentication.
				curl -sf -X PUT -H 'Content-Type: application/yaml' --data-binary "@$here/refund.yaml" "${publish[$n]}" >/dev/null 2>&1 || { sleep 0.1; continue; }
				token[$n]=none
			fi
		fi
		auth=()
		[[ -n "${token[$n]:-}" && ${token[$n]} != none ]] && auth=(-H "Authorization: Bearer ${token[$n]}")
		if curl -sf -X POST -H 'Content-Type: application/json' "${auth[@]}" \
			--data-binary "@${body[$n]}" "${url[$n]}" 2>/dev/null | grep -qF "${expect[$n]}"; then
			ok=1
			break
		fi
		sleep 0.1
	done
	[[ -n $ok ]] || { echo "vs-peers: $n does not answer allow for the request; its log:" >&2; cat "$work/$n.log" >&2; exit 1; }
done

declare -A rps p99
measure() { # name round
	local n=$1 out
	export TOKEN=${token[${n%-batch}]:-}
	[[ $TOKEN == none ]] && TOKEN=
	BODY="${body[$n]}" taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s -s "$here/wrk.lua" "${url[$n]}" >/dev/null
	local la st
	la=$(cut -d' ' -f1 /proc/loadavg)
	st=$(cpustat)
	out=$(BODY="${body[$n]}" taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$here/wrk.lua" "${url[$n]}")
	st=$(steal "$st")
	if grep -q "Non-2xx" <<<"$out"; then
		echo "vs-peers: $n answered errors under load" >&2
		exit 1
	fi
	local r l
	r=$(awk '/Requests\/sec/{print $2}' <<<"$out")
	l=$(awk '$1=="99%"{print $2}' <<<"$out")
	rps[$n]+="$r "
	p99[$n]+="$(ms "$l") "
	printf "round %d  %-13s %10.0f/s  p99 %8.2f ms  (load %s, steal %s)\n" "$2" "$n" "$r" "$(ms "$l")" "$la" "$st" >&2
}
# The machine's CPU counters, and the share of them stolen by the
# hypervisor since a reading: on a VM, the noise that the load average
# does not show (a run with steal of a few percent is not comparable).
cpustat() { awk '/^cpu /{t=0; for (i=2;i<=NF;i++) t+=$i; print t, $9}' /proc/stat; }
steal() { # an earlier cpustat
	cpustat | awk -v a="$1" 'BEGIN{split(a, x, " ")} {t=$1-x[1]; printf "%.1f%%", (t > 0 ? 100*($2-x[2])/t : 0)}'
}
ms() { # a wrk duration (950.00us, 1.20ms, 2.00s) in ms
	awk -v d="$1" 'BEGIN{ if (d ~ /(us|µs)$/) print d/1000; else if (d ~ /ms$/) print d+0; else if (d ~ /s$/) print d*1000; else print d }'
}
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

for ((r = 1; r <= ROUNDS; r++)); do
	k=$(((r - 1) % ${#names[@]}))
	for ((i = 0; i < ${#names[@]}; i++)); do
		measure "${names[$(((k + i) % ${#names[@]}))]}" "$r"
	done
done

echo
printf "%-13s %12s %10s\n" server "checks/s" "p99 ms"
declare -A med
for n in "${names[@]}"; do
	med[$n]=$(median "${rps[$n]}")
	printf "%-13s %12.0f %10.2f\n" "$n" "${med[$n]}" "$(median "${p99[$n]}")"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
# roundcost ON OFF: the median over rounds of 1 - on/off, each round's two
# runs taken close together, which drifts of the machine touch less than
# the ratio of the medians.
roundcost() {
	paste <(tr ' ' '\n' <<<"${rps[$1]}" | grep .) <(tr ' ' '\n' <<<"${rps[$2]}" | grep .) |
		awk '{print 100*(1-$1/$2)}' | sort -g | awk '{a[NR]=$1} END{printf "%.1f %%", a[int((NR+1)/2)]}'
}
echo
echo "kernel / floor           $(ratio "${med[kernel]}" "${med[floor]}")   (recording off: $(ratio "${med[kernel-norec]}" "${med[floor]}"))"
echo "kernel / opa             $(ratio "${med[kernel]}" "${med[opa]}")"
echo "kernel / cerbos          $(ratio "${med[kernel]}" "${med[cerbos]}")"
echo "recording costs          $(awk -v a="${med[kernel]}" -v b="${med[kernel-norec]}" 'BEGIN{printf "%.1f %%", 100*(1-a/b)}') of single-check throughput (median of the rounds' own: $(roundcost kernel kernel-norec))"
if [[ -n "${BASE:-}" ]]; then
	echo "base / floor             $(ratio "${med[base]}" "${med[floor]}")   (recording off: $(ratio "${med[base-norec]}" "${med[floor]}"))"
	echo "base recording costs     $(awk -v a="${med[base]}" -v b="${med[base-norec]}" 'BEGIN{printf "%.1f %%", 100*(1-a/b)}')"
fi

# Batched: 100 checks a request to the kernels, recording on and off.
check=$(tr -d '\n' <"$here/check.json")
{
	printf '{"checks":['
	for i in $(seq 100); do
		[[ $i -gt 1 ]] && printf ','
		printf '%s' "$check"
	done
	printf ']}'
} >"$work/batch.json"
bnames=(kernel kernel-norec ${BASE:+base base-norec})
for n in "${bnames[@]}"; do
	url[$n-batch]="${url[$n]}/batch" body[$n-batch]="$work/batch.json" expect[$n-batch]='"decision":"allow"'
done
echo >&2
for ((r = 1; r <= ROUNDS; r++)); do
	k=$(((r - 1) % ${#bnames[@]}))
	for ((i = 0; i < ${#bnames[@]}; i++)); do
		measure "${bnames[$(((k + i) % ${#bnames[@]}))]}-batch" "$r"
	done
done
echo
printf "%-13s %14s %10s\n" "batch of 100" "decisions/s" "p99 ms"
for n in "${bnames[@]}"; do
	med[$n-batch]=$(median "${rps[$n-batch]}")
	printf "%-13s %14.0f %10.2f\n" "$n" "$(awk -v r="${med[$n-batch]}" 'BEGIN{print 100*r}')" "$(median "${p99[$n-batch]}")"
done
echo "recording costs          $(awk -v a="${med[kernel-batch]}" -v b="${med[kernel-norec-batch]}" 'BEGIN{printf "%.1f %%", 100*(1-a/b)}') of batched throughput (median of the rounds' own: $(roundcost kernel-batch kernel-norec-batch))"
if [[ -n "${BASE:-}" ]]; then
	echo "base recording costs     $(awk -v a="${med[base-batch]}" -v b="${med[base-norec-batch]}" 'BEGIN{printf "%.1f %%", 100*(1-a/b)}') of batched throughput"
fi
echo

# Latency at half the measured peak, open loop, alternating as above.
# The floor at the kernel's rate: what the generator itself adds.
onames=(kernel ${BASE:+base} floor)
declare -A ol
for ((r = 1; r <= ROUNDS; r++)); do
	k=$(((r - 1) % ${#onames[@]}))
	for ((i = 0; i < ${#onames[@]}; i++)); do
		n=${onames[$(((k + i) % ${#onames[@]}))]}
		half=$(awk -v a="${med[$n]}" 'BEGIN{printf "%d", a/2}')
		[[ $n == floor ]] && half=$(awk -v a="${med[kernel]}" 'BEGIN{printf "%d", a/2}')
		la=$(cut -d' ' -f1 /proc/loadavg)
		st=$(cpustat)
		tk=${token[$n]:-}
		out=$(TOKEN=${tk/#none/} taskset -c "$LOAD_CPU" "$work/openloop" -url "${url[$n]}" -body "${body[$n]}" -rate "$half" -d "${DURATION}s" -expect "${expect[$n]}")
		st=$(steal "$st")
		l=$(sed -E 's/.* p99 ([^ ]+) .*/\1/' <<<"$out")
		ol[$n]+="$(ms "$l") "
		printf "round %d  %-13s at %d/s (half the kernel's or its own peak), open loop: %s  (load %s, steal %s)\n" "$r" "$n" "$half" "${out#*errors}" "$la" "$st" >&2
	done
done
for n in "${onames[@]}"; do
	printf "%-13s p99 at half its peak (the floor: at the kernel's), open loop: %.2f ms (median of %d)\n" "$n" "$(median "${ol[$n]}")" "$ROUNDS"
done
