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
from convcore.bench.stats import Verdict, bootstrap_ci, judge, paired_ratios, ratio_of_medians_ci

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
RECORD_FORMAT = "convcore-bench-record/1"


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


def _paired_rounds(workers, index: int, calls: int, rounds: int) -> dict:
    """Times of config ``index`` per worker, one sample per round, alternating who goes first."""
    names = list(workers)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(workers[name].request("time", index=index, calls=calls)["t"])
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


def _gate(configs, measure_one, progress) -> list[Verdict]:
    """Measure each configuration; re-measure a flagged one once and keep the second verdict."""
    verdicts = []
    for i, cfg in enumerate(configs):
        progress(f"[{i + 1}/{len(configs)}] {cfg.label}")
        verdict = measure_one(i, cfg, remeasured=False)
        if verdict.slower:
            progress(f"  {verdict.change:+.1%} slower: measuring again")
            verdict = measure_one(i, cfg, remeasured=True)
        verdicts.append(verdict)
    return verdicts


def against(ref, configs, *, threshold, rounds=15, threads=1, cwd=".", progress=print):
    """Gate the working tree's convcore against ``ref``'s; return ``(verdicts, commit)``."""
    new_tree = working_tree(cwd)
    with checkout(ref, new_tree) as (old_tree, commit):
        progress(f"old: {ref} ({commit[:12]}) in {old_tree}; new: {new_tree}")
        with _workers({"old": old_tree, "new": new_tree}, threads) as workers:
            calls = _load(workers, configs, progress)

            def measure_one(i, cfg, remeasured):
                times = _paired_rounds(workers, i, calls[i], rounds)
                return _paired_verdict(cfg, times, threshold, remeasured)

            return _gate(configs, measure_one, progress), commit


def _calibrated_rounds(worker, index: int, calls: int, rounds: int) -> tuple[list, list]:
    """Per round: the config's time and the calibration GEMM's, measured back to back."""
    seconds, calibration = [], []
    for r in range(rounds):
        pair = [("time", dict(index=index, calls=calls)), ("calibrate", dict(calls=5))]
        got = {op: worker.request(op, **kw)["t"] for op, kw in (pair if r % 2 == 0 else pair[::-1])}
        seconds.append(got["time"])
        calibration.append(got["calibrate"])
    return seconds, calibration


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


def record(configs, *, rounds=15, threads=1, progress=print) -> dict:
    """Time ``configs`` with calibration; return a record for :func:`compare` (JSON-ready)."""
    tree = _package_tree()
    results = []
    with _workers({"current": tree}, threads) as workers:
        calls = _load(workers, configs, progress)
        for i, cfg in enumerate(configs):
            progress(f"[{i + 1}/{len(configs)}] {cfg.label}")
            seconds, calibration = _calibrated_rounds(workers["current"], i, calls[i], rounds)
            results.append(_result(cfg, seconds, calibration))
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return dict(format=RECORD_FORMAT, created=created, **_environment_info(tree, threads), results=results)


def _result(cfg: Config, seconds, calibration) -> dict:
    relative = (np.asarray(seconds) / np.asarray(calibration)).tolist()
    return dict(
        label=cfg.label,
        config=cfg.to_dict(),
        seconds=float(np.median(seconds)),
        relative=float(np.median(relative)),
        samples=dict(seconds=list(seconds), calibration=list(calibration), relative=relative),
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
    return data


def compare(old: dict, *, threshold, rounds=15, threads=1, progress=print):
    """Time ``old``'s configurations now and compare; return ``(verdicts, new_record)``.

    Each side's times are relative to its own run's calibration GEMM; a configuration is
    slower when the ratio of the median relative times passes :func:`.stats.judge`.
    """
    configs = [Config.from_dict(r["config"]) for r in old["results"]]
    by_label = {r["label"]: r for r in old["results"]}
    new_results = {}

    def measure_one(i, cfg, remeasured):
        seconds, calibration = _calibrated_rounds(workers["current"], i, calls[i], rounds)
        new_results[cfg.label] = result = _result(cfg, seconds, calibration)
        before = by_label[cfg.label]["samples"]["relative"]
        ratio = result["relative"] / float(np.median(before))
        ci = ratio_of_medians_ci(before, result["samples"]["relative"])
        old_seconds = by_label[cfg.label]["seconds"]
        return Verdict(
            cfg.label, old_seconds, result["seconds"], ratio, ci, judge(ratio, ci, threshold), remeasured
        )

    tree = _package_tree()
    with _workers({"current": tree}, threads) as workers:
        calls = _load(workers, configs, progress)
        verdicts = _gate(configs, measure_one, progress)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    new = dict(format=RECORD_FORMAT, created=created, **_environment_info(tree, threads))
    new["results"] = [new_results[c.label] for c in configs]
    return verdicts, new
