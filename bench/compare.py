#!/usr/bin/env python3
"""Two builds of m2m, interleaved on this machine: embedded and scaled out.

    bench/compare.py OLD_M2M NEW_M2M [ROUNDS] [--cbor]

Each round runs, for OLD then NEW: `m2m serve` at closed-loop concurrency 4
and one `m2m gateway` with two `m2m processor` on RabbitMQ and SQLite at
concurrency 8 (the 13-channel game, as bench/run.sh). The load always comes
from NEW's `m2m simulate`, so only the system under test differs. With
`--cbor`, each round also runs NEW's `m2m serve` with the games uploaded as
CBOR (`m2m simulate --format cbor`), a third row. Prints a
Markdown table of games/s per round and the medians, and the CPU time
`m2m serve` spent per game (from /proc: what a game costs the server,
whatever else shares the cores); this VM's speed drifts from day to day,
so only figures from one interleaved run are compared.
"""

import collections
import statistics
import subprocess
import sys
import tempfile

import run

ARGS = [a for a in sys.argv[1:] if a != "--cbor"]
CBOR = "--cbor" in sys.argv
OLD, NEW = ARGS[0], ARGS[1]
ROUNDS = int(ARGS[2]) if len(ARGS) > 2 else 2
SIMULATOR = NEW
GAMES = 600
# The embedded server's CPU milliseconds per game, by (binary, extra args).
CPU_MS = collections.defaultdict(list)


def simulate(base, concurrency, games, *extra):
    args = ["simulate", "--base-url", base, "--channels", run.CHANNELS, "--json", "--seed", "7",
            "--users", "16", "--concurrency", str(concurrency), "--games", str(games), *extra]
    out = subprocess.run([SIMULATOR] + args, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"simulate failed: {out.stderr[-2000:]}")
    return run.json.loads(out.stdout)["completed_per_s"]


def cpu_seconds(pid):
    """User plus system CPU time of a process so far (/proc, 10 ms ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def embedded(binary, tmp, *extra):
    """games/s completed, and the server's CPU milliseconds per game (its
    share of the 16 sign-ups and logins included, the same for every build)."""
    run.M2M = binary
    serve, line = run.start(["serve", "--listen", "127.0.0.1:0", "--data-dir", tempfile.mkdtemp(dir=tmp)],
                            ready="m2m serving on")
    try:
        before = cpu_seconds(serve.pid)
        gps = simulate(run.url_of(line), 4, GAMES, *extra)
        CPU_MS[binary, extra].append((cpu_seconds(serve.pid) - before) * 1000 / GAMES)
        return gps
    finally:
        run.stop(serve)


def scaled(binary, tmp):
    run.M2M = binary
    vhost = run.rabbit_vhost()
    env = {"M2M_AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
           "M2M_DATABASE_URL": f"sqlite://{tempfile.mkdtemp(dir=tmp)}/scaled.db", "M2M_JWT_SECRET": run.SECRET}
    procs = []
    try:
        gw, line = run.start(["gateway", "--listen", "127.0.0.1:0"], env, ready="serving on")
        procs.append(gw)
        for _ in range(2):
            procs.append(run.start(["processor"], env, ready="consuming")[0])
        return simulate(run.url_of(line), 8, GAMES)
    finally:
        for p in procs:
            run.stop(p)
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True)


def main():
    tmp = tempfile.mkdtemp(prefix="m2m-compare-")
    results = {(b, k): [] for b in ("old", "new") for k in ("embedded", "scaled")}
    cbor = []
    for r in range(ROUNDS):
        for name, binary in (("old", OLD), ("new", NEW)):
            for kind, fn in (("embedded", embedded), ("scaled", scaled)):
                gps = fn(binary, tmp)
                results[(name, kind)].append(gps)
                run.log(f"round {r + 1}: {name} {kind}: {gps:.1f} games/s")
        if CBOR:
            gps = embedded(NEW, tmp, "--format", "cbor")
            cbor.append(gps)
            run.log(f"round {r + 1}: new embedded, CBOR: {gps:.1f} games/s")
    def cpu(binary, extra=()):
        ms = CPU_MS[binary, tuple(extra)]
        return f"{' / '.join(f'{x:.2f}' for x in ms)} (median {statistics.median(ms):.2f})"

    print("| build | `m2m serve` games/s (each round) | `m2m serve` CPU ms a game | "
          "scaled out, 1 gateway + 2 processors, games/s | scaled / serve |")
    print("|---|---|---|---|---|")
    for name, binary in (("old", OLD), ("new", NEW)):
        e, s = results[(name, "embedded")], results[(name, "scaled")]
        print(f"| {name} | {' / '.join(f'{x:.1f}' for x in e)} (median {statistics.median(e):.1f}) | "
              f"{cpu(binary)} | "
              f"{' / '.join(f'{x:.1f}' for x in s)} (median {statistics.median(s):.1f}) | "
              f"{100 * statistics.median(s) / statistics.median(e):.0f} % |")
    if cbor:
        print(f"| new, CBOR uploads | {' / '.join(f'{x:.1f}' for x in cbor)} (median {statistics.median(cbor):.1f}) "
              f"| {cpu(NEW, ('--format', 'cbor'))} | (not run) | |")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in run.PROCS:
            run.stop(p)
