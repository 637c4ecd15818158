"""Run the malformed-input corpus through ``nmtc`` and count the outcomes.

Usage: ``python tests/malformed/run_corpus.py [--workers 2] [--sample N] [--fresh N]
[--timeout 20] [--json out.json]``

Cases run in a few long-lived worker processes (importing torch once per
worker keeps the whole corpus to minutes), each in its own empty directory,
calling :func:`nmtoolchain.cli.main` with stdout/stderr captured at the file
descriptor level and a per-case alarm. A worker killed by a signal is a
crash of the case it was running; a case that outlives its alarm is a hang.
``--fresh N`` also runs N cases each as its own ``python -m nmtoolchain.cli``
process, so messages printed once per process (library import notices) are
counted too.

A case passes when it exits 2 with exactly one stderr line and no traceback,
and leaves its directory as it found it; a byte-flipped or truncated file
that still loads may instead exit 0.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
#: the nmtc checkout under test (--code: e.g. an older one, for a before/after table)
CODE = ROOT

from generate import Case, build_cases, materialize  # noqa: E402


class _CaseTimeout(BaseException):
    """Raised by the alarm; a BaseException so nmtc's handlers do not swallow it."""


def _listing(d: Path) -> List[str]:
    out = []
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            out.append(os.path.relpath(os.path.join(root, n), d))
    return sorted(out)


def _restore_perms(d: Path) -> None:
    for root, dirs, _ in os.walk(d):
        for n in dirs:
            try:
                os.chmod(os.path.join(root, n), 0o755)
            except OSError:
                pass


def _allowed_ok(case: Case) -> bool:
    return case.may_load or case.name.startswith(("flip-", "trunc-", "suffix-"))


def _judge(case: Case, rc: int, err: str, left: List[str]) -> Dict:
    lines = [ln for ln in err.splitlines()]
    ok_codes = {case.expect} | ({0} if _allowed_ok(case) else set())
    problems = []
    if "Traceback" in err:
        problems.append("traceback")
    if rc not in ok_codes:
        problems.append(f"exit {rc}")
    if rc != 0 and len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines")
    if rc != 0 and left:
        problems.append(f"left {left[:3]}")
    if "pwned" in left:
        problems.append("code ran")
    return {"name": case.name, "rc": rc, "stderr": err[-2000:], "left": left,
            "problems": problems}


def worker(indices: List[int], results: Path, timeout: float, scratch: Path) -> None:
    """Run the cases ``indices`` in this process, appending one JSON line each."""
    os.environ.setdefault("COLUMNS", "120")
    from nmtoolchain.cli import main

    cases = build_cases()

    def on_alarm(signum, frame):
        raise _CaseTimeout()

    signal.signal(signal.SIGALRM, on_alarm)
    with open(results, "a", buffering=1) as log:
        for i in indices:
            case = cases[i]
            d = scratch / f"case{i:04d}"
            d.mkdir()
            log.write(json.dumps({"start": i}) + "\n")
            try:
                materialize(case, d)
            except Exception as x:  # noqa: BLE001 - a generator bug, reported as such
                log.write(json.dumps({"done": i, "name": case.name, "rc": None, "stderr": "",
                                      "left": [], "problems": [f"setup failed: {x!r}"]}) + "\n")
                continue
            before = _listing(d)
            out_f, err_f = d.parent / f"o{i}", d.parent / f"e{i}"
            saved = os.dup(1), os.dup(2)
            cwd = os.getcwd()
            with open(out_f, "wb") as o, open(err_f, "wb") as e:
                os.dup2(o.fileno(), 1)
                os.dup2(e.fileno(), 2)
                sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
                os.chdir(d)
                signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    rc = main(list(case.argv))
                except _CaseTimeout:
                    rc = -999
                except SystemExit as x:
                    rc = x.code if isinstance(x.code, int) else 1
                except BaseException as x:  # noqa: BLE001 - counted, not hidden
                    import traceback
                    traceback.print_exc()
                    rc = -1 if not isinstance(x, KeyboardInterrupt) else 130
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    os.chdir(cwd)
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os.dup2(saved[0], 1)
                    os.dup2(saved[1], 2)
                    os.close(saved[0])
                    os.close(saved[1])
                    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            err = err_f.read_bytes().decode(errors="replace")
            _restore_perms(d)
            left = sorted(set(_listing(d)) - set(before))
            rec = _judge(case, rc, err, left)
            if rc == -999:
                rec["problems"] = ["hang"]
            log.write(json.dumps({"done": i, **rec}) + "\n")
            shutil.rmtree(d, ignore_errors=True)


def _tail(scratch: Path) -> str:
    logs = sorted(scratch.glob("log*"), key=lambda p: p.stat().st_mtime)
    text = logs[-1].read_text(errors="replace").strip().splitlines() if logs else []
    return text[-1][:200] if text else ""


def _run_workers(indices: List[int], n: int, timeout: float, scratch: Path) -> Dict[int, Dict]:
    done: Dict[int, Dict] = {}
    pending = [indices[k::n] for k in range(n)]
    procs = []
    serial = iter(range(10**6))

    def spawn(k: int, todo: List[int]):
        k = next(serial)
        res = scratch / f"results{k}.jsonl"
        sd = scratch / f"w{k}"
        sd.mkdir()
        p = subprocess.Popen([sys.executable, __file__, "--worker", ",".join(map(str, todo)),
                              "--results", str(res), "--timeout", str(timeout), "--scratch",
                              str(sd)], env={**os.environ, "PYTHONPATH": str(CODE)},
                             stdout=subprocess.DEVNULL, stderr=open(scratch / f"log{k}", "wb"))
        return {"p": p, "res": res, "todo": todo, "seen": -1, "since": time.monotonic()}

    procs = [spawn(k, t) for k, t in enumerate(pending) if t]
    cases = build_cases()
    while procs:
        time.sleep(0.5)
        for entry in list(procs):
            p, res, todo = entry["p"], entry["res"], entry["todo"]
            rc = p.poll()
            lines = res.read_text().splitlines() if res.exists() else []
            recs = [json.loads(x) for x in lines]
            finished = {r["done"]: r for r in recs if "done" in r}
            done.update(finished)
            last_start = max([r["start"] for r in recs if "start" in r], default=None)
            if rc is None:
                if len(lines) != entry["seen"]:
                    entry["seen"], entry["since"] = len(lines), time.monotonic()
                if time.monotonic() - entry["since"] > timeout + 90:  # alarm could not fire
                    p.kill()
                    p.wait()
                    rc = -9
                else:
                    continue
            procs.remove(entry)
            rest = [i for i in todo if i not in finished]
            if rest and last_start is None:  # the worker died before its first case
                for i in rest:
                    done[i] = {"name": cases[i].name, "rc": rc, "stderr": "", "left": [],
                               "problems": [f"worker exit {rc}: {_tail(scratch)}"]}
                continue
            if rest and last_start is not None and last_start not in finished:
                why = ("hang" if rc == -9 else f"crash (signal {-rc})" if rc < 0
                       else f"worker exit {rc}: " + _tail(scratch))
                done[last_start] = {"name": cases[last_start].name, "rc": rc, "stderr": "",
                                    "left": [], "problems": [why]}
                rest = [i for i in rest if i != last_start]
            if rest:
                procs.append(spawn(0, rest))
    return done


def run_fresh(cases: List[Case], indices: List[int], timeout: float, scratch: Path) -> Dict[int, Dict]:
    """Each case as its own ``python -m nmtoolchain.cli`` process."""
    out = {}
    for i in indices:
        case = cases[i]
        d = scratch / f"fresh{i:04d}"
        d.mkdir()
        materialize(case, d)
        before = _listing(d)
        try:
            r = subprocess.run([sys.executable, "-m", "nmtoolchain.cli", *case.argv], cwd=d,
                               capture_output=True, text=True, timeout=timeout + 30,
                               env={**os.environ, "PYTHONPATH": str(CODE)})
            rc, err = r.returncode, r.stderr
        except subprocess.TimeoutExpired:
            rc, err = -999, ""
        _restore_perms(d)
        rec = _judge(case, rc, err, sorted(set(_listing(d)) - set(before)))
        if rc == -999:
            rec["problems"] = ["hang"]
        elif rc < 0:
            rec["problems"] = [f"crash (signal {-rc})"]
        out[i] = rec
        shutil.rmtree(d, ignore_errors=True)
    return out


def summarize(results: Dict[int, Dict]) -> Dict[str, int]:
    """The count table: cases, exit codes, tracebacks, crashes, hangs, bad stderr, leftovers."""
    rcs = collections.Counter(r["rc"] for r in results.values())
    probs = [p for r in results.values() for p in r["problems"]]
    table = {"cases": len(results)}
    for rc, n in sorted(rcs.items(), key=lambda kv: str(kv[0])):
        table[f"exit {rc}"] = n
    table["tracebacks"] = sum(p == "traceback" for p in probs)
    table["crashes"] = sum(p.startswith("crash") for p in probs)
    table["hangs"] = sum(p == "hang" for p in probs)
    table["stderr != 1 line"] = sum(p.endswith("stderr lines") for p in probs)
    table["left behind"] = sum(p.startswith("left") for p in probs)
    table["setup failed"] = sum(p.startswith("setup failed") for p in probs)
    table["code executions"] = sum(1 for r in results.values() if "pwned" in r.get("left", []))
    table["failing cases"] = sum(1 for r in results.values() if r["problems"])
    return table


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sample", type=int, default=0, help="run a random sample of N cases")
    ap.add_argument("--fresh", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", help="comma-separated name prefixes")
    ap.add_argument("--code", type=Path, help="run this nmtc checkout (default: this one)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker is not None:
        worker([int(x) for x in a.worker.split(",") if x], a.results, a.timeout, a.scratch)
        return 0
    global CODE
    if a.code is not None:
        CODE = a.code.resolve()
    cases = build_cases()
    idx = list(range(len(cases)))
    if a.only:
        idx = [i for i in idx if cases[i].name.startswith(tuple(a.only.split(",")))]
    if a.sample and a.sample < len(idx):
        idx = sorted(random.Random(16).sample(idx, a.sample))
    scratch = Path(tempfile.mkdtemp(prefix="nmtc-corpus-"))
    try:
        results = _run_workers(idx, a.workers, a.timeout, scratch)
        if a.fresh:
            picks = random.Random(7).sample(idx, min(a.fresh, len(idx)))
            for i, r in run_fresh(cases, picks, a.timeout, scratch).items():
                results[f"fresh{i}"] = r
    finally:
        _restore_perms(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
    table = summarize(results)
    for k, v in table.items():
        print(f"{k:>18}: {v}")
    for r in sorted(results.values(), key=lambda r: r["name"]):
        if r["problems"]:
            last = r["stderr"].strip().splitlines()[-1:] or [""]
            print(f"FAIL {r['name']}: {', '.join(r['problems'])}: {last[0][:200]}")
    if a.json:
        a.json.write_text(json.dumps({"table": table, "results": list(results.values())},
                                     indent=1, default=str))
    return 0 if table["failing cases"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
