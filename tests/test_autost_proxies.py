"""AutoST proxies: hand-derived FLOPs, torch's parameter counts, the published
Spikformer-4-384 size, and the weight-free graph against the torch loader's."""
from __future__ import annotations

import random

import pytest
import torch

from nmtoolchain import api
from nmtoolchain.methods.autost.arch_graph import node_signature, spikformer_graph
from nmtoolchain.methods.autost.proxies import candidate_score, config_score
from nmtoolchain.methods.autost.space import SPACES, Candidate, model_config, random_candidate
from nmtoolchain.models.spikformer import build_spikformer

#: D = 16 (SPS widths 3, 2, 4, 8, 16), one block, 2 heads, MLP ratio 2, 8x8 input,
#: max-pools after conv2 and conv3: 8x8 -> 4x4 -> 2x2, N = 4 tokens, 10 classes
TINY = {"variant": "autost", "in_channels": 3, "input_size": 8, "embed_dim": 16, "depth": 1,
        "heads": [2], "mlp_ratio": [2], "pools": [False, False, True, True],
        "num_classes": 10, "qkv_bias": True}


def test_tiny_config_syops_flops_by_hand():
    # syops ops per step (seeds.md §1.4): conv = positions x C_out x 9 C_in (no bias);
    # BN 2 numel; PLIF numel; max-pool numel(input); linear numel(input) x out + out.
    # (The bias is booked once per step; syops books it once per call and divides by
    # the batch: documented deviation of the syops rule.)
    sps = (64 * 2 * 27 + 2 * 128 + 128          # conv0 8x8x2, BN, PLIF
           + 64 * 4 * 18 + 2 * 256 + 256        # conv1 8x8x4
           + 64 * 8 * 36 + 2 * 512 + 512 + 512  # conv2 8x8x8, BN, PLIF, max-pool(512)
           + 16 * 16 * 72 + 2 * 256 + 256       # conv3 4x4x16, BN, (no PLIF), max-pool(256)
           + 4 * 16 * 144 + 2 * 64)             # RPE conv 2x2x16, BN (no PLIF)
    assert sps == 58240
    qkv = 3 * ((4 * 16 * 16 + 16) + 2 * 64 + 64)  # Linear + bias, BN, PLIF
    block = (64 + qkv + 64                        # input PLIF, Q/K/V, attention PLIF
             + (4 * 16 * 16 + 16) + 2 * 64        # proj + BN
             + 64 + (4 * 16 * 32 + 32) + 2 * 128  # MLP: PLIF, fc1, BN
             + 128 + (4 * 32 * 16 + 16) + 2 * 64)  # PLIF, fc2, BN
    head = 16 * 10 + 10
    assert sps + block + head == 68122
    score = config_score(TINY, steps=4)
    assert score.flops_syops == 4 * 68122

    # clean MACs: convs, linears (no bias), Q·Kᵀ (h·N·N·dh) and A·V (h·N·N·dh), head
    convs = 64 * 2 * 27 + 64 * 4 * 18 + 64 * 8 * 36 + 16 * 16 * 72 + 4 * 16 * 144
    linears = 4 * (4 * 16 * 16) + 2 * (4 * 16 * 32)
    attention = 2 * (2 * 4 * 4 * 8)
    assert score.macs_clean == 4 * (convs + linears + attention + 160)


def test_tiny_config_parameters_match_torch_and_hand_count():
    convs = 3 * 2 * 9 + 2 * 4 * 9 + 4 * 8 * 9 + 8 * 16 * 9 + 16 * 16 * 9
    bns_sps = 2 * (2 + 4 + 8 + 16 + 16)
    block = 3 * (16 * 16 + 16 + 32) + (16 * 16 + 16 + 32) + (16 * 32 + 32 + 64) \
        + (32 * 16 + 16 + 32)
    plif_taus = 3 + 7  # one learnable w per PLIF module: 3 in the SPS, 7 per block
    hand = convs + bns_sps + block + 16 * 10 + 10 + plif_taus
    torch_count = sum(p.numel() for p in build_spikformer(TINY).parameters())
    assert hand == torch_count == config_score(TINY).parameters == 6526


def test_spikformer_4_384_parameters_as_published():
    # Spikformer paper: 9.32 M parameters for Spikformer-4-384 (CIFAR-10 head)
    cfg = {"variant": "spikformer", "embed_dim": 384, "depth": 4, "heads": 12,
           "mlp_ratio": 4, "num_classes": 10}
    assert round(config_score(cfg).parameters / 1e6, 2) == 9.32


@pytest.mark.parametrize("cfg", [
    dict(TINY),
    dict(TINY, variant="spikformer", depth=2, heads=[2, 4], mlp_ratio=[3, 2]),
    model_config(Candidate(2, (3, 5), (4, 8), 64)),
])
def test_weight_free_graph_counts_like_the_torch_loaders(cfg):
    c = build_spikformer(cfg).config
    loaded = api.load(build_spikformer(cfg), input_shape=(c["in_channels"], c["input_size"],
                                                            c["input_size"]))
    assert node_signature(spikformer_graph(cfg)) == node_signature(loaded)


def test_cached_candidate_score_equals_whole_graph_and_torch():
    rng = random.Random(3)
    for _ in range(5):
        cand = random_candidate(SPACES["tiny"], rng)
        assert candidate_score(cand) == config_score(model_config(cand))
    cand = Candidate(3, (3, 3, 3), (4, 8, 8), 512)  # the small space's best for seed 0
    with torch.device("meta"):  # parameter shapes only
        model = build_spikformer(model_config(cand))
    assert candidate_score(cand).parameters == sum(p.numel() for p in model.parameters())
