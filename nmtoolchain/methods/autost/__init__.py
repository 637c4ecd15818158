"""AutoST (Wang et al., arXiv 2307.00293): training-free architecture search
for spiking transformers (``reference/seeds.md`` §3).

* :mod:`~.space` — the tiny/small/base spaces, candidates, model configs.
* :mod:`~.arch_graph` — a candidate's IR graph without weights.
* :mod:`~.proxies` — the FLOPs proxy (syops-compatible and clean) from the
  shared static counter.
* :mod:`~.energy_at_init` — energy of the randomly initialised candidate,
  measured by the simulator and priced by :mod:`nmtoolchain.energy`.
* :mod:`~.search` — the evolutionary search with the published constants.
"""
from nmtoolchain.methods.autost.proxies import StaticScore, candidate_score, config_score
from nmtoolchain.methods.autost.search import (Evaluated, FitConstraint, SearchConfig,
                                               SearchResult, run_search)
from nmtoolchain.methods.autost.space import (SPACES, Candidate, SearchSpace, get_space,
                                              model_config)

__all__ = ["SPACES", "SearchSpace", "Candidate", "get_space", "model_config", "StaticScore",
           "candidate_score", "config_score", "SearchConfig", "FitConstraint", "Evaluated",
           "SearchResult", "run_search"]
