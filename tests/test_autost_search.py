"""AutoST search: the published constants, legality, determinism for a seed,
the fit constraint, and the CLI's files and one-line errors."""
from __future__ import annotations

import json
import math

import pytest

from nmtoolchain import api
from nmtoolchain.cli import main
from nmtoolchain.methods.autost.search import FitConstraint, SearchConfig, run_search
from nmtoolchain.methods.autost.space import SPACES, Candidate, get_space, model_config
from nmtoolchain.models.spikformer import build_spikformer


def test_published_constants_and_spaces():
    c = SearchConfig()
    assert (c.population, c.iterations, c.select, c.mutations, c.crossovers) == \
        (50, 20, 10, 25, 25)
    assert (c.s_prob, c.m_prob, c.min_params, c.max_params, c.num_classes) == \
        (0.4, 0.2, 11e6, 12e6, 100)
    # seeds.md §3.1
    assert SPACES["tiny"].embed_dims == (192, 256, 320, 384)
    assert SPACES["tiny"].depths == tuple(range(1, 11))
    assert SPACES["small"].embed_dims == (256, 320, 384, 448, 512)
    assert SPACES["small"].depths == tuple(range(2, 13))
    assert SPACES["base"].mlp_ratios == (3, 4, 5, 6)
    assert SPACES["base"].embed_dims == (384, 448, 512, 576, 640, 704, 768)
    assert SPACES["base"].depths == tuple(range(4, 16))
    assert all(s.heads == (4, 8) for s in SPACES.values())
    cand = Candidate.decode((2, 3, 5, 4, 8, 256))
    assert cand == Candidate(2, (3, 5), (4, 8), 256) and cand.encode() == (2, 3, 5, 4, 8, 256)
    cfg = build_spikformer(model_config(cand)).config
    assert cfg["variant"] == "autost" and cfg["num_classes"] == 100
    assert cfg["heads"] == [4, 8] and cfg["mlp_ratio"] == [3, 5]


@pytest.fixture(scope="module")
def small_runs():
    return run_search(SearchConfig(seed=7)), run_search(SearchConfig(seed=7)), \
        run_search(SearchConfig(seed=8))


def test_full_default_search_is_deterministic_for_a_seed(small_runs):
    a, b, other = small_runs
    assert [ev.candidate for ev in a.evaluated] == [ev.candidate for ev in b.evaluated]
    assert a.best.candidate == b.best.candidate and a.best.fitness == b.best.fitness
    assert [ev.candidate for ev in a.evaluated] != [ev.candidate for ev in other.evaluated]
    # 50 initial + 20 generations of 50 (the space never runs dry here)
    assert len(a.evaluated) == 50 + 20 * 50


def test_evaluated_candidates_are_legal_unique_and_best_is_the_max(small_runs):
    a = small_runs[0]
    space = get_space("small")
    cands = [ev.candidate for ev in a.evaluated]
    assert len(set(cands)) == len(cands)
    for ev in a.evaluated:
        assert space.contains(ev.candidate)
        assert 11e6 <= ev.score.parameters <= 12e6
        assert ev.fitness == ev.score.gflops
    assert a.best.fitness == max(ev.fitness for ev in a.evaluated)
    # the search improves on random sampling: the best beats the initial population's
    first = [ev.fitness for ev in a.evaluated if ev.generation == 0]
    assert a.best.fitness >= max(first)


def test_fit_constraint_uses_the_mappers_lower_bound():
    cand = Candidate(1, (4,), (8,), 192)
    ok, info = FitConstraint.parse("loihi2:1000").check(cand)
    assert ok and info["chips"] >= 1
    tight = FitConstraint("loihi2", max(1, info["chips"] - 1))
    assert tight.check(cand)[0] is (info["chips"] <= tight.max_chips)
    # Speck runs non-leaky IAF only: AutoST's PLIF transformer never fits one Speck
    ok, info = FitConstraint.parse("speck").check(cand)
    assert not ok and info["fallback"]


def test_energy_budget_makes_candidates_infeasible():
    # a stand-in energy model (pJ = parameters) exercises the objective only
    energies = lambda cands: [candidate_params(c) for c in cands]  # noqa: E731
    budget = 11.5e6 * 1e-12  # J: half the window is over budget
    res = run_search(SearchConfig(space="tiny", iterations=2, seed=1, energy_budget_j=budget),
                     energies)
    over = [ev for ev in res.evaluated if ev.energy_pj * 1e-12 > budget]
    assert over and all(math.isinf(ev.fitness) for ev in over)
    assert res.best.energy_pj * 1e-12 <= budget


def candidate_params(cand: Candidate) -> float:
    from nmtoolchain.methods.autost.proxies import candidate_score
    return float(candidate_score(cand).parameters)


def test_cli_search_writes_candidates_best_config_and_plot(tmp_path, capfd):
    code = main(["search", "--space", "tiny", "--seed", "3", "-o", str(tmp_path), "--json"])
    out, err = capfd.readouterr()
    assert code == 0, err
    info = json.loads(out)
    lines = (tmp_path / "candidates.jsonl").read_text().splitlines()
    assert len(lines) == info["evaluated"] == 1050
    best = json.loads((tmp_path / "best_config.json").read_text())
    assert best["config"]["embed_dim"] == info["best"]["embed_dim"]
    assert (tmp_path / "proxy_vs_energy.png").stat().st_size > 1000
    graph = api.load(tmp_path / "best.pt")  # other nmtc commands take the checkpoint
    assert graph.totals()["macs"] * 4 == info["best"]["macs_clean"]


@pytest.mark.parametrize("args, needle", [
    (["--space", "huge"], "unknown AutoST search space"),
    (["--params", "12-11"], "--params"),
    (["--params", "x"], "--params"),
    (["--fit", "loihi2:0"], "--fit"),
])
def test_cli_search_bad_options_are_one_line(args, needle, capfd):
    code = main(["search", *args])
    _, err = capfd.readouterr()
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err
