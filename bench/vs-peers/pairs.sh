#!/usr/bin/env bash
# bench/vs-peers/pairs.sh: kernels started with different flags, measured
# in alternating short wrk runs (server on core 0, wrk -t1 -c8 on core 1,
# the refund rule, a pep token), with the server's CPU time per request
# from /proc. Prints each pair and the medians: the way to tell two
# configurations apart on a machine whose throughput drifts between runs.
#
#   bash bench/vs-peers/pairs.sh "on:" "off:--audit-decisions=false --decision-log-sample 0"
#   PAIRS=8 D=2 BIN=path/to/aibos bash bench/vs-peers/pairs.sh "a:FLAGS" "b:FLAGS" ...
#   bash bench/vs-peers/pairs.sh "before@path/to/old-aibos:" "after:"   # a binary of its own
#   BATCH=100 bash bench/vs-peers/pairs.sh "on:" "off:..."   # batches of 100 checks (figures per request)
#
# Needs wrk and taskset. Not run in CI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PAIRS=${PAIRS:-8}; D=${D:-2}
work=$(mktemp -d "${TMPDIR:-/tmp}/pairs.XXXXXX")
if [[ -z "${BIN:-}" ]]; then
  (cd "$here/../.." && go build -o "$work/aibos" ./cmd/aibos)
  BIN=$work/aibos
fi
body=$here/check.json; route=/v1/check
if [[ -n "${BATCH:-}" ]]; then
  check=$(tr -d '\n' <"$here/check.json")
  { printf '{"checks":['; for ((k=1;k<=BATCH;k++)); do [[ $k -gt 1 ]] && printf ','; printf '%s' "$check"; done; printf ']}'; } >"$work/batch.json"
  body=$work/batch.json; route=/v1/check/batch
fi
pids=(); cleanup(){ for p in "${pids[@]}"; do kill $p 2>/dev/null||true; done; wait 2>/dev/null||true; rm -rf $work; }; trap cleanup EXIT
declare -A port tok pid
i=0; names=()
for spec in "$@"; do
  n=${spec%%:*}; f=${spec#*:}; p=$((18400+i*10)); i=$((i+1))
  b=$BIN; if [[ $n == *@* ]]; then b=${n#*@}; n=${n%%@*}; fi
  (exec taskset -c 0 $b serve --data $work/$n --http 127.0.0.1:$p --raft 127.0.0.1:$((p+1)) --log-level error $f) >$work/$n.log 2>&1 &
  pid[$n]=$!; pids+=($!); port[$n]=$p; names+=($n)
done
for n in "${names[@]}"; do
  for _ in $(seq 300); do [[ -s $work/$n/root-token ]] && curl -sf -X PUT -H "Authorization: Bearer $(<$work/$n/root-token)" -H 'Content-Type: application/yaml' --data-binary @$here/refund.yaml http://127.0.0.1:${port[$n]}/v1/policies >/dev/null 2>&1 && break; sleep 0.1; done
  tok[$n]=$(AIBOS_TOKEN=$(<$work/$n/root-token) $b token create --server http://127.0.0.1:${port[$n]} --principal pairs --role pep | grep -o 'aibos_[A-Za-z0-9_-]*' | head -1)
  curl -sf -X POST -H "Authorization: Bearer ${tok[$n]}" -H "Content-Type: application/json" --data-binary @$here/check.json http://127.0.0.1:${port[$n]}/v1/check | grep -q '"decision":"allow"' || { echo "$n: no allow"; cat $work/$n.log; exit 1; }
  TOKEN=${tok[$n]} BODY=$body taskset -c 1 wrk -t1 -c8 -d1s -s $here/wrk.lua http://127.0.0.1:${port[$n]}$route >/dev/null
done
cpu(){ awk '{print $14+$15}' /proc/$1/stat; }
# The machine's CPU counters and, since a reading, the hypervisor's steal
# (run.sh has the same): a pair with steal is not comparable.
cpustat() { awk '/^cpu /{t=0; for (i=2;i<=NF;i++) t+=$i; print t, $9}' /proc/stat; }
steal() { cpustat | awk -v a="$1" 'BEGIN{split(a, x, " ")} {t=$1-x[1]; printf "%.1f%%", (t > 0 ? 100*($2-x[2])/t : 0)}'; }
declare -A res cpus
for ((r=0;r<PAIRS;r++)); do
  line="pair $r:"
  for ((j=0;j<${#names[@]};j++)); do
    n=${names[$(((r+j)%${#names[@]}))]}
    c0=$(cpu ${pid[$n]}); s0=$(cpustat)
    out=$(TOKEN=${tok[$n]} BODY=$body taskset -c 1 wrk -t1 -c8 -d${D}s --latency -s $here/wrk.lua http://127.0.0.1:${port[$n]}$route)
    c1=$(cpu ${pid[$n]}); st=$(steal "$s0")
    rq=$(awk '/requests in/{print $1}' <<<"$out"); rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    us=$(awk -v c=$((c1-c0)) -v q=$rq 'BEGIN{printf "%.1f", c*10000/q}')
    res[$n]+="$rps "; cpus[$n]+="$us "
    line+=" $n $(printf %.0f $rps)/s ${us}us (steal $st)"
  done
  echo "$line"
done
med(){ tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
for n in "${names[@]}"; do echo "$n median $(med "${res[$n]}")/s cpu/req $(med "${cpus[$n]}")us"; done
