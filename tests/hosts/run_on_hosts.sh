#!/usr/bin/env bash
# Runs one program as the ranks of two "hosts" on this machine (DESIGN.md, "Testing across
# hosts on one machine"), started the way engines start them: no mpirun, EPCOMM_INIT_ADDR on
# host 0's address with EPCOMM_RANK / EPCOMM_SIZE. Each host is a network namespace (the two
# joined by a veth pair, addresses from 198.51.100.0/24) plus its own UTS (hostname), IPC and
# mount namespace with a private /dev/shm, held by one process whose namespaces every rank
# of that host enters, so ranks of one host share memory and ranks of two do not.
#
# Usage: run_on_hosts.sh [--ranks "A B"] [--timeout S] [--kill RANK:SECONDS]
#                        [--env VAR=VALUE]... [--rank-env R:VAR=VALUE]... -- program [args...]
#   --ranks    ranks on host 0 and host 1 (default "2 2"); rank numbers run host 0 first
#   --timeout  seconds before every rank is killed (status 124; default 300)
#   --kill     SIGKILL that rank after that many seconds (a peer dying mid-run)
#   --stop     SIGSTOP that rank after that many seconds (a hung peer); it is SIGKILLed once
#              the others ended, and its status is not checked
#   --drop-link S   take the veth link between the hosts down after S seconds
#   --link-rate R   shape each host's sending side of the link to rate R (tc tbf, e.g. 25gbit),
#              as a NIC slower than memory; default: unshaped (the kernel's copy on these cores)
#   --env      set for every rank (repeatable); EPCOMM_HOST / EPCOMM_TEST_HOSTS are set too
#   --rank-env R:VAR=VALUE  set for rank R only, after --env (repeatable)
#   --mpirun   start the ranks with Open MPI's mpirun instead (run in host 0, reaching host 1
#              through a plm_rsh_agent that enters host 1's namespaces; btl tcp,vader,self on
#              the veth subnet); --kill and --rank-env do not apply
#   --expect REGEX  the ranks' output must match this extended regex (repeatable)
#   --expect-fail   every rank (but a killed one) must exit nonzero (a refused start)
# Exit status: 0 when every rank (but a killed one) exited 0 (with --expect-fail: nonzero)
# and every --expect matched, else the first failing rank's status (or 1). Output lines are prefixed "[hH rR]". Needs root. Every namespace and interface is
# named ep<pid>* and removed on exit, also on failure or interrupt.
set -uo pipefail

ranks=(2 2)
timeout_s=300
kill_rank=-1
kill_after=0
stop_rank=-1
stop_after=0
drop_after=-1
link_rate=""
dropped=0
envs=()
rank_envs=()
use_mpirun=0
expects=()
expect_fail=0
tmpdir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ranks) read -ra ranks <<<"$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --kill) kill_rank="${2%%:*}"; kill_after="${2##*:}"; shift 2 ;;
    --stop) stop_rank="${2%%:*}"; stop_after="${2##*:}"; shift 2 ;;
    --drop-link) drop_after="$2"; shift 2 ;;
    --link-rate) link_rate="$2"; shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    --rank-env) rank_envs+=("$2"); shift 2 ;;
    --mpirun) use_mpirun=1; shift ;;
    --expect) expects+=("$2"); shift 2 ;;
    --expect-fail) expect_fail=1; shift ;;
    --) shift; break ;;
    *) echo "run_on_hosts.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ $# -eq 0 || ${#ranks[@]} -ne 2 ]]; then
  echo "usage: run_on_hosts.sh [--ranks \"A B\"] [--timeout S] [--kill R:S] [--env V=X]... -- program [args]" >&2
  exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "run_on_hosts.sh: needs root (network namespaces)" >&2
  exit 2
fi

tag="ep$$"
ns=("${tag}h0" "${tag}h1")
addr=(198.51.100.1 198.51.100.2)
holders=()
inner=()
rank_pids=()

cleanup() {
  for p in "${rank_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for p in "${inner[@]}" "${holders[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  for n in "${ns[@]}"; do ip netns del "$n" 2>/dev/null; done
  ip link del "${tag}v0" 2>/dev/null
  [[ -n "$tmpdir" ]] && rm -rf "$tmpdir"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "run_on_hosts.sh: $*" >&2
  exit 2
}

for i in 0 1; do ip netns add "${ns[i]}" || fail "ip netns add ${ns[i]} failed"; done
ip link add "${tag}v0" type veth peer name "${tag}v1" || fail "creating the veth pair failed"
for i in 0 1; do
  ip link set "${tag}v$i" netns "${ns[i]}" &&
    ip -n "${ns[i]}" addr add "${addr[i]}/24" dev "${tag}v$i" &&
    ip -n "${ns[i]}" link set "${tag}v$i" up &&
    ip -n "${ns[i]}" link set lo up || fail "configuring ${ns[i]} failed"
  if [[ -n "$link_rate" ]]; then
    # burst above the veth's largest (GSO) packet, so the shaper never stalls one.
    tc -n "${ns[i]}" qdisc add dev "${tag}v$i" root tbf rate "$link_rate" burst 1mb latency 100ms ||
      fail "shaping ${ns[i]}'s link to $link_rate failed (tc tbf)"
  fi
done

# One holder per host: its own UTS, IPC and mount namespaces inside the network namespace,
# a private /dev/shm and its own hostname; ranks enter its namespaces.
for i in 0 1; do
  ip netns exec "${ns[i]}" unshare --uts --ipc --mount --propagation private --fork \
    bash -c "mount -t tmpfs -o size=2g tmpfs /dev/shm && hostname ${tag}host$i && exec sleep $((timeout_s + 120))" \
    </dev/null >/dev/null 2>&1 &
  holders+=($!)
done
for i in 0 1; do
  pid=""
  for _ in $(seq 1 200); do
    pid=$(pgrep -P "${holders[i]}" | head -n1)
    if [[ -n "$pid" ]] && [[ "$(nsenter -t "$pid" --uts hostname 2>/dev/null)" == "${tag}host$i" ]]; then
      break
    fi
    pid=""
    sleep 0.05
  done
  [[ -n "$pid" ]] || fail "host $i's namespaces did not come up"
  inner+=("$pid")
done

# Ranks enter the holders' mount namespaces, where the working directory is not ours.
prog="$1"
shift
if [[ "$prog" == */* ]]; then prog="$(cd "$(dirname "$prog")" && pwd)/$(basename "$prog")"; fi
size=$((ranks[0] + ranks[1]))
port=$((20000 + $$ % 20000))
tmpdir=$(mktemp -d /tmp/run_on_hosts.XXXXXX)
out="$tmpdir/output"
: >"$out"
if [[ $use_mpirun -eq 1 ]]; then
  # ssh's stand-in: "agent [ssh options] host command...": runs the command (orted) in that
  # host's namespaces, with EPCOMM_HOST naming the host for its ranks.
  cat >"$tmpdir/agent.sh" <<AGENT
#!/usr/bin/env bash
while [[ "\$1" == -* ]]; do shift; done
host="\$1"; shift
case "\$host" in
  ${addr[0]}) pid=${inner[0]}; h=0 ;;
  ${addr[1]}) pid=${inner[1]}; h=1 ;;
  *) echo "run_on_hosts agent: unknown host \$host" >&2; exit 255 ;;
esac
exec nsenter -t "\$pid" --net --uts --ipc --mount env EPCOMM_HOST="\$h" /bin/sh -c "\$*"
AGENT
  chmod +x "$tmpdir/agent.sh"
  xs=()
  for e in "${envs[@]}"; do xs+=(-x "$e"); done
  nsenter -t "${inner[0]}" --net --uts --ipc --mount \
    env EPCOMM_HOST=0 EPCOMM_TEST_HOSTS=2 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    mpirun --oversubscribe --bind-to none -np "$size" -H "${addr[0]}:${ranks[0]},${addr[1]}:${ranks[1]}" \
    --mca plm_rsh_agent "$tmpdir/agent.sh" --mca plm_rsh_no_tree_spawn 1 \
    --mca btl tcp,vader,self --mca btl_tcp_if_include 198.51.100.0/24 \
    --mca oob_tcp_if_include 198.51.100.0/24 -x EPCOMM_TEST_HOSTS "${xs[@]}" \
    "$prog" "$@" > >(sed -u "s/^/[mpirun] /" | tee -a "$out") 2>&1 &
  rank_pids+=($!)
  size=1
  kill_rank=-1
fi
# The rendezvous is on a veth address, which needs a secret (--env / --rank-env override it).
secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
r=0
for i in 0 1; do
  [[ $use_mpirun -eq 1 ]] && break
  for ((k = 0; k < ranks[i]; k++)); do
    mine=()
    for e in "${rank_envs[@]}"; do [[ "${e%%:*}" == "$r" ]] && mine+=("${e#*:}"); done
    nsenter -t "${inner[i]}" --net --uts --ipc --mount \
      env EPCOMM_INIT_ADDR="${addr[0]}:$port" EPCOMM_INIT_SECRET="$secret" EPCOMM_RANK="$r" \
      EPCOMM_SIZE="$size" EPCOMM_HOST="$i" EPCOMM_TEST_HOSTS=2 "${envs[@]}" "${mine[@]}" \
      "$prog" "$@" \
      > >(sed -u "s/^/[h$i r$r] /" | tee -a "$out") 2>&1 &
    rank_pids+=($!)
    r=$((r + 1))
  done
done

start=$SECONDS
killed=-1
stopped=-1
status=()
for ((r = 0; r < size; r++)); do status+=(-1); done
while :; do
  running=0
  for ((r = 0; r < size; r++)); do
    [[ ${status[r]} -ge 0 ]] && continue
    if kill -0 "${rank_pids[r]}" 2>/dev/null; then
      [[ $r -ne $stopped ]] && running=1
    else
      wait "${rank_pids[r]}"
      status[r]=$?
    fi
  done
  [[ $running -eq 0 ]] && break
  if [[ $kill_rank -ge 0 && $killed -lt 0 && $((SECONDS - start)) -ge $kill_after ]]; then
    pkill -9 -P "${rank_pids[kill_rank]}" 2>/dev/null
    kill -9 "${rank_pids[kill_rank]}" 2>/dev/null
    killed=$kill_rank
    echo "run_on_hosts.sh: killed rank $kill_rank after ${kill_after}s" >&2
  fi
  if [[ $stop_rank -ge 0 && $stopped -lt 0 && $((SECONDS - start)) -ge $stop_after ]]; then
    kill -STOP "${rank_pids[stop_rank]}" 2>/dev/null
    stopped=$stop_rank
    echo "run_on_hosts.sh: stopped rank $stop_rank after ${stop_after}s" >&2
  fi
  if [[ $drop_after -ge 0 && $dropped -eq 0 && $((SECONDS - start)) -ge $drop_after ]]; then
    ip -n "${ns[1]}" link set "${tag}v1" down
    dropped=1
    echo "run_on_hosts.sh: took the link down after ${drop_after}s" >&2
  fi
  if [[ $((SECONDS - start)) -ge $timeout_s ]]; then
    echo "run_on_hosts.sh: timed out after ${timeout_s}s; killing every rank" >&2
    for ((r = 0; r < size; r++)); do
      [[ ${status[r]} -lt 0 ]] && { pkill -9 -P "${rank_pids[r]}" 2>/dev/null; kill -9 "${rank_pids[r]}" 2>/dev/null; status[r]=124; }
    done
    break
  fi
  sleep 0.1
done

if [[ $stopped -ge 0 && ${status[stopped]} -lt 0 ]]; then
  kill -9 "${rank_pids[stopped]}" 2>/dev/null
  wait "${rank_pids[stopped]}" 2>/dev/null
fi
rc=0
for ((r = 0; r < size; r++)); do
  [[ $r -eq $killed || $r -eq $stopped ]] && continue
  if [[ $expect_fail -eq 1 ]]; then
    if [[ ${status[r]} -eq 0 || ${status[r]} -eq 124 ]]; then rc=1; fi
  elif [[ ${status[r]} -ne 0 && $rc -eq 0 ]]; then
    rc=${status[r]}
  fi
done
echo "run_on_hosts.sh: rank statuses: ${status[*]}" >&2
sleep 0.3  # the output pipes drain
for e in "${expects[@]}"; do
  if ! grep -Eq -- "$e" "$out"; then
    echo "run_on_hosts.sh: no output matched the expected /$e/" >&2
    [[ $rc -eq 0 ]] && rc=1
  fi
done
echo "run_on_hosts.sh: exit $rc" >&2
exit "$rc"
