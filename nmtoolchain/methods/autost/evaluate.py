"""Scoring many candidates' energy at initialisation: in process, on a local
process pool (``workers``), or on a Ray cluster (``ray_address``).

Each job is independent (one candidate: build, simulate, price) and results
come back in submission order, so a search gives the same answer whatever
runs the jobs. Ray is an optional extra, imported only when asked for.

What makes scoring cheap without changing what is measured: the default
input is one all-ones image (the released code's input; a batch of identical
all-ones images gives identical per-sample counts, so more samples only cost
time), each pool worker runs torch on one thread (two processes on two cores
instead of two oversubscribed thread pools) and imports torch and the
simulator once, when it starts, and a job's result is cached by architecture
and settings, so a candidate is never simulated twice in one process.
"""
from __future__ import annotations

import concurrent.futures as cf
import functools
import multiprocessing
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from nmtoolchain.errors import BadInputError, MissingVendorError
from nmtoolchain.methods.autost.space import Candidate, model_config


@dataclass(frozen=True)
class EnergyJob:
    """What every job shares: the profile, rule, batch, seed and model settings.
    The input is ``batch`` all-ones images (the released code's data)."""

    profile: str = "cmos45nm"
    rule: Optional[str] = None
    batch: int = 1
    seed: int = 0
    num_classes: int = 100

    def describe(self) -> Dict[str, Any]:
        """What the energies rest on, for the results (input, batch, T, rule...)."""
        from hardware_profiles import load_profile
        from nmtoolchain.methods.autost.energy_at_init import default_rule
        from nmtoolchain.methods.autost.space import STEPS

        rule = self.rule or default_rule(self.profile) or load_profile(self.profile).default_rule
        return {**asdict(self), "input": "ones", "steps": STEPS, "rule": rule}


def energy_of(genes: Tuple[int, ...], job: EnergyJob) -> float:
    """pJ per inference of one initialised candidate (a picklable top-level job,
    cached by architecture and settings within a process)."""
    return _energy_cached(tuple(genes), job)


@functools.lru_cache(maxsize=4096)
def _energy_cached(genes: Tuple[int, ...], job: EnergyJob) -> float:
    from nmtoolchain.methods.autost.energy_at_init import energy_at_init

    cfg = model_config(Candidate.decode(genes), num_classes=job.num_classes)
    return energy_at_init(cfg, job.profile, job.rule, batch=job.batch, seed=job.seed).total_pj


def _worker_start() -> None:
    """Pool worker start-up: torch on one thread, the simulator imported once."""
    import torch

    import nmtoolchain.methods.autost.energy_at_init  # noqa: F401  (import cost paid once)
    import simulators.cycle  # noqa: F401

    torch.set_num_threads(1)


class Scorer:
    """Callable ``(candidates) -> [pJ]``: in order, on 1..N local processes or Ray."""

    def __init__(self, job: EnergyJob, workers: int = 1, ray_address: Optional[str] = None
                 ) -> None:
        if workers < 1:
            raise BadInputError(f"--workers must be >= 1, got {workers}")
        self.job, self.workers, self.ray_address = job, int(workers), ray_address
        self._pool: Optional[cf.ProcessPoolExecutor] = None
        self._ray = None

    def __call__(self, cands: Sequence[Candidate]) -> List[float]:
        genes = [c.encode() for c in cands]
        if self.ray_address is not None:
            return self._by_ray(genes)
        if self.workers == 1 or len(genes) <= 1:
            return [energy_of(g, self.job) for g in genes]
        if self._pool is None:  # spawn: no torch state copied into children
            self._pool = cf.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start)
        chunk = max(1, min(8, len(genes) // (4 * self.workers)))
        return list(self._pool.map(energy_of, genes, [self.job] * len(genes), chunksize=chunk))

    def _by_ray(self, genes: List[Tuple[int, ...]]) -> List[float]:
        if self._ray is None:
            try:
                import ray
            except ImportError:
                raise MissingVendorError("--ray needs the optional 'ray' package "
                                         "(pip install ray)") from None
            if not ray.is_initialized():
                ray.init(address=self.ray_address or None, ignore_reinit_error=True,
                         log_to_driver=False)
            self._ray = (ray, ray.remote(energy_of))
        ray, remote = self._ray
        return [float(v) for v in ray.get([remote.remote(g, self.job) for g in genes])]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> "Scorer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["EnergyJob", "energy_of", "Scorer"]
