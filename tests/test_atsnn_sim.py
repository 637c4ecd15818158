"""AT-SNN in the IR and the cycle simulator (issue 13).

The loader puts TokenHalt/TokenMerge nodes into the Spikformer's graph and the
simulator's token kernels (an implementation separate from the torch model)
must give the torch model's logits and tokens processed. Operation counts are
checked against hand counts: a token that halts contributes no operation
after it halts, and a Linear layer's synops are its fan-out times the input
spikes of the active tokens only (from the torch model's own SPS output).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nmtoolchain.frontends.atsnn_graph import graph_from_atsnn
from nmtoolchain.frontends.torch_fx import graph_from_module
from nmtoolchain.models.atsnn import ATSpikformer, atsnn_digits
from nmtoolchain.models.spikformer import Spikformer, TimeMean
from simulators.cycle.interpreter import Simulator, simulate

STEPS = 4
SHAPE = (1, 8, 8)


def _model(**cfg) -> ATSpikformer:
    torch.manual_seed(3)
    model = ATSpikformer(**atsnn_digits(**cfg))
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(0.2, 1.5)
        if isinstance(m, torch.nn.Linear):
            m.weight.data *= 4.0  # token-dependent spikes in channel 0 of the stream
    return model.eval()


def _images(n: int = 6) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(0)) * 2.0


def _torch_run(model, x):
    model.reset_states()
    with torch.no_grad():
        return TimeMean(model, STEPS)(x)


BLOCK_NODES = ("blocks_0_attn_q_linear", "blocks_0_attn_k_linear", "blocks_0_attn_v_linear",
               "blocks_0_attn_q_lif", "matmul", "matmul_1", "blocks_0_attn_proj_linear",
               "blocks_0_mlp_fc1_linear", "blocks_0_mlp_fc2_linear", "blocks_0_mlp_fc2_lif")


@pytest.mark.parametrize("cfg", [dict(gate_scale=3.0, gate_center=4.0),
                                 dict(gate_scale=3.0, gate_center=4.0, readout="final"),
                                 dict(gate_scale=3.0, gate_center=4.0, depth=2),
                                 dict(gate_scale=3.0, gate_center=4.0, merge="bipartite",
                                      merge_r=3),
                                 dict(gate_scale=3.0, gate_center=4.0, depth=2,
                                      merge="threshold", merge_threshold=0.5, merge_block=1)])
def test_simulator_matches_the_torch_model(cfg):
    model = _model(**cfg)
    x = _images()
    ref = _torch_run(model, x)
    graph = graph_from_atsnn(model, SHAPE, "atsnn", steps=STEPS)
    res = simulate(graph, x, STEPS)
    assert torch.allclose(res.outputs["output"].mean(1), ref, atol=1e-4)
    processed = model.stats.processed  # (B, T, L, N)
    for l in range(model.config["depth"]):
        got = res.counts.counter(f"blocks_{l}_halt", "tokens_active")
        want = processed[:, :, l].sum((0, 2)).numpy()
        assert np.array_equal(got, want), l
    assert (processed.sum() < processed.numel()) or cfg.get("merge")


def test_never_halting_gate_is_the_spikformer_graph_exactly():
    plain = Spikformer(**atsnn_digits())
    model = _model(gate_center=1e4, halt_eps=0.0, readout="final")
    plain.load_state_dict(model.state_dict())
    x = _images()
    dense = simulate(graph_from_module(plain.eval(), SHAPE, origin="plain"), x, STEPS)
    halted = simulate(graph_from_atsnn(model, SHAPE, "atsnn", steps=STEPS), x, STEPS)
    assert torch.equal(dense.outputs["output"], halted.outputs["output"])
    for name in BLOCK_NODES:
        for counter in ("synops", "macs", "neuron_updates", "spikes_out"):
            assert np.array_equal(dense.counts.counter(name, counter),
                                  halted.counts.counter(name, counter)), (name, counter)
    assert halted.counts.counter("blocks_0_halt", "tokens_active").tolist() == [6 * 16] * STEPS


def test_halted_tokens_contribute_no_operations_after_halting():
    """A gate that fires at once (h = 1): every token halts at step 0, so from
    step 1 on the block counts nothing (hand count: zero), while step 0 counts
    exactly what the unadapted graph counts at step 0."""
    plain = Spikformer(**atsnn_digits())
    model = _model(gate_scale=0.0, gate_center=-100.0)
    plain.load_state_dict(model.state_dict())
    x = _images()
    dense = simulate(graph_from_module(plain.eval(), SHAPE, origin="plain"), x, STEPS)
    halted = simulate(graph_from_atsnn(model, SHAPE, "atsnn", steps=STEPS), x, STEPS)
    assert halted.counts.counter("blocks_0_halt", "tokens_active").tolist() == [96, 0, 0, 0]
    for name in BLOCK_NODES:
        for counter in ("synops", "macs", "neuron_updates", "spikes_out", "events_in"):
            got = halted.counts.counter(name, counter)
            assert np.all(got[1:] == 0), (name, counter, got)
            assert got[0] == dense.counts.counter(name, counter)[0], (name, counter)
    # the SPS runs before halting: unaffected
    for name in ("patch_embed_stages_0_0", "patch_embed_rpe_0"):
        assert np.array_equal(halted.counts.counter(name, "synops"),
                              dense.counts.counter(name, "synops"))


def test_linear_synops_of_a_masked_token_pattern_by_hand():
    """q_linear (32 -> 32) receives the SPS tokens of the active tokens only:
    synops(t) = 32 x the input spikes of tokens processed at step t, with the
    tokens from the torch model's SPS and the pattern from the torch model."""
    model = _model(gate_scale=3.0, gate_center=4.0)
    x = _images()
    _torch_run(model, x)
    active = model.stats.processed[:, :, 0]  # (B, T, N)
    assert 0 < int(active.sum()) < active.numel()
    model.reset_states()
    with torch.no_grad():
        tokens = model.patch_embed(x.unsqueeze(1).expand(-1, STEPS, *SHAPE))  # (B, T, N, D)
    want = 32 * (tokens * active[..., None]).sum((0, 2, 3)).numpy()
    res = simulate(graph_from_atsnn(model, SHAPE, "atsnn", steps=STEPS), x, STEPS)
    assert np.allclose(res.counts.counter("blocks_0_attn_q_linear", "synops"), want)
    # neuron updates of q_lif: 32 neurons per processed token
    assert np.array_equal(res.counts.counter("blocks_0_attn_q_lif", "neuron_updates"),
                          32 * active.sum((0, 2)).numpy())


def test_token_graph_runs_step_major_and_float_only():
    from nmtoolchain.errors import BadInputError, UnsupportedOpError

    graph = graph_from_atsnn(_model(), SHAPE, "atsnn", steps=STEPS)
    assert Simulator(graph).schedule == "step"
    with pytest.raises(BadInputError, match="token"):
        Simulator(graph, schedule="layer")
    with pytest.raises(UnsupportedOpError, match="blocks_0_halt"):
        Simulator(graph, numerics="loihi")


def test_block_major_order_is_refused_by_the_loader():
    from nmtoolchain.errors import BadInputError

    with pytest.raises(BadInputError, match="halt_order"):
        graph_from_atsnn(_model(halt_order="block"), SHAPE, "atsnn")


def test_loihi_refuses_naming_the_token_node(tmp_path):
    from nmtoolchain.cli import main
    from nmtoolchain.models import save_checkpoint

    cfg = atsnn_digits(merge="bipartite", merge_r=2)
    path = save_checkpoint("atsnn", cfg, _model(merge="bipartite", merge_r=2),
                           tmp_path / "a.pt", input_shape=list(SHAPE))
    from nmtoolchain.targets.loihi2 import loihi2_refusals
    from nmtoolchain.frontends.torch_loader import load_torch_file

    refused = loihi2_refusals(load_torch_file(path))
    assert [r.node for r in refused[:2]] == ["blocks_0_merge", "blocks_0_halt"]
    assert main(["export", str(path), "--target", "loihi2", "-o", str(tmp_path / "o")]) == 2


def test_report_shows_tokens_next_to_synops_and_energy(tmp_path):
    from nmtoolchain.report.simulation import build_report, write_html

    model = _model(gate_scale=3.0, gate_center=4.0)
    x = _images()
    _torch_run(model, x)
    graph = graph_from_atsnn(model, SHAPE, "atsnn", steps=STEPS)
    res = simulate(graph, x, STEPS)
    rep = build_report(graph, res, ["loihi2"])
    tok = rep["tokens"]
    processed = model.stats.processed  # (B, T, L, N)
    assert tok["processed_per_sample"] == pytest.approx(float(processed.sum()) / len(x))
    assert tok["unadapted_per_sample"] == 16 * 1 * STEPS
    assert tok["per_block_step"][0] == pytest.approx(
        (processed[:, :, 0].sum((0, 2)).float() / len(x)).tolist())
    # the heat map of the first sample is its processed pattern, per block and step
    assert np.array_equal(np.asarray(tok["sample_map"][0]), processed[0, :, 0].float().numpy())
    out = write_html(rep, tmp_path / "r.html")
    text = out.read_text()
    assert "Tokens processed" in text and 'alt="token heat map"' in text


def test_cli_simulate_prints_tokens_processed(tmp_path, capsys):
    from nmtoolchain.cli import main
    from nmtoolchain.models import save_checkpoint

    cfg = atsnn_digits(gate_scale=3.0, gate_center=4.0)
    path = save_checkpoint("atsnn", cfg, _model(gate_scale=3.0, gate_center=4.0),
                           tmp_path / "a.pt", input_shape=list(SHAPE))
    assert main(["simulate", str(path), "--dataset", "digits", "--samples", "8", "-T",
                 str(STEPS)]) == 0
    out = capsys.readouterr().out
    assert "tokens processed (token x block x step) per sample" in out
    assert "blocks_0_halt: per step" in out
