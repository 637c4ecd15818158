"""AutoST's evolutionary search (``reference/seeds.md`` §3.5), with an energy
objective and a hardware-fit constraint added.

The loop is the released ``evolution.py`` (AutoFormer's): an initial
population of ``population`` random legal candidates; per iteration the
population joins the top-``select`` pool (sorted by fitness, descending),
``mutations`` children come from mutating random parents of the pool (depth
and D re-drawn with probability ``s_prob``, each block's ratio and heads with
``m_prob``; at most 10 × ``mutations`` tries), ``crossovers`` children from
gene-wise uniform crossover of two pool parents of the same depth (≤ 50
re-draws to match depths; at most 10 × ``crossovers`` tries), and random legal
candidates top the population up. A candidate is legal when it was never
evaluated, its parameter count (torch's, 100-class head) lies in the window,
and, when asked, it fits the target (``fit``). One ``random.Random(seed)``
drives every draw, so a seed fixes the candidates and the best.

Fitness is AutoST's FLOPs proxy (syops ops[0] in GFLOPs, maximised). Beyond
the paper: ``energy_weight`` w subtracts w × energy at initialisation (mJ,
any profile); ``energy_budget_j`` makes a candidate above the budget
infeasible (fitness −inf, kept out of the pool). Energy needs a simulation
per candidate, so each generation's new candidates are scored in one batch
by the chosen :class:`~nmtoolchain.methods.autost.evaluate.Scorer` (local
process pool or Ray), in the order they were drawn (results do not depend on
the number of workers).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from nmtoolchain.errors import BadInputError
from nmtoolchain.methods.autost.proxies import StaticScore, candidate_score
from nmtoolchain.methods.autost.space import (STEPS, Candidate, SearchSpace, get_space,
                                              model_config, random_candidate)


@dataclass(frozen=True)
class FitConstraint:
    """The candidate must fit on at most ``max_chips`` chips of ``profile``
    (``loihi2:K``), or on one Speck (``speck``), by the lower bound of
    :func:`nmtoolchain.mapping.place` (the placement export and reports use).
    For Speck the declared mapper itself must place the graph."""

    profile: str
    max_chips: int = 1

    @classmethod
    def parse(cls, text: str) -> "FitConstraint":
        """``loihi2:4``, ``loihi1:2`` or ``speck``."""
        name, _, k = text.partition(":")
        try:
            chips = int(k) if k else 1
        except ValueError:
            chips = 0
        if not name or chips < 1:
            raise BadInputError(f"--fit {text!r}: expected PROFILE[:CHIPS] with CHIPS >= 1, "
                                "e.g. loihi2:4 or speck")
        return cls(name, chips)

    def check(self, cand: Candidate) -> Tuple[bool, Dict[str, Any]]:
        """(fits, what the mapper said)."""
        from nmtoolchain.mapping import place
        from nmtoolchain.methods.autost.arch_graph import spikformer_graph

        pl = place(spikformer_graph(model_config(cand)), self.profile)
        info = {"profile": self.profile, "mapper": pl.mapper, "cores": pl.n_cores,
                "chips": pl.chips, "fallback": pl.fallback_reason}
        fits = pl.chips <= self.max_chips
        if self.profile.startswith("speck"):
            fits = fits and not pl.fallback_reason
        return fits, info


@dataclass
class SearchConfig:
    """The published constants (AutoST ``evolution.py`` defaults) and the extras."""

    space: str = "small"
    population: int = 50
    iterations: int = 20
    select: int = 10
    mutations: int = 25
    crossovers: int = 25
    s_prob: float = 0.4
    m_prob: float = 0.2
    min_params: float = 11e6
    max_params: float = 12e6
    num_classes: int = 100
    seed: int = 0
    energy_weight: float = 0.0            # fitness -= w x E_init [mJ]
    energy_budget_j: Optional[float] = None
    profile: str = "cmos45nm"
    fit: Optional[FitConstraint] = None

    def needs_energy(self) -> bool:
        return self.energy_weight != 0.0 or self.energy_budget_j is not None


@dataclass
class Evaluated:
    """One legal, evaluated candidate (a line of candidates.jsonl)."""

    candidate: Candidate
    score: StaticScore
    fitness: float = float("nan")
    energy_pj: Optional[float] = None
    fit: Optional[Dict[str, Any]] = None
    generation: int = 0

    def as_dict(self) -> Dict[str, Any]:
        c = self.candidate
        return {"genes": list(c.encode()), "label": c.label(), "depth": c.depth,
                "embed_dim": c.embed_dim, "mlp_ratio": list(c.mlp_ratios),
                "heads": list(c.heads), "generation": self.generation,
                "fitness": self.fitness if math.isfinite(self.fitness) else None,
                "energy_init_pj": self.energy_pj, "fit": self.fit, **self.score.as_dict()}


@dataclass
class SearchResult:
    """Every evaluated candidate (in evaluation order), the best, and timings."""

    config: SearchConfig
    evaluated: List[Evaluated]
    best: Evaluated
    top: List[Evaluated]
    wall_s: float
    draws: int                     # candidates drawn (legal or not)
    notes: List[str] = field(default_factory=list)
    #: what energy at init rests on (profile, rule, input, batch, steps, seed); None: not measured
    energy_setup: Optional[Dict[str, Any]] = None


#: scores a batch of candidates' energies (pJ) in order; None: no energy term
EnergyFn = Callable[[Sequence[Candidate]], List[float]]


class Evolution:
    """The search state: the cache (``vis``), the pool, the population."""

    def __init__(self, config: SearchConfig, energy_fn: Optional[EnergyFn] = None,
                 progress: Optional[Callable[[int, int], None]] = None) -> None:
        if config.needs_energy() and energy_fn is None:
            raise BadInputError("an energy weight or budget needs an energy scorer")
        if not 0 < config.select <= config.population:
            raise BadInputError(f"select {config.select} must be in 1..population")
        self.cfg = config
        self.space: SearchSpace = get_space(config.space)
        self.rng = random.Random(config.seed)
        self.energy_fn = energy_fn
        self.progress = progress
        self.vis: Dict[Candidate, Optional[Evaluated]] = {}  # None: seen, illegal
        self.evaluated: List[Evaluated] = []
        self.pending: List[Evaluated] = []
        self.pool: List[Evaluated] = []
        self.draws = 0
        self.generation = 0

    # -------------------------------------------------------------- legality
    def is_legal(self, cand: Candidate) -> bool:
        """Never seen, in the space, parameters in the window, fits the target."""
        self.draws += 1
        if cand in self.vis or not self.space.contains(cand):
            return False
        self.vis[cand] = None
        score = candidate_score(cand, STEPS, num_classes=self.cfg.num_classes)
        if not self.cfg.min_params <= score.parameters <= self.cfg.max_params:
            return False
        fit = None
        if self.cfg.fit is not None:
            ok, fit = self.cfg.fit.check(cand)
            if not ok:
                return False
        ev = Evaluated(cand, score, fit=fit, generation=self.generation)
        self.vis[cand] = ev
        self.pending.append(ev)
        return True

    def _finish_pending(self) -> None:
        """Energy (one batch) and fitness for the candidates made legal since the last call."""
        batch, self.pending = self.pending, []
        if batch and self.energy_fn is not None:
            for ev, e in zip(batch, self.energy_fn([ev.candidate for ev in batch])):
                ev.energy_pj = float(e)
        for ev in batch:
            ev.fitness = self.fitness(ev)
        self.evaluated.extend(batch)
        if self.progress is not None:
            self.progress(len(self.evaluated), self.generation)

    def fitness(self, ev: Evaluated) -> float:
        """GFLOPs (syops), minus the energy term; −inf above the energy budget."""
        f = ev.score.gflops
        if ev.energy_pj is not None:
            if self.cfg.energy_budget_j is not None and ev.energy_pj * 1e-12 > \
                    self.cfg.energy_budget_j:
                return float("-inf")
            f -= self.cfg.energy_weight * ev.energy_pj * 1e-9  # pJ -> mJ
        return f

    # ------------------------------------------------------------- operators
    def _legal_from(self, draw: Callable[[], Candidate], want: int, tries: int
                    ) -> List[Candidate]:
        out: List[Candidate] = []
        while len(out) < want and tries > 0:
            tries -= 1
            cand = draw()
            if self.is_legal(cand):
                out.append(cand)
        return out

    def random_fill(self, population: List[Candidate], cap: int = 100000) -> List[Candidate]:
        """Top ``population`` up with random legal candidates."""
        while len(population) < self.cfg.population:
            cap -= 1
            if cap < 0:
                raise BadInputError(
                    f"AutoST search: no legal candidate found in {self.draws} draws from the "
                    f"'{self.space.name}' space (window {self.cfg.min_params / 1e6:g}-"
                    f"{self.cfg.max_params / 1e6:g} M parameters"
                    + (f", fit {self.cfg.fit.profile}:{self.cfg.fit.max_chips}"
                       if self.cfg.fit else "") + ")")
            cand = random_candidate(self.space, self.rng)
            if self.is_legal(cand):
                population.append(cand)
        return population

    def mutate(self, parent: Candidate) -> Candidate:
        sp, rng, c = self.space, self.rng, self.cfg
        depth, ratios, heads = parent.depth, list(parent.mlp_ratios), list(parent.heads)
        if rng.random() < c.s_prob:
            new = rng.choice(sp.depths)
            if new > depth:
                ratios += [rng.choice(sp.mlp_ratios) for _ in range(new - depth)]
                heads += [rng.choice(sp.heads) for _ in range(new - depth)]
            else:
                ratios, heads = ratios[:new], heads[:new]
            depth = new
        for i in range(depth):
            if rng.random() < c.m_prob:
                ratios[i] = rng.choice(sp.mlp_ratios)
        for i in range(depth):
            if rng.random() < c.m_prob:
                heads[i] = rng.choice(sp.heads)
        dim = rng.choice(sp.embed_dims) if rng.random() < c.s_prob else parent.embed_dim
        return Candidate(depth, tuple(ratios), tuple(heads), dim)

    def crossover(self) -> Candidate:
        rng = self.rng
        parents = [ev.candidate for ev in self.pool]
        p1, p2 = rng.choice(parents), rng.choice(parents)
        tries = 50
        while p1.depth != p2.depth and tries > 0:
            tries -= 1
            p1, p2 = rng.choice(parents), rng.choice(parents)
        if p1.depth != p2.depth:
            return p1  # already seen: rejected as illegal
        genes = tuple(rng.choice(pair) for pair in zip(p1.encode(), p2.encode()))
        return Candidate.decode(genes)

    def _update_pool(self, population: Sequence[Candidate]) -> None:
        pool = self.pool + [self.vis[c] for c in population]
        pool = [ev for ev in pool if math.isfinite(ev.fitness)]
        pool.sort(key=lambda ev: ev.fitness, reverse=True)  # stable: ties keep order
        self.pool = pool[:self.cfg.select]

    # ------------------------------------------------------------------ run
    def run(self) -> SearchResult:
        t0 = time.perf_counter()
        c = self.cfg
        population = self.random_fill([])
        self._finish_pending()
        for it in range(c.iterations):
            self._update_pool(population)
            if not self.pool:
                raise BadInputError("AutoST search: every candidate is over the energy budget")
            self.generation = it + 1
            children = self._legal_from(
                lambda: self.mutate(self.rng.choice(self.pool).candidate), c.mutations,
                10 * c.mutations)
            children += self._legal_from(self.crossover, c.crossovers, 10 * c.crossovers)
            population = self.random_fill(children)
            self._finish_pending()
        self._update_pool(population)
        ranked = sorted((ev for ev in self.evaluated if math.isfinite(ev.fitness)),
                        key=lambda ev: ev.fitness, reverse=True)
        return SearchResult(c, self.evaluated, ranked[0], ranked[:c.select],
                            time.perf_counter() - t0, self.draws)


def run_search(config: SearchConfig, energy_fn: Optional[EnergyFn] = None,
               progress: Optional[Callable[[int, int], None]] = None) -> SearchResult:
    """Run AutoST's evolution with ``config`` (see the module docstring)."""
    return Evolution(config, energy_fn, progress).run()


__all__ = ["SearchConfig", "FitConstraint", "Evaluated", "SearchResult", "Evolution",
           "run_search"]
