"""nmtc simulate / report: JSON figures against hand-derived energies, HTML, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nmtoolchain import ir
from nmtoolchain.cli import main


def _tiny_model(tmp_path):
    """2 inputs -> weights [1, 1] -> IF (threshold 10, never reached in 3 steps)."""
    g = ir.Graph({"dt": 1.0})
    g.add("x", ir.Input((2,)))
    g.add("fc", ir.Linear(np.ones((1, 2))), ["x"])
    g.add("n", ir.IF(v_threshold=10.0), ["fc"])
    g.add("y", ir.Output(), ["n"])
    path = tmp_path / "tiny.nmir"
    ir.save_graph(g, path)
    data = tmp_path / "ones.npz"
    np.savez(data, x=np.ones((1, 2), np.float32), y=np.zeros(1, np.int64))
    return path, data


def _json(args, capfd):
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_report_energies_match_hand_derivation(tmp_path, capfd):
    model, data = _tiny_model(tmp_path)
    rep = _json(["report", model, "--data", data, "-T", "3", "--profiles", "loihi1,cmos45nm",
                 "--json"], capfd)
    # both inputs spike every step: 2 events x fan-out 1 = 2 synops per step, 6 in 3 steps
    assert rep["totals_per_sample"]["synops"] == 6
    # Loihi 1 (Davies 2018): 23.6 pJ per synaptic op -> 141.6 pJ
    assert rep["profiles"]["loihi1"]["components_pj"]["synaptic"] == pytest.approx(6 * 23.6)
    # the neuron receives input every step: 3 active updates at 81 pJ
    assert rep["profiles"]["loihi1"]["components_pj"]["neuron"] == pytest.approx(3 * 81.0)
    # analytic 45 nm model, Spikformer rule: fr (1.0) x T (3) x FLOPs (2) = 6 ACs x 0.9 pJ
    assert rep["profiles"]["cmos45nm"]["energy_per_inference_pj"] == pytest.approx(6 * 0.9)
    assert rep["profiles"]["cmos45nm"]["rule"] == "spikformer"
    # one dense layer (fc + n) placed by loihi1's declared Loihi mapper on one core;
    # the analytic model has no cores
    assert rep["profiles"]["loihi1"]["mapper"] == "loihi"
    assert rep["profiles"]["loihi1"]["cores"] == 1
    assert rep["profiles"]["loihi1"]["placement"]["layers"] == {
        "n": {"nodes": ["fc", "n"], "cores": 1}}
    assert rep["profiles"]["cmos45nm"]["cores"] is None


def test_simulate_prints_tables_and_accuracy(capfd, tmp_path):
    model, data = _tiny_model(tmp_path)
    code = main(["simulate", str(model), "--data", str(data), "-T", "3", "--profile", "loihi2"])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert "loihi2" in out and "per layer" in out and "accuracy" in out


def test_report_writes_html_with_plots(tmp_path, capfd):
    model, data = _tiny_model(tmp_path)
    html_path = tmp_path / "r.html"
    rep = _json(["report", model, "--data", data, "-T", "2", "--html", html_path, "--json"], capfd)
    text = html_path.read_text()
    assert text.count("data:image/png;base64,") == 3  # per profile, per layer, spikes
    embedded = text.split('id="nmtc-report">')[1].split("</script>")[0]
    import html as _h

    assert json.loads(_h.unescape(embedded))["steps"] == rep["steps"] == 2


def test_measured_comparison_names_missing_measurement(tmp_path, capfd):
    model, data = _tiny_model(tmp_path)
    code = main(["report", str(model), "--data", str(data), "--measured", "nonexistent",
                 "--profiles", "loihi2"])
    _, err = capfd.readouterr()
    assert code == 2 and "nonexistent" in err


def test_input_shape_mismatch_is_one_line(tmp_path, capfd):
    model, _ = _tiny_model(tmp_path)
    code = main(["simulate", str(model), "--dataset", "digits"])
    _, err = capfd.readouterr()
    assert code == 2 and "(1, 8, 8)" in err and "(2,)" in err


def test_malformed_user_profile_is_named(tmp_path, capfd):
    model, data = _tiny_model(tmp_path)
    bad = tmp_path / "mychip.toml"
    bad.write_text("[chip]\nname = 'x'\n[energy]\nsynop = { value = 'lots', unit = 'pJ' }\n")
    code = main(["simulate", str(model), "--data", str(data), "--profile", str(bad)])
    _, err = capfd.readouterr()
    assert code == 2 and "mychip.toml" in err


def _half_weight_model(tmp_path):
    """2 inputs -> weights [1, 0] -> IF: 2 structural synapses, 1 non-zero."""
    g = ir.Graph({"dt": 1.0})
    g.add("x", ir.Input((2,)))
    g.add("fc", ir.Linear(np.array([[1.0, 0.0]])), ["x"])
    g.add("n", ir.IF(v_threshold=10.0), ["fc"])
    g.add("y", ir.Output(), ["n"])
    path = tmp_path / "half.nmir"
    ir.save_graph(g, path)
    data = tmp_path / "ones.npz"
    np.savez(data, x=np.ones((1, 2), np.float32), y=np.zeros(1, np.int64))
    return path, data


def test_rule_option_on_simulate_and_report_says_which_rule(tmp_path, capfd):
    """Both inputs spike every step for 3 steps. By hand: fanout books every
    structural synapse, 2 per step = 6 ACs; NeuroBench books input x non-zero
    weight, 1 per step = 3 ACs; Spikformer books dense MACs (2) x input rate (1)
    x T (3) = 6 ACs. loihi1 prices an AC at 23.6 pJ (Davies 2018)."""
    model, data = _half_weight_model(tmp_path)
    sim = _json(["simulate", model, "--data", data, "-T", "3", "-p", "loihi1",
                 "--rule", "neurobench", "--json"], capfd)
    assert sim["profiles"]["loihi1"]["rule"] == "neurobench"
    assert sim["profiles"]["loihi1"]["components_pj"]["synaptic"] == pytest.approx(3 * 23.6)
    rep = _json(["report", model, "--data", data, "-T", "3", "-p", "loihi1,cmos45nm",
                 "--rule", "fanout,neurobench", "--rule", "spikformer", "--json"], capfd)
    assert rep["profiles"]["loihi1"]["rule"] == "fanout"
    by = rep["by_rule"]
    assert [by[r]["loihi1"]["acs"] for r in ("fanout", "neurobench", "spikformer")] == [6, 3, 6]
    assert all(by[r]["loihi1"]["rule"] == r for r in by)
    assert by["neurobench"]["loihi1"]["macs"] == 0


def test_unknown_rule_is_one_line(tmp_path, capfd):
    model, data = _half_weight_model(tmp_path)
    code = main(["report", str(model), "--data", str(data), "-T", "2", "--rule", "flops"])
    _, err = capfd.readouterr()
    assert code == 2 and "--rule 'flops'" in err and "Traceback" not in err


def _rebuild(rep, pid):
    """Recompute one profile's energy per inference and time per step from the
    report JSON alone, with the per-op formulas written out here (numpy, not
    nmtoolchain.energy): synaptic = ACs x synop, MACs x mac, neurons by
    active/inactive update, spikes x (spike_out + hops x hop); a core's time is
    the sum over its layers of their work / cores, the step the slowest core
    plus the barrier; static = P x chips x step time."""
    row = rep["profiles"][pid]
    E, Tm = row["constants"]["energy"], row["constants"]["time"]
    ser = {n: {k: np.asarray(v) for k, v in d.items()} for n, d in rep["series_per_sample"].items()}
    steps = rep["steps"]
    zero = np.zeros(steps)
    dyn = 0.0
    for n, o in row["ops_per_node"].items():
        dyn += np.sum(o["acs"]) * E["synop"] + np.sum(o["macs"]) * E["mac"]
    for n, d in ser.items():
        inactive = np.maximum(d["neuron_updates"] - d["active_neurons"], 0)
        dyn += np.sum(d["active_neurons"] * E["neuron_update_active"]
                      + inactive * E["neuron_update_inactive"]
                      + d["spikes_out"] * (E["spike_out"] + row["hops_per_spike"] * E["hop"]))
    cores = {}
    for layer, ids in row["core_ids"].items():
        work = zero.copy()
        for n in row["placement"]["layers"][layer]["nodes"]:
            d = ser.get(n, {})
            get = lambda k: d.get(k, zero)  # noqa: E731
            work = work + (get("synops") * Tm["synop"] + get("macs") * Tm["mac"]
                           + get("active_neurons") * Tm["neuron_update_active"]
                           + np.maximum(get("neuron_updates") - get("active_neurons"), 0)
                           * Tm["neuron_update_inactive"] + get("spikes_out") * Tm["spike_out"])
        for c in ids:
            cores[c] = cores.get(c, zero) + work / len(ids)
    step_ns = np.stack(list(cores.values())).max(0) + Tm["barrier"]
    static = row["constants"].get("power", {}).get("static", 0.0) * row["chips"] * step_ns.sum()
    return dyn, static, step_ns.mean()


@pytest.mark.slow
def test_pilotnet_report_figures_rebuild_from_its_json(intel_netx, tmp_path, capfd):
    """PilotNet-LIF (Intel's network and image, bit-exact numerics): every
    profile's energy and time per step recomputed from the JSON alone."""
    root = intel_netx / "gts" / "pilotnet_lif"
    drive = tmp_path / "image.npy"
    np.save(drive, np.load(root / "image.npy").transpose(2, 1, 0))
    rep = _json(["report", root / "network.net", "--data", drive, "--numerics", "loihi",
                 "--reset-interval", "16", "-T", "16", "-p", "loihi2,loihi1", "--json"], capfd)
    for pid in ("loihi2", "loihi1"):
        row = rep["profiles"][pid]
        assert row["rule"] == "fanout" and row["cost_model"] == "per_op"
        dyn, static, step = _rebuild(rep, pid)
        assert dyn == pytest.approx(row["dynamic_pj"], rel=1e-9)
        assert static == pytest.approx(row["static_pj"], rel=1e-9)
        assert step == pytest.approx(row["time_per_step_ns"], rel=1e-9)


@pytest.mark.slow
def test_measured_without_data_runs_the_measurements_own_input(intel_netx, tmp_path, capfd):
    """--measured pilotnet_lif with no --data estimates Intel's image (the board
    measurement's input): the same synaptic ops as passing that image by hand."""
    root = intel_netx / "gts" / "pilotnet_lif"
    drive = tmp_path / "image.npy"
    np.save(drive, np.load(root / "image.npy").transpose(2, 1, 0))
    args = [root / "network.net", "--numerics", "loihi", "--reset-interval", "16", "-T", "4",
            "-p", "loihi2", "--json"]
    own = _json(["report", *args, "--measured", "pilotnet_lif"], capfd)
    given = _json(["report", *args, "--data", drive], capfd)
    assert "pilotnet_lif" in own["inputs"]
    assert own["totals_per_sample"] == given["totals_per_sample"]
