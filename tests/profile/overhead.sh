#!/bin/sh
# Heap-profiling overhead on the benchmark workloads (alloc-bench/workloads, --quick sizes):
# each workload run preloaded with pagebreak (mmap), profiling off and on (PAGEBREAK_PROFILE=1,
# 512 KiB), the two interleaved, REPS times; prints the median wall and CPU (user+sys) seconds.
# With CALLGRIND=1: instructions executed instead (valgrind --tool=callgrind, one run each:
# exact and repeatable where a shared machine's times are not).
# usage: [CALLGRIND=1] tests/profile/overhead.sh LIBPAGEBREAK.so [REPS]
set -eu
so=$(realpath "$1"); reps=${2:-5}
if [ "${CALLGRIND:-0}" = 1 ]; then reps=1; fi
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(mktemp -d); trap 'rm -rf "$bin"' EXIT
for w in binary_trees cache_scratch large larson realloc xmalloc; do
    cc -O2 -pthread -o "$bin/$w" "$root/alloc-bench/workloads/$w.c"
done
cp "$root/alloc-bench/workloads/py_alloc.py" "$bin/"
# The interpreter itself, not a wrapper script (pyenv's shim would hide it from callgrind).
py=$(python3 -c 'import sys; print(sys.executable)')
run() { # name mode cmd...
    name=$1; mode=$2; shift 2
    if [ "$mode" = on ]; then p=1; else p=0; fi
    if [ "${CALLGRIND:-0}" = 1 ]; then
        LD_PRELOAD="$so" PAGEBREAK_PROFILE=$p PAGEBREAK_PROFILE_PATH="$bin/x.prof" \
            PYTHONMALLOC=malloc valgrind --tool=callgrind --callgrind-out-file="$bin/cg.out" \
            "$@" >/dev/null 2>&1
        echo "$name $mode $(sed -n 's/^summary: //p' "$bin/cg.out") 0 0" >>"$bin/times"
        return
    fi
    /usr/bin/time -f "$name $mode %e %U %S" -a -o "$bin/times" \
        env LD_PRELOAD="$so" PAGEBREAK_PROFILE=$p PAGEBREAK_PROFILE_PATH="$bin/x.prof" \
        PYTHONMALLOC=malloc "$@" >/dev/null
}
i=0
while [ $i -lt "$reps" ]; do
    for mode in off on; do
        run larson $mode "$bin/larson" 2000 4
        run xmalloc $mode "$bin/xmalloc" 4000 2 2
        run cache-scratch $mode "$bin/cache_scratch" 4000
        run binary-trees $mode "$bin/binary_trees" 17
        run large $mode "$bin/large" 2000 2
        run realloc $mode "$bin/realloc" 800 2
        run python $mode "$py" "$bin/py_alloc.py" 2
    done
    i=$((i + 1))
done
python3 - "$bin/times" "${CALLGRIND:-0}" <<'PY'
import sys, statistics as st
if sys.argv[2] == "1":
    rows = {}
    for line in open(sys.argv[1]):
        f = line.split()
        rows[(f[0], f[1])] = int(f[2])
    print("| workload | off: instructions | on: instructions | more |")
    print("| --- | ---: | ---: | ---: |")
    for name in dict.fromkeys(k[0] for k in rows):
        i0, i1 = rows[(name, "off")], rows[(name, "on")]
        print(f"| {name} | {i0/1e6:.0f} M | {i1/1e6:.0f} M | {100*(i1/i0-1):+.1f}% |")
    sys.exit(0)
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) == 5:
        rows.setdefault((f[0], f[1]), []).append((float(f[2]), float(f[3]) + float(f[4])))
print("| workload | off: wall s | on: wall s | wall | off: CPU s | on: CPU s | CPU |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for name in dict.fromkeys(k[0] for k in rows):
    off, on = rows[(name, "off")], rows[(name, "on")]
    w0, w1 = st.median(r[0] for r in off), st.median(r[0] for r in on)
    c0, c1 = st.median(r[1] for r in off), st.median(r[1] for r in on)
    print(f"| {name} | {w0:.2f} | {w1:.2f} | {100*(w1/w0-1):+.1f}% | {c0:.2f} | {c1:.2f} | {100*(c1/c0-1):+.1f}% |")
PY
