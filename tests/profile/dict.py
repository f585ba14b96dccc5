# The README's heap-profile example: CPython (run with PYTHONMALLOC=malloc, so every object
# comes from malloc) building a large dict of strings to lists, plus a JSON round trip. At its
# peak it raises SIGUSR1 (pagebreak writes the profile then) and leaves with os._exit, so the
# exit dump does not replace it with the heap CPython's finalisation has already freed.
import json
import os
import signal


def make_key(i):
    return "key-%08d" % i


def make_value(i):
    return [i, str(i), (i, i * 2)]


def build(n):
    return {make_key(i): make_value(i) for i in range(n)}


def round_trip(d):
    return json.loads(json.dumps(d))


if __name__ == "__main__":
    table = build(300_000)
    copy = round_trip({k: v[1] for k, v in list(table.items())[:100_000]})
    print(len(table), len(copy), flush=True)
    os.kill(os.getpid(), signal.SIGUSR1)
    os._exit(0)
