"""A real program under each allocator: CPython doing allocation-heavy everyday work.

Run with PYTHONMALLOC=malloc (xtask sets it) so CPython's own small-object arenas step
aside and every object goes through the preloaded malloc/realloc/free.

    python3 py_alloc.py SCALE      (SCALE 10 takes a few seconds)
"""

import json
import random
import sys


def records(rng, n):
    # Many small dicts, strings and tuples: the typical shape of data-processing scripts.
    names = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    return [
        {
            "id": i,
            "name": rng.choice(names) + str(rng.randrange(1000)),
            "tags": [rng.choice(names) for _ in range(rng.randrange(1, 6))],
            "score": rng.random(),
            "pos": (rng.randrange(100), rng.randrange(100)),
        }
        for i in range(n)
    ]


def churn(rng, n):
    # Objects of mixed lifetimes: a rolling window where random entries are replaced.
    window = [None] * 5000
    total = 0
    for i in range(n):
        j = rng.randrange(len(window))
        size = rng.choice((8, 24, 100, 600, 3000, 20000))
        window[j] = bytearray(size) if i & 1 else "x" * size
        total += len(window[j])
    return total


def text(rng, n):
    # String building and splitting: many reallocs and short-lived strings.
    words = ["w%d" % rng.randrange(5000) for _ in range(n)]
    s = " ".join(words)
    counts = {}
    for w in s.split():
        counts[w] = counts.get(w, 0) + 1
    out = []
    for w, c in sorted(counts.items()):
        out.append("%s=%d" % (w, c))
    return len(",".join(out))


def main():
    scale = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    rng = random.Random(42)
    check = 0
    for _ in range(scale):
        rows = records(rng, 20000)
        rows.sort(key=lambda r: (r["name"], r["score"]))
        groups = {}
        for r in rows:
            groups.setdefault(r["name"][:3], []).append(r["id"])
        blob = json.dumps(rows)
        again = json.loads(blob)
        check += len(again) + len(groups) + len(blob) % 997
        check += churn(rng, 40000) % 1009
        check += text(rng, 60000) % 1013
        del rows, again, blob, groups
    print("py_alloc", scale, check)


if __name__ == "__main__":
    main()
