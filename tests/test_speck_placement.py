"""The ``speck`` mapper: ``nmtc report -p speck`` and ``nmtc export --target speck``
name the same core for every layer, and a graph Speck cannot take falls back
to the per-layer estimate with the export's own reason.

The expected cores are derived by hand from sinabs's memory formulas and the
per-core limits of sinabs 3.1.3's ``get_constraints`` (written here as literal
numbers, reference synsense_nir.md §1.2-1.3); the report and the export are
run through the real CLI. Neither needs sinabs.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nmtoolchain.cli import main
from nmtoolchain.errors import DoesNotFitError, UnsupportedOpError
from nmtoolchain.ir import (IF, Affine, BatchNorm, Conv2d, Flatten, Graph, Input, MaxPool2d,
                            Output, SumPool2d, save_graph)
from nmtoolchain.mapping import place

RNG = np.random.default_rng(7)


def _if() -> IF:
    return IF(v_threshold=1.0, v_min=-1.0, reset="subtract", spike="multi", compare=">=")


def _net() -> Graph:
    """conv 64->64 3x3 on 8x8 (kernel memory 64 * 2^(4+6) = 65536: only cores 5 and 6 hold
    it), BatchNorm, IF, sum-pool 2, conv 64->8 (kernel 64 * 2^(4+3) = 8192, neuron
    8 * 2^(2+2) = 128: every core), IF, Flatten, Linear 128->10 (kernel 8 * 2^(4+4) = 2048)."""
    g = Graph()
    g.add("input", Input(shape=(64, 8, 8)))
    g.add("c0", Conv2d(weight=RNG.uniform(-0.1, 0.1, (64, 64, 3, 3)).astype(np.float32),
                       padding=1), ["input"])
    g.add("bn0", BatchNorm(mean=np.zeros(64, np.float32), var=np.ones(64, np.float32),
                           weight=np.full(64, 1.5, np.float32), bias=np.zeros(64, np.float32)),
          ["c0"])
    g.add("n0", _if(), ["bn0"])
    g.add("p0", SumPool2d(kernel_size=2), ["n0"])
    g.add("c1", Conv2d(weight=RNG.uniform(-0.3, 0.3, (8, 64, 3, 3)).astype(np.float32),
                       padding=1), ["p0"])
    g.add("n1", _if(), ["c1"])
    g.add("flat", Flatten(), ["n1"])
    g.add("fc", Affine(weight=RNG.uniform(-0.3, 0.3, (10, 128)).astype(np.float32)), ["flat"])
    g.add("n2", _if(), ["fc"])
    g.add("output", Output(), ["n2"])
    return g.infer_shapes()


def test_report_and_export_name_the_same_cores(tmp_path, capfd):
    model = save_graph(_net(), tmp_path / "net.nmir")
    assert main(["report", str(model), "-p", "speck", "--samples", "2", "-T", "4",
                 "--json"]) == 0
    row = json.loads(capfd.readouterr().out)["profiles"]["speck"]
    placement = row["placement"]
    assert row["mapper"] == "speck" and placement["fallback_reason"] is None
    from_report = {name: layer["core_ids"] for name, layer in placement["layers"].items()}
    # by hand: layer 0 fits only cores 5, 6 (breadth-first matching takes 5); the other
    # two layers fit every core and take the lowest free ones
    assert from_report == {"n0": [5], "n1": [0], "n2": [1]}
    assert placement["layers"]["n0"]["nodes"] == ["c0", "bn0", "n0", "p0"]
    assert placement["layers"]["n2"]["nodes"] == ["flat", "fc", "n2"]

    out = tmp_path / "net.speck"
    assert main(["export", str(model), "--target", "speck", "-o", str(out)]) == 0
    capfd.readouterr()
    mapping = json.loads((out / "mapping.json").read_text())
    chip = json.loads((out / "chip_config.json").read_text())
    from_export = {L["name"]: L["core"] for L in mapping["layers"]}
    assert from_export == {"c0": 5, "c1": 0, "fc": 1}
    assert [L["core"] for L in chip["layers"]] == [5, 0, 1]
    assert [m["kernel_memory"] for m in mapping["layers"]] == [65536, 8192, 2048]
    assert placement["speck_mapping"]["assignment"] == mapping["assignment"]


def test_energy_uses_the_speck_cores():
    from nmtoolchain.energy import estimate_latency
    from simulators.cycle import Simulator

    g = _net()
    x = (RNG.random((1, 4, 64, 8, 8)) < 0.2).astype(np.float32)
    counts = Simulator(g, "float").run(x, 4).counts
    lat = estimate_latency(counts, "speck", graph=g)
    assert lat.placement.mapper == "speck"
    assert {L.name: L.cores for L in lat.placement.layers} == {"n0": (5,), "n1": (0,),
                                                               "n2": (1,)}


def _with_maxpool() -> Graph:
    g = Graph()
    g.add("input", Input(shape=(2, 8, 8)))
    g.add("c", Conv2d(weight=RNG.uniform(-1, 1, (4, 2, 3, 3)).astype(np.float32), padding=1),
          ["input"])
    g.add("n", _if(), ["c"])
    g.add("mp", MaxPool2d(kernel_size=2), ["n"])
    g.add("output", Output(), ["mp"])
    return g.infer_shapes()


def test_a_refused_node_falls_back_with_the_exports_reason(tmp_path, capfd):
    g = _with_maxpool()
    p = place(g, "speck")
    assert (p.mapper, p.declared_mapper) == ("per_layer", "speck")
    assert "node 'mp' (op MaxPool2d)" in p.fallback_reason
    assert "max pooling has no spiking equivalent on Speck" in p.fallback_reason
    assert "could not place this graph" in p.describe()
    with pytest.raises(UnsupportedOpError, match="max pooling has no spiking equivalent"):
        place(g, "speck", strict=True)
    # the export refuses the same node for the same reason
    assert main(["export", str(save_graph(g, tmp_path / "m.nmir")), "--target", "speck",
                 "-o", str(tmp_path / "o")]) == 2
    assert "max pooling has no spiking equivalent on Speck" in capfd.readouterr().err


def test_a_graph_beyond_the_chip_falls_back_and_says_why():
    g = Graph()
    g.add("input", Input(shape=(2, 8, 8)))
    prev = "input"
    for i in range(10):  # ten layers on a nine-core chip
        g.add(f"c{i}", Conv2d(weight=RNG.uniform(-1, 1, (2, 2, 3, 3)).astype(np.float32),
                              padding=1), [prev])
        g.add(f"n{i}", _if(), [f"c{i}"])
        prev = f"n{i}"
    g.add("output", Output(), [prev])
    p = place(g, "speck")
    assert p.mapper == "per_layer" and "10 layers" in p.fallback_reason \
        and "9 cores" in p.fallback_reason
    with pytest.raises(DoesNotFitError, match="10 layers"):
        place(g, "speck", strict=True)


def test_speck_mapper_needs_a_one_layer_per_core_profile(tmp_path):
    from hardware_profiles import load_profile
    from nmtoolchain.errors import BadInputError

    text = Path(load_profile("speck").path).read_text().replace(
        'mapping = "one-layer-per-core"', 'mapping = "split"')
    path = tmp_path / "split_speck.toml"
    path.write_text(text)
    with pytest.raises(BadInputError, match=r"mapper = 'speck' .* needs mapping = 'one-layer-per-core'"):
        load_profile(path)


def _yao_tiny(pool: int) -> Graph:
    """Yao et al. 2024 Table 1's tiny network, Input-32C3S1-32C3S2-32C3S1-AP4-32FC-Output
    (11 classes), on DVS events sum-pooled ``pool`` x ``pool`` from 128x128."""
    from nmtoolchain.ir import AvgPool2d

    def w(*shape):
        return RNG.uniform(-0.2, 0.2, shape).astype(np.float32)

    side = 128 // pool
    g = Graph()
    g.add("input", Input(shape=(2, side, side)))
    g.add("c1", Conv2d(weight=w(32, 2, 3, 3), padding=1), ["input"])
    g.add("n1", _if(), ["c1"])
    g.add("c2", Conv2d(weight=w(32, 32, 3, 3), stride=2, padding=1), ["n1"])
    g.add("n2", _if(), ["c2"])
    g.add("c3", Conv2d(weight=w(32, 32, 3, 3), padding=1), ["n2"])
    g.add("n3", _if(), ["c3"])
    g.add("ap4", AvgPool2d(kernel_size=4), ["n3"])
    g.add("flat", Flatten(), ["ap4"])
    g.add("fc1", Affine(weight=w(32, 32 * (side // 8) ** 2)), ["flat"])
    g.add("n4", _if(), ["fc1"])
    g.add("fc2", Affine(weight=w(11, 32)), ["n4"])
    g.add("n5", _if(), ["fc2"])
    g.add("output", Output(), ["n5"])
    return g.infer_shapes()


def test_yao_tiny_network_takes_five_cores_as_in_the_paper():
    """Table 1 of Yao et al. 2024 runs this network on 5 cores. Memory by hand
    (sinabs's formulas): c1 2*2^(4+5) = 1024 kernel, 32*2^(5+5) = 32768 neuron (cores
    0-4); c2, c3 32*2^(4+5) = 16384 kernel; fc1 as a 4x4 conv 32*2^(4+5) = 16384;
    fc2 32*2^(0+4) = 512."""
    p = place(_yao_tiny(4), "speck", strict=True)
    assert p.mapper == "speck" and p.n_cores == 5
    assert {L.name: L.cores for L in p.layers} == {"n1": (0,), "n2": (1,), "n3": (2,),
                                                   "n4": (3,), "n5": (4,)}
    assert [m.kernel for m in p.speck.layers] == [1024, 16384, 16384, 16384, 512]
    assert [m.neuron for m in p.speck.layers] == [32768, 8192, 8192, 32, 11]
    assert p.speck.layers[0].fits == [0, 1, 2, 3, 4]
    # without the DVS layer's 4x4 pooling the first layer does not fit any core
    with pytest.raises(DoesNotFitError, match="neuron memory is 131072"):
        place(_yao_tiny(2), "speck", strict=True)
