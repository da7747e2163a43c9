"""The regression gate: worker processes, paired interleaved measurement, and both modes.

``against``: REF's convcore (checked out into a temporary git worktree) and the working
tree's run in two worker processes, timed round by round in alternating order; the gate
reads the median of the per-round ratios. ``save``/``compare``: one worker times the
configurations and a calibration GEMM in the same rounds, so times are kept relative to
the machine's speed and can be compared across runs on one machine.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile

import numpy as np

from convcore.bench import measure
from convcore.bench.configs import Config
from convcore.bench.stats import (
    Verdict,
    bootstrap_ci,
    judge,
    median_of_minima,
    nested_ratio_ci,
    paired_ratios,
)

__all__ = [
    "GateError",
    "Worker",
    "DEFAULT_AGAINST_THRESHOLD",
    "DEFAULT_COMPARE_THRESHOLD",
    "against",
    "record",
    "compare",
    "load_record",
]

# Defaults from A/A runs on the development machine (README, "Benchmarking").
DEFAULT_AGAINST_THRESHOLD = 0.10
DEFAULT_COMPARE_THRESHOLD = 0.15
SAMPLE_SECONDS = 0.01  # target length of one sample (minimum of several calls)
RECORD_FORMAT = "convcore-bench-record/2"
RECORD_PROCESSES = 3  # worker processes per --save/--compare run


class GateError(RuntimeError):
    """The gate could not run (bad ref, a worker failed); the message says why."""


def pinned_environment(tree, threads: int) -> dict:
    """Environment of a worker: imports convcore from ``tree`` with ``threads`` threads."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    for name in measure.THREAD_VARIABLES:
        env[name] = str(threads)
    return env


class Worker:
    """A measurement process importing convcore from ``tree`` (see :mod:`.measure`)."""

    def __init__(self, tree, threads: int, name: str):
        self.name = name
        self._log = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(
            [sys.executable, measure.__file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=pinned_environment(tree, threads),
        )

    def request(self, op: str, **fields):
        self._proc.stdin.write(json.dumps(dict(op=op, **fields)) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            self._log.seek(0)
            last = (self._log.read().strip().splitlines() or ["no output"])[-1]
            raise GateError(f"the {self.name} worker stopped: {last}")
        reply = json.loads(line)
        if "error" in reply:
            raise GateError(f"the {self.name} worker failed: {reply['error']}")
        return reply

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError, GateError):
            self.request("quit")
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


@contextlib.contextmanager
def _workers(trees: dict, threads: int):
    started = {}
    try:
        for name, tree in trees.items():
            started[name] = Worker(tree, threads, name)
        yield started
    finally:
        for worker in started.values():
            worker.close()


def _load(workers: dict, configs: list[Config], progress) -> list[int]:
    """Warm every worker up on every configuration; return calls per sample per config."""
    progress(f"warming up {len(configs)} configurations in {len(workers)} worker(s)")
    warm = {}
    for name, worker in workers.items():
        reply = worker.request("load", specs=[c.spec() for c in configs])
        warm[name] = reply["warm"]
        progress(f"  {name}: {reply['module']}")
    slowest = np.max(list(warm.values()), axis=0)
    return [measure.calls_for(t, SAMPLE_SECONDS) for t in slowest]


def _paired_rounds(workers, indices, calls, rounds: int, progress) -> dict:
    """Times per config index and worker: one sample each per round, rounds outermost.

    Spreading each configuration's rounds over the whole run, instead of measuring them
    back to back, keeps a burst of load from another process from landing in most of one
    configuration's rounds; the order of the two workers alternates from one sample to
    the next.
    """
    names = list(workers)
    times = {i: {name: [] for name in names} for i in indices}
    for r in range(rounds):
        if r % 5 == 0:
            progress(f"round {r + 1}/{rounds}")
        for j, i in enumerate(indices):
            for name in names if (r + j) % 2 == 0 else names[::-1]:
                times[i][name].append(workers[name].request("time", index=i, calls=calls[i])["t"])
    return times


def _paired_verdict(cfg: Config, times: dict, threshold: float, remeasured=False) -> Verdict:
    ratios = paired_ratios(times["old"], times["new"])
    ratio = float(np.median(ratios))
    ci = bootstrap_ci(ratios)
    old, new = float(np.median(times["old"])), float(np.median(times["new"]))
    return Verdict(cfg.label, old, new, ratio, ci, judge(ratio, ci, threshold), remeasured)


def _git(args, cwd) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        raise GateError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "git failed")
    return proc.stdout.strip()


def working_tree(cwd=".") -> pathlib.Path:
    """The git working tree containing ``cwd``; it must hold the convcore package."""
    try:
        top = pathlib.Path(_git(["rev-parse", "--show-toplevel"], cwd))
    except (GateError, FileNotFoundError) as exc:
        raise GateError(f"--against needs a git checkout of convcore ({exc})") from None
    if not (top / "convcore" / "__init__.py").is_file():
        raise GateError(f"{top} is not a convcore checkout (no convcore/__init__.py)")
    return top


@contextlib.contextmanager
def checkout(ref: str, repo: pathlib.Path):
    """Check ``ref`` out into a temporary git worktree; remove it afterwards."""
    try:
        commit = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], repo)
    except GateError:
        commit = ""
    if not commit:
        raise GateError(f"unknown git ref {ref!r}")
    with tempfile.TemporaryDirectory(prefix="convcore-ref-") as tmp:
        tree = pathlib.Path(tmp) / "tree"
        _git(["worktree", "add", "--detach", "--quiet", str(tree), commit], repo)
        try:
            if not (tree / "convcore" / "__init__.py").is_file():
                raise GateError(f"{ref} has no convcore package")
            yield tree, commit
        finally:
            with contextlib.suppress(GateError):
                _git(["worktree", "remove", "--force", str(tree)], repo)
            with contextlib.suppress(GateError):
                _git(["worktree", "prune"], repo)


def _gate(configs, measure_all, progress) -> list[Verdict]:
    """Measure all configurations; re-measure the flagged ones once and keep the second verdict.

    ``measure_all(indices, remeasured)`` returns a verdict per index.
    """
    verdicts = measure_all(list(range(len(configs))), remeasured=False)
    flagged = [i for i, v in enumerate(verdicts) if v.slower]
    if flagged:
        for i in flagged:
            progress(f"{configs[i].label}: {verdicts[i].change:+.1%}, measuring it again")
        for i, verdict in zip(flagged, measure_all(flagged, remeasured=True)):
            verdicts[i] = verdict
    return verdicts


def against(ref, configs, *, threshold, rounds=15, threads=1, cwd=".", progress=print):
    """Gate the working tree's convcore against ``ref``'s.

    Parameters
    ----------
    ref : str
        A git ref of the repository containing ``cwd``.
    configs : list of Config
        Configurations to time.
    threshold : float
        Allowed slowdown, 0.10 for 10%.
    rounds : int
        Rounds of paired samples per configuration.
    threads : int
        BLAS and Numba threads of both workers.
    cwd : path-like
        A directory inside the working tree to measure.
    progress : callable
        Receives one-line progress messages.

    Returns
    -------
    verdicts : list of Verdict
        One per configuration, in order.
    commit : str
        The commit ``ref`` resolved to.

    Raises
    ------
    GateError
        Not a convcore checkout, an unknown ref, or a worker that failed.
    """
    new_tree = working_tree(cwd)
    with checkout(ref, new_tree) as (old_tree, commit):
        progress(f"old: {ref} ({commit[:12]}) in {old_tree}; new: {new_tree}")
        with _workers({"old": old_tree, "new": new_tree}, threads) as workers:
            calls = _load(workers, configs, progress)

            def measure_all(indices, remeasured):
                times = _paired_rounds(workers, indices, calls, rounds, progress)
                return [_paired_verdict(configs[i], times[i], threshold, remeasured) for i in indices]

            return _gate(configs, measure_all, progress), commit


def _calibrated_rounds(workers: dict, indices, calls, rounds: int, progress) -> dict:
    """Per config index and worker: its times and the calibration GEMM's, one pair a sample.

    Rounds are outermost (as in :func:`_paired_rounds`); in each round a configuration is
    timed by one worker, in rotation, next to a calibration sample, in alternating order.
    """
    names = list(workers)
    out = {i: {name: ([], []) for name in names} for i in indices}
    for r in range(rounds):
        if r % 5 == 0:
            progress(f"round {r + 1}/{rounds}")
        for j, i in enumerate(indices):
            name = names[(r + j) % len(names)]
            pair = [("time", dict(index=i, calls=calls[i])), ("calibrate", dict(calls=5))]
            got = {
                op: workers[name].request(op, **kw)["t"] for op, kw in (pair if r % 2 == 0 else pair[::-1])
            }
            out[i][name][0].append(got["time"])
            out[i][name][1].append(got["calibrate"])
    return out


def _package_tree() -> pathlib.Path:
    import convcore

    return pathlib.Path(convcore.__file__).resolve().parents[1]


def _environment_info(tree: pathlib.Path, threads: int) -> dict:
    import numba

    import convcore

    try:
        commit = _git(["rev-parse", "HEAD"], tree)
        dirty = bool(_git(["status", "--porcelain", "--", "convcore"], tree))
    except (GateError, FileNotFoundError):
        commit, dirty = None, None
    return dict(
        machine=dict(
            platform=platform.platform(),
            processor=platform.processor() or platform.machine(),
            cpus=os.cpu_count(),
            python=platform.python_version(),
        ),
        packages=dict(convcore=convcore.__version__, numpy=np.__version__, numba=numba.__version__),
        git=dict(commit=commit, dirty=dirty),
        threads=threads,
    )


def _record_workers(tree, threads):
    return _workers({f"process {k + 1}": tree for k in range(RECORD_PROCESSES)}, threads)


def record(configs, *, rounds=15, threads=1, progress=print) -> dict:
    """Time ``configs`` with calibration; return a record for :func:`compare` (JSON-ready)."""
    tree = _package_tree()
    with _record_workers(tree, threads) as workers:
        calls = _load(workers, configs, progress)
        samples = _calibrated_rounds(workers, range(len(configs)), calls, rounds, progress)
    results = [_result(cfg, samples[i]) for i, cfg in enumerate(configs)]
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return dict(format=RECORD_FORMAT, created=created, **_environment_info(tree, threads), results=results)


def _result(cfg: Config, samples: dict) -> dict:
    """A configuration's record: its typical best time, absolute and relative to calibration.

    ``samples`` maps each worker process to its ``(seconds, calibration)`` lists. Each
    process contributes its best round (across runs there is no pairing, and a load that
    lasts a whole run shifts a median of rounds); the record keeps the median of those
    bests over the processes, since one process can be persistently faster or slower than
    another (memory placement), which no re-measurement within it corrects.
    """
    seconds = [list(s) for s, _ in samples.values()]
    relative = [(np.asarray(s) / np.asarray(c)).tolist() for s, c in samples.values()]
    return dict(
        label=cfg.label,
        config=cfg.to_dict(),
        seconds=median_of_minima(seconds),
        relative=median_of_minima(relative),
        samples=dict(seconds=seconds, calibration=[list(c) for _, c in samples.values()], relative=relative),
    )


def load_record(path) -> dict:
    """Read a record written by ``convcore bench --save``."""
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except OSError as exc:
        raise GateError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise GateError(f"{path} is not a saved benchmark record: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        raise GateError(f"{path} is not a saved benchmark record (format {RECORD_FORMAT})")
    try:
        for r in data["results"]:
            Config.from_dict(r["config"]).geometry()
            if not (r["label"] and r["relative"] > 0 and r["seconds"] > 0 and all(r["samples"]["relative"])):
                raise ValueError("empty result")
    except (KeyError, TypeError, ValueError) as exc:
        raise GateError(f"{path}: a result is incomplete or invalid ({type(exc).__name__}: {exc})") from None
    return data


def compare(old: dict, *, threshold, rounds=15, threads=1, progress=print):
    """Time ``old``'s configurations now and compare; return ``(verdicts, new_record)``.

    Each side's times are relative to a fixed calibration GEMM measured next to them,
    round by round, in the same process; a configuration is slower when the ratio of the
    best relative times passes :func:`.stats.judge`.
    """
    configs = [Config.from_dict(r["config"]) for r in old["results"]]
    by_label = {r["label"]: r for r in old["results"]}
    new_results = {}

    def verdict(cfg, result, remeasured):
        before = by_label[cfg.label]
        ratio = result["relative"] / before["relative"]
        ci = nested_ratio_ci(before["samples"]["relative"], result["samples"]["relative"])
        slower = judge(ratio, ci, threshold)
        return Verdict(cfg.label, before["seconds"], result["seconds"], ratio, ci, slower, remeasured)

    def measure_all(indices, remeasured):
        samples = _calibrated_rounds(workers, indices, calls, rounds, progress)
        for i in indices:
            new_results[configs[i].label] = _result(configs[i], samples[i])
        return [verdict(configs[i], new_results[configs[i].label], remeasured) for i in indices]

    tree = _package_tree()
    with _record_workers(tree, threads) as workers:
        calls = _load(workers, configs, progress)
        verdicts = _gate(configs, measure_all, progress)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    new = dict(format=RECORD_FORMAT, created=created, **_environment_info(tree, threads))
    new["results"] = [new_results[c.label] for c in configs]
    return verdicts, new
