"""The project's own peer benchmark: cloudinitd against pyinfra and Fabric on loopback sshd hosts.

    sudo .venv/bin/python bench/bench_fanout.py [--hosts 50] [--repeat 5] [--skip-dag]

Starts N OpenSSH servers on 127.0.0.x (each with its own host key, PidFile and
port, `SetEnv SHLVL=1` so root's .bashrc is not read per command; the same
servers tests/support/sshd.py starts), installs pyinfra and Fabric into a
bench-only venv under .cache/bench-venv (ignored by git), then runs, interleaved,
K times each:

- W2 (upload a script, run it: 0.2 s of sleep, read its result back, remove it)
  on every host: cloudinitd `boot` (one static service per host) then
  `terminate` (which removes the run's folder on each host); pyinfra with
  `--parallel N`; Fabric with one thread per host (what ThreadingGroup does).
- A skewed 40-service DAG (cloudinitd only): boot time against its critical path.
- Start-up of `cloudinitd --help` and `cloudinitd validate` (and the peers' --version),
  and the floors: importing only the chosen libraries each command needs (time, and
  the PSS of those imports held), so what is cloudinitd's own shows apart.

Prints medians, ratios to the peers, the peak PSS of each tool's process tree
and the load average. Traffic stays on loopback; every sshd started is stopped
by its pid at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.sshd import Host, _keygen, _make_host, _require_sshd  # noqa: E402

BENCH_VENV = REPO / ".cache" / "bench-venv"
PEERS = ("pyinfra", "fabric")
CLOUDINITD = Path(sys.executable).parent / "cloudinitd"
SLEEP = 0.2
# The chosen libraries each command imports: importing them, and nothing else,
# is the floor of its start-up time and memory (measured in the same run).
FLOOR_VALIDATE = ("yaml", "jsonschema", "networkx", "jinja2", "click")
FLOOR_BOOT = FLOOR_VALIDATE + ("fabric",)  # + paramiko, invoke, cryptography

W2_SCRIPT = f"""#!/bin/sh
set -e
sleep {SLEEP}
echo '{{"result": "ok"}}' > "$1"
"""


# --- hosts and tools ------------------------------------------------------------------


def start_hosts(base: Path, n: int) -> tuple[list[Host], Path]:
    _require_sshd_or_exit()
    key = base / "id_ed25519"
    _keygen(key, "cloudinitd-bench")
    pub = key.with_name("id_ed25519.pub").read_text().strip()
    hosts = [_make_host(base, pub, key) for _ in range(n)]
    return hosts, key


def _require_sshd_or_exit() -> None:
    try:
        _require_sshd()
    except BaseException as exc:  # pytest.fail raises its own Failed
        sys.exit(f"bench_fanout: {exc}")


def bench_venv() -> Path:
    """pyinfra and Fabric in their own venv (never in the project's)."""
    py = BENCH_VENV / "bin" / "python"
    if not (BENCH_VENV / "bin" / "pyinfra").exists() or not (BENCH_VENV / "bin" / "fab").exists():
        print(f"installing pyinfra and fabric into {BENCH_VENV} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "pyinfra", "fabric"], check=True)
    return py


def versions(py: Path) -> str:
    out = subprocess.run([str(py), "-c", "import importlib.metadata as m;"
                          "print(*(f'{p} {m.version(p)}' for p in ('pyinfra', 'fabric',"
                          " 'paramiko')), sep=', ')"], capture_output=True, text=True)
    return out.stdout.strip()


# --- measuring a process tree -----------------------------------------------------------


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return pids


def _pss_kb(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(argv: list[str], env: dict[str, str] | None = None,
          cwd: Path | None = None) -> tuple[float, float, float, str]:
    """Run argv; return (seconds, peak PSS of its process tree in MB, CPU seconds, output).

    CPU is what the finished child used (user + system), from RUSAGE_CHILDREN:
    only one measured child runs at a time, and the sshd listeners are reaped
    only at the end.
    """
    cpu0 = _children_cpu()
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    peaks = [0]
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()

    def sample() -> None:  # beside the wait: the end is seen at once, not at the next sample
        while proc.poll() is None:
            peaks[0] = max(peaks[0], _pss_kb(_tree(proc.pid)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    proc.wait()
    seconds = time.monotonic() - t0
    sampler.join()
    reader.join()
    peak = peaks[0]
    cpu = _children_cpu() - cpu0
    text = b"".join(out).decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} exited {proc.returncode}:\n{text[-3000:]}")
    return seconds, peak / 1024, cpu, text


# --- the workloads ------------------------------------------------------------------


def w2_plan(folder: Path, hosts: list[Host], key: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "w2.sh.j2").write_text(W2_SCRIPT.replace('"$1"', '"$CLOUDINITD_EXPORT"'))
    lines = ["name: w2", "services:"]
    for i, h in enumerate(hosts):
        lines += [f"  h{i}:", f"    host: {h.address}", f"    ssh_port: {h.port}",
                  f"    ssh_key: {key}", "    ssh_user: root", "    boot: w2.sh.j2",
                  "    exports: [result]"]
    (folder / "plan.yml").write_text("\n".join(lines) + "\n")
    return folder / "plan.yml"


def pyinfra_files(folder: Path, hosts: list[Host], key: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "w2.sh").write_text(W2_SCRIPT)
    inv = ["hosts = ["]
    for h in hosts:
        data = {"ssh_port": h.port, "ssh_user": "root", "ssh_key": str(key),
                "ssh_strict_host_key_checking": "no", "ssh_known_hosts_file": "/dev/null"}
        inv.append(f"    ({h.address!r}, {data!r}),")
    inv.append("]")
    (folder / "inventory.py").write_text("\n".join(inv) + "\n")
    (folder / "deploy.py").write_text(textwrap.dedent(f"""\
        from pyinfra import host
        from pyinfra.operations import files, server

        d = "/tmp/w2-pyinfra-" + host.name
        files.put(src={str(folder / 'w2.sh')!r}, dest=d + "/w2.sh", mode="755")
        server.shell(commands=["sh " + d + "/w2.sh " + d + "/result.json"])
        files.get(src=d + "/result.json", dest={str(folder)!r} + "/out-" + host.name + ".json")
        server.shell(commands=["rm -rf " + d])
        """))
    return folder / "inventory.py", folder / "deploy.py"


def fabric_file(folder: Path, hosts: list[Host], key: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "w2.sh").write_text(W2_SCRIPT)
    targets = [(h.address, h.port) for h in hosts]
    (folder / "fab_w2.py").write_text(textwrap.dedent(f"""\
        import io, json
        from concurrent.futures import ThreadPoolExecutor
        from fabric import Connection

        KW = {{"key_filename": {str(key)!r}, "look_for_keys": False, "allow_agent": False}}

        def w2(target):
            address, port = target
            d = "/tmp/w2-fabric-" + address
            with Connection(address, user="root", port=port, connect_kwargs=KW) as c:
                c.run("mkdir -p " + d, hide=True)
                c.put({str(folder / 'w2.sh')!r}, d + "/w2.sh")
                c.run("sh " + d + "/w2.sh " + d + "/result.json", hide=True)
                buf = io.BytesIO()
                c.get(d + "/result.json", buf)
                c.run("rm -rf " + d, hide=True)
                return json.loads(buf.getvalue())["result"]

        targets = {targets!r}
        with ThreadPoolExecutor(len(targets)) as pool:
            assert all(r == "ok" for r in pool.map(w2, targets))
        """))
    return folder / "fab_w2.py"


def dag_plan(folder: Path, hosts: list[Host], key: Path, n: int = 40,
             seed: int = 11) -> tuple[Path, float, float]:
    """A skewed DAG: most steps short, a few long; returns (plan, critical path, level sum)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "step.sh.j2").write_text('sleep "$STEP_SECONDS"\n')
    deps: list[list[int]] = []
    dur: list[float] = []
    for i in range(n):
        deps.append(sorted(set(rng.sample(range(i), min(i, rng.choice((1, 1, 2))))))
                    if i else [])
        dur.append(round(rng.uniform(0.5, 2.0), 2) if rng.random() < 0.25 else 0.1)
    finish: list[float] = []
    level: list[int] = []
    for i in range(n):
        finish.append(max((finish[d] for d in deps[i]), default=0.0) + dur[i])
        level.append(max((level[d] + 1 for d in deps[i]), default=0))
    by_level: dict[int, float] = {}
    for i in range(n):
        by_level[level[i]] = max(by_level.get(level[i], 0.0), dur[i])
    lines = ["name: dag", "services:"]
    for i in range(n):
        h = hosts[i % len(hosts)]
        lines += [f"  s{i}:", f"    host: {h.address}", f"    ssh_port: {h.port}",
                  f"    ssh_key: {key}", "    ssh_user: root", "    boot: step.sh.j2",
                  f"    env: {{STEP_SECONDS: '{dur[i]}'}}"]
        if deps[i]:
            lines.append(f"    after: [{', '.join(f's{d}' for d in deps[i])}]")
    (folder / "plan.yml").write_text("\n".join(lines) + "\n")
    return folder / "plan.yml", max(finish), sum(by_level.values())


# --- running ------------------------------------------------------------------------


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-dag", action="store_true")
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--startup-repeat", type=int, default=7)
    ap.add_argument("--baseline", type=Path, metavar="DIR",
                    help="also time the cloudinitd package in DIR (e.g. a `git archive` of main),"
                         " interleaved, labelled `base`")
    args = ap.parse_args(argv)

    py = None if args.skip_peers else bench_venv()
    base = Path(tempfile.mkdtemp(prefix="cid-bench-"))
    hosts: list[Host] = []
    try:
        hosts, key = start_hosts(base, args.hosts)
        for h in hosts:
            h.start(wait=False)
        for h in hosts:
            h.wait_listening(timeout=60)
        env = {**os.environ, "PYTHONPATH": str(REPO), "CLOUDINITD_HOME": str(base / "home")}
        variants = [("cloudinitd", env)]
        if args.baseline:
            variants.append(("base", {**env, "PYTHONPATH": str(args.baseline.resolve())}))
        plan = w2_plan(base / "w2", hosts, key)
        inv, deploy = pyinfra_files(base / "pyinfra", hosts, key)
        fab = fabric_file(base / "fabric", hosts, key)
        results: dict[str, list[tuple[float, float, float]]] = {}

        def record(label: str, sample: tuple[float, float, float, str]) -> None:
            results.setdefault(label, []).append(sample[:3])

        load0 = os.getloadavg()
        runs: list[tuple[str, Callable[[int], None]]] = []

        def cid(label: str, venv: dict[str, str]) -> Callable[[int], None]:
            def run(rep: int) -> None:
                name = f"w2-{label}-{rep}"
                record(f"{label} boot", timed([str(CLOUDINITD), "boot", str(plan), "--name",
                                               name, "-q", "--json"], venv))
                record(f"{label} terminate", timed([str(CLOUDINITD), "terminate", name, "-q"],
                                                   venv))
            return run

        for label, venv in variants:
            runs.append((label, cid(label, venv)))
        if py is not None:
            bin_ = py.parent
            runs.append(("pyinfra", lambda rep: record("pyinfra", timed(
                [str(bin_ / "pyinfra"), str(inv), str(deploy), "-y", "--parallel",
                 str(len(hosts))], cwd=base / "pyinfra"))))
            runs.append(("fabric", lambda rep: record("fabric threads", timed(
                [str(py), str(fab)]))))
        for rep in range(args.repeat):
            order = runs[rep % len(runs):] + runs[:rep % len(runs)]  # rotate: no tool always first
            for label, fn in order:
                try:
                    fn(rep)
                except RuntimeError as exc:  # one tool failing leaves the others measured
                    print(f"bench_fanout: {label} run {rep} failed: {str(exc)[:300]}",
                          file=sys.stderr)
        dag = None
        if not args.skip_dag:
            dplan, critical, levels = dag_plan(base / "dag", hosts, key)
            for rep in range(args.repeat):
                for label, venv in variants:
                    name = f"dag-{label}-{rep}"
                    record(f"{label} dag boot", timed([str(CLOUDINITD), "boot", str(dplan),
                                                       "--name", name, "-q", "--json"], venv))
                    subprocess.run([str(CLOUDINITD), "terminate", name, "-q"], env=venv,
                                   check=True, capture_output=True)
            dag = (critical, levels)
        for _ in range(args.startup_repeat):
            for label, venv in variants:
                record(f"{label} --help", timed([str(CLOUDINITD), "--help"], venv))
                record(f"{label} validate", timed([str(CLOUDINITD), "validate", str(plan)], venv))
            if py is not None:
                record("pyinfra --version", timed([str(py.parent / "pyinfra"), "--version"]))
            record("floor: import validate's libraries", timed(
                [sys.executable, "-c", f"import {', '.join(FLOOR_VALIDATE)}"]))
            # held a moment, so the PSS sampler sees the whole import
            record("floor: boot's libraries, imported and held", timed(
                [sys.executable, "-c", f"import {', '.join(FLOOR_BOOT)}, time; time.sleep(0.3)"]))
        load1 = os.getloadavg()
        report(args, results, dag, load0, load1, versions(py) if py else "")
    finally:
        remote = sys.modules.get("cloudinitd.remote")
        if remote is not None:
            remote.close_all()
        for h in hosts:
            h.close()  # by the pid (process group) it was started with
        shutil.rmtree(base, ignore_errors=True)
    return 0


def report(args: argparse.Namespace, results: dict[str, list[tuple[float, float, float]]],
           dag: tuple[float, float] | None, load0: tuple[float, ...],
           load1: tuple[float, ...], peer_versions: str) -> None:
    med = {k: median([s for s, _, _ in v]) for k, v in results.items()}
    pss = {k: max(m for _, m, _ in v) for k, v in results.items()}
    cpu = {k: median([c for _, _, c in v]) for k, v in results.items()}
    print(f"\n## bench_fanout: {args.hosts} loopback sshd hosts, medians of {args.repeat}"
          f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores,"
          f" {os.uname().sysname} {os.uname().release})")
    if peer_versions:
        print(f"peers: {peer_versions}")
    print("\n| what | seconds (median) | CPU s (median) | CPU ms per host | peak PSS MB |"
          "\n|---|---|---|---|---|")
    for k in results:
        print(f"| {k} | {med[k]:.2f} | {cpu[k]:.2f} | {1000 * cpu[k] / args.hosts:.0f} |"
              f" {pss[k]:.0f} |")
    print()
    boot = med.get("cloudinitd boot")
    term = med.get("cloudinitd terminate")
    for peer in ("pyinfra", "fabric threads"):
        if peer in med and boot:
            print(f"W2 boot / {peer}: {boot / med[peer]:.2f} x"
                  f"   (boot + terminate / {peer}: {(boot + term) / med[peer]:.2f} x)")
    if boot and term:
        print(f"terminate / boot: {term / boot:.2f} x")
    if "pyinfra" in pss and "cloudinitd boot" in pss:
        print(f"peak PSS cloudinitd boot / pyinfra: {pss['cloudinitd boot'] / pss['pyinfra']:.2f} x")
    floor_t = med.get("floor: import validate's libraries")
    floor_m = pss.get("floor: boot's libraries, imported and held")
    if floor_t and "cloudinitd validate" in med:
        print(f"validate {med['cloudinitd validate']:.2f} s; importing its libraries alone"
              f" ({', '.join(FLOOR_VALIDATE)}) {floor_t:.2f} s: {med['cloudinitd validate'] - floor_t:+.2f} s"
              " of cloudinitd's own")
    if floor_m and "cloudinitd boot" in pss:
        print(f"peak PSS boot {pss['cloudinitd boot']:.0f} MB; its libraries alone"
              f" ({', '.join(FLOOR_BOOT)}) {floor_m:.0f} MB: {pss['cloudinitd boot'] - floor_m:+.0f} MB"
              f" for the run itself" + (f" (pyinfra's whole run: {pss['pyinfra']:.0f} MB)"
                                         if "pyinfra" in pss else ""))
    if "base boot" in med:
        for k in ("boot", "terminate", "dag boot", "--help", "validate"):
            if f"base {k}" in med:
                print(f"{k}: {med[f'base {k}']:.2f} s before -> {med[f'cloudinitd {k}']:.2f} s"
                      f" after ({med[f'cloudinitd {k}'] / med[f'base {k}']:.2f} x)")
    if dag:
        critical, levels = dag
        print(f"DAG (40 services): critical path {critical:.2f} s, level barriers would take"
              f" {levels:.2f} s")
        for label in ("cloudinitd", "base"):
            if f"{label} dag boot" in med:
                got = med[f"{label} dag boot"]
                print(f"  {label} boot {got:.2f} s = {got / critical:.2f} x critical path"
                      f" ({got - critical:+.2f} s)")
    print(f"load average: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} at start,"
          f" {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} at end")
    print("\nraw: " + json.dumps({k: [round(s, 3) for s, _, _ in v] for k, v in results.items()}))


if __name__ == "__main__":
    sys.exit(main())
