"""Allocation-heavy, deterministic workload for comparing allocators.

Churns a few hundred MB through dicts, lists, strings, bytes and JSON, and prints
digests of the results: the output must be identical under any malloc.
Run with PYTHONMALLOC=malloc so every object goes through malloc.
"""

import hashlib
import json
import random

rng = random.Random(20240611)
out = hashlib.sha256()


def report(name, value):
    text = repr(value)
    out.update(text.encode())
    print(f"{name}: {text if len(text) < 80 else hashlib.sha256(text.encode()).hexdigest()}")


def words(n):
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 12))) for _ in range(n)]


# Dicts: build, grow, delete half, rebuild, several rounds.
vocab = words(20000)
table = {}
for rnd in range(6):
    for i in range(60000):
        key = f"{vocab[rng.randrange(len(vocab))]}-{rnd}-{i % 977}"
        table.setdefault(key, []).append(i * rnd)
    for key in list(table)[::2]:
        del table[key]
    report(f"dict round {rnd} size", len(table))
report("dict digest", sorted((k, sum(v)) for k, v in table.items())[:50])
del table

# Lists of lists: sort, slice, concatenate.
rows = [[rng.random() for _ in range(rng.randint(1, 40))] for _ in range(40000)]
rows.sort(key=lambda r: (len(r), r[0]))
flat = [x for r in rows[::3] for x in r]
report("rows", (len(rows), len(flat), round(sum(flat), 6)))
del rows, flat

# Strings: joins, splits, replaces, formatting; many short-lived temporaries.
total = 0
for rnd in range(30):
    text = " ".join(rng.choice(vocab) for _ in range(30000))
    text = text.replace("a", "AA").upper()
    parts = text.split("E")
    total += sum(len(p) for p in parts) + len(parts)
    lines = [f"{i:06d}:{p[:20]}" for i, p in enumerate(parts)]
    total += len("\n".join(lines))
report("strings", total)

# Bytes and bytearrays that grow by appending (realloc-heavy).
buf = bytearray()
chunks = []
for i in range(20000):
    piece = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    buf += piece
    if i % 50 == 0:
        chunks.append(bytes(buf))
        if len(buf) > 200000:
            buf = bytearray(buf[-1000:])
report("bytes", hashlib.sha256(b"".join(chunks)).hexdigest())
del chunks, buf

# JSON round trips of nested structures.
doc_digest = hashlib.sha256()
for rnd in range(15):
    doc = {
        w: {"n": i, "tags": vocab[i : i + rng.randint(0, 10)], "v": [rng.randint(0, 9)] * 5}
        for i, w in enumerate(vocab[rnd * 1000 : rnd * 1000 + 3000])
    }
    text = json.dumps(doc, sort_keys=True)
    back = json.loads(text)
    assert back == doc
    doc_digest.update(text.encode())
report("json", doc_digest.hexdigest())

# Large blocks: lists and strings of a few MB, created and dropped.
big_total = 0
for rnd in range(20):
    big = [rnd] * (500000 + rnd * 10000)
    s = "x" * (3000000 + rnd)
    big_total += len(big) + len(s)
    del big, s
report("large", big_total)

print("digest:", out.hexdigest())
