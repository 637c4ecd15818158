"""AT-SNN (issue 13): token halting and merging in the Spikformer, checked
against independent references.

* A-ViT's token ACT written out in plain torch here, after NVlabs/A-ViT's loop
  (cumulative score, remainder, mean-field output, ponder cost), fed the block
  outputs the model produced, must give the model's halting pattern, ponder
  cost and logits.
* A gate that never fires reproduces the unadapted Spikformer exactly (torch
  model and simulator).
* ToMe bipartite matching on a hand-made four-token example; merging two
  identical tokens changes no output.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nmtoolchain.models.atsnn as atsnn_mod
from nmtoolchain.models import build_model
from nmtoolchain.models.atsnn import (ATSpikformer, atsnn_digits, bipartite_merge_map,
                                      ponder_loss)
from nmtoolchain.models.spikformer import Spikformer, TimeMean

STEPS = 4


def _images(n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g) * 2.0


def _tiny(**cfg) -> ATSpikformer:
    """A two-block digits AT-SNN with random weights (BN statistics randomised so
    the stream's first channel varies)."""
    torch.manual_seed(3)
    model = ATSpikformer(**atsnn_digits(depth=2, **cfg))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d) or isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(0.2, 1.5)
    return model.eval()


def avit_act_reference(outputs, gamma, beta, eps):
    """A-ViT's token ACT over a sequence of block outputs (B, N, D), one per
    (step, block) pair in visiting order, as in NVlabs/A-ViT's forward loop
    (spec seeds.md §4.2 with ``c >= 1 - eps``). Returns (halt pair index (B, N),
    remainder (B, N), ponder rho (B, N), mean-field output (B, N, D))."""
    b, n, d = outputs[0].shape
    c = torch.zeros(b, n)
    remainder = torch.ones(b, n)
    mask = torch.ones(b, n)
    rho = torch.zeros(b, n)
    out = torch.zeros(b, n, d)
    halt_at = torch.full((b, n), -1)
    for i, x in enumerate(outputs):
        h = torch.sigmoid(gamma * x[:, :, 0] - beta)
        if i == len(outputs) - 1:
            h = torch.ones_like(h)
        c = c + h * mask
        rho = rho + mask
        reached = (c >= 1 - eps).float() * mask
        not_reached = (c < 1 - eps).float() * mask
        out = out + x * (remainder * reached)[..., None] + x * (h * not_reached)[..., None]
        rho = rho + remainder * reached
        halt_at = torch.where(reached.bool(), torch.full_like(halt_at, i), halt_at)
        remainder = remainder - not_reached * h
        mask = not_reached
    return halt_at, remainder, rho, out


def _record_blocks(model, x, monkeypatch):
    """Run ``model`` on images ``x`` and return the block outputs in call order."""
    seen = []
    original = atsnn_mod.masked_block_step

    def spy(block, xs, active, sizes):
        y = original(block, xs, active, sizes)
        seen.append(y.squeeze(1).detach().clone())
        return y

    monkeypatch.setattr(atsnn_mod, "masked_block_step", spy)
    model.reset_states()
    with torch.no_grad():
        logits = TimeMean(model, STEPS)(x)
    return logits, seen


@pytest.mark.parametrize("gate_center", [2.5, 4.0])
def test_halting_matches_avit_act_reference(monkeypatch, gate_center):
    model = _tiny(gate_scale=3.0, gate_center=gate_center, halt_eps=0.05)
    x = _images()
    logits, outs = _record_blocks(model, x, monkeypatch)
    halt_at, remainder, rho, y = avit_act_reference(outs, 3.0, gate_center, 0.05)
    stats = model.stats
    order = model.pair_order(STEPS)
    # processed at pair i iff the token halts at i or later
    for i, (t, l) in enumerate(order):
        assert torch.equal(stats.processed[:, t, l], halt_at >= i), (t, l)
    assert torch.allclose(stats.rho, rho, atol=1e-5)
    assert torch.allclose(ponder_loss(stats), rho.mean(), atol=1e-5)
    # the classifier reads the mean over tokens of the mean-field output
    expected = model.head(y.mean(1))
    assert torch.allclose(logits, expected, atol=1e-4)
    # a non-trivial case: tokens halt at different pairs, before the forced last one
    assert (halt_at < len(order) - 1).any() and len(halt_at.unique()) >= 2
    assert ((remainder > 0) & (remainder < 1)).any()


def test_block_major_order_visits_blocks_first(monkeypatch):
    model = _tiny(gate_scale=3.0, gate_center=4.0, halt_order="block")
    x = _images(3)
    logits, outs = _record_blocks(model, x, monkeypatch)
    halt_at, _, rho, y = avit_act_reference(outs, 3.0, 4.0, 0.01)
    assert model.pair_order(2)[:3] == [(0, 0), (1, 0), (0, 1)]
    assert torch.allclose(model.stats.rho, rho, atol=1e-5)
    assert torch.allclose(logits, model.head(y.mean(1)), atol=1e-4)


def test_halted_token_is_frozen_and_silent():
    """After a token halts its stream is zero and its membranes do not move."""
    model = _tiny(gate_scale=3.0, gate_center=2.5)
    x = _images(4)
    model.reset_states()
    with torch.no_grad():
        TimeMean(model, STEPS)(x)
    processed = model.stats.processed  # (B, T, L, N)
    assert (~processed).any()
    # membranes of tokens never processed in the last step equal those at the step
    # they were last processed: rerun up to that point and compare
    b, n = 0, int(torch.nonzero(~processed[0, -1, 0])[0])
    last_t = int(processed[b, :, 0, n].nonzero().max())
    lif = model.blocks[0].attn.q_lif
    v_end = lif.v[b, n].clone()
    model.reset_states()
    with torch.no_grad():
        tokens = model.patch_embed(x.unsqueeze(1).expand(-1, STEPS, *x.shape[1:]))
        model.forward_tokens(tokens[:, :last_t + 1])
    # with fewer steps the last pair is forced earlier, but up to last_t the
    # token went through the same pairs; its membrane at the end must match
    assert torch.equal(lif.v[b, n], v_end)


def test_never_halting_gate_reproduces_the_unadapted_spikformer():
    """A gate that never fires (h = 0 until the forced last pair) with the
    Spikformer readout is the unadapted model, exactly."""
    torch.manual_seed(0)
    plain = Spikformer(**atsnn_digits())
    plain.eval()
    model = ATSpikformer(**atsnn_digits(gate_center=1e4, readout="final", halt_eps=0.0))
    model.load_state_dict(plain.state_dict())
    model.eval()
    x = _images(8)
    with torch.no_grad():
        assert torch.equal(TimeMean(model, STEPS)(x), TimeMean(plain, STEPS)(x))
    assert bool(model.stats.processed.all())


def test_tome_matching_on_a_hand_example():
    """Four tokens: A = {0, 2}, B = {1, 3}. Token 0 is closest to 3 (cos 0.99),
    token 2 to 1 (cos 0.6); r = 1 merges only 0 into 3."""
    x = torch.tensor([[[1.0, 0.1], [0.0, 1.0], [0.6, 0.8], [1.0, 0.0]]])
    active = torch.ones(1, 4, dtype=torch.bool)
    sizes = torch.ones(1, 4)
    m, act, sz = bipartite_merge_map(x, active, sizes, r=1)
    assert act.tolist() == [[False, True, True, True]]
    assert sz.tolist() == [[0.0, 1.0, 1.0, 2.0]]
    merged = m @ x
    assert torch.allclose(merged[0, 3], torch.tensor([1.0, 0.05]))
    assert torch.allclose(merged[0, 0], torch.zeros(2))
    assert torch.allclose(merged[0, 1:3], x[0, 1:3])
    # threshold 0.5: both A tokens merge (0 -> 3 at 0.995, 2 -> 1 at 0.8)
    m, act, sz = bipartite_merge_map(x, active, sizes, threshold=0.5)
    assert act.tolist() == [[False, True, False, True]]
    assert torch.allclose((m @ x)[0, 1], torch.tensor([0.3, 0.9]))


def test_merging_two_identical_tokens_changes_no_output():
    torch.manual_seed(1)
    plain = ATSpikformer(**atsnn_digits(gate_scale=3.0, gate_center=2.0)).eval()
    merged = ATSpikformer(**atsnn_digits(gate_scale=3.0, gate_center=2.0, merge="bipartite",
                                         merge_r=1)).eval()
    merged.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(5)
    tokens = (torch.rand(3, STEPS, 16, 32, generator=g) < 0.3).float()
    tokens += (torch.rand(3, STEPS, 16, 32, generator=g) < 0.3).float()
    tokens[:, :, 5] = tokens[:, :, 4]  # token 4 (A) and 5 (B) identical at every step
    with torch.no_grad():
        plain.reset_states()
        a = plain.forward_tokens(tokens)
        merged.reset_states()
        b = merged.forward_tokens(tokens)
    assert merged.stats.sizes[:, 5].tolist() == [2.0, 2.0, 2.0]
    assert not merged.stats.processed[:, :, :, 4].any()
    assert torch.allclose(a, b, atol=1e-5)


def test_atsnn_checkpoint_round_trip(tmp_path):
    from nmtoolchain.models import load_checkpoint, save_checkpoint

    cfg = atsnn_digits(merge="threshold", merge_threshold=0.8, gate_center=6.0)
    model = build_model("atsnn", cfg)
    path = save_checkpoint("atsnn", cfg, model, tmp_path / "a.pt", input_shape=[1, 8, 8])
    loaded, meta = load_checkpoint(path)
    assert meta["architecture"] == "atsnn" and loaded.config["merge"] == "threshold"


def test_bad_config_is_one_line():
    from nmtoolchain.errors import BadInputError

    with pytest.raises(BadInputError, match="halt_order"):
        ATSpikformer(**atsnn_digits(halt_order="diagonal"))
    with pytest.raises(BadInputError, match="merge_block"):
        ATSpikformer(**atsnn_digits(merge="bipartite", merge_block=3))


def test_distribution_prior_is_avit_kl_by_hand():
    """KL(g || p) with p the normalised mean halting score per pair (clamped to
    [0.01, 0.99]) and g a unit Gaussian over the pair index, computed in numpy."""
    from nmtoolchain.models.atsnn import ACTStats, distribution_prior

    scores = np.array([[0.1, 0.2, 0.6, 1.0], [0.3, 0.0, 0.4, 1.0]])
    stats = ACTStats(torch.zeros(2, 1, 4, 3, dtype=torch.bool), torch.zeros(2, 3),
                     torch.tensor(scores, dtype=torch.float32), torch.ones(2, 3))
    p = scores.mean(0)
    p = np.clip(p / p.sum(), 0.01, 0.99)
    g = np.exp(-0.5 * (np.arange(4) - 2.0) ** 2)
    g /= g.sum()
    want = float((g * (np.log(g) - np.log(p))).sum())
    assert float(distribution_prior(stats, target=2.0)) == pytest.approx(want, rel=1e-5)
