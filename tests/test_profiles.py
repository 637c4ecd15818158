"""Hardware profiles: bundled numbers equal their published values, every number
carries a source and a confidence, and malformed user files fail with one line
naming the file and the key."""
from __future__ import annotations

import re

import pytest

from hardware_profiles import (CONFIDENCE_LEVELS, KNOWN_RULES, Profile, list_profiles,
                               load_profile)
from nmtoolchain.energy.rules import RULES
from nmtoolchain.errors import BadInputError

BUNDLED = ["cmos45nm", "loihi1", "loihi2", "speck"]

GOOD_USER_PROFILE = """
[chip]
name = "My chip"
kind = "chip"

[resources]
cores = { value = 4, unit = "cores", source = "datasheet p. 3", confidence = "high" }
neurons_per_core = { value = 256, unit = "neurons", source = "datasheet p. 3", confidence = "high" }
synaptic_memory_per_core = { value = 8, unit = "KiB", source = "datasheet p. 4", confidence = "high" }
synapse_bits = { value = 8, unit = "bits", source = "datasheet p. 4", confidence = "high" }
max_fan_in_per_core = { value = 256, unit = "axons", source = "datasheet", confidence = "high" }
max_fan_out_per_core = { value = 256, unit = "axons", source = "datasheet", confidence = "high" }
weight_bits = { value = 4, unit = "bits", source = "datasheet", confidence = "high" }
state_bits = { value = 16, unit = "bits", source = "datasheet", confidence = "high" }
threshold_bits = { value = 16, unit = "bits", source = "datasheet", confidence = "high" }

[energy]
synop = { value = 0.002, unit = "nJ", source = "our measurement", confidence = "medium" }
mac = { value = 5, unit = "pJ", source = "our measurement", confidence = "medium" }
neuron_update_inactive = { value = 1, unit = "pJ", source = "our measurement", confidence = "low" }
neuron_update_active = { value = 2, unit = "pJ", source = "our measurement", confidence = "low" }
spike_out = { value = 0.5, unit = "pJ", source = "our measurement", confidence = "low" }
hop = { value = 0.5, unit = "pJ", source = "our measurement", confidence = "low" }

[time]
synop = { value = 1, unit = "ns", source = "simulation", confidence = "low" }
neuron_update_inactive = { value = 1, unit = "ns", source = "simulation", confidence = "low" }
neuron_update_active = { value = 2, unit = "ns", source = "simulation", confidence = "low" }
spike_out = { value = 1, unit = "ns", source = "simulation", confidence = "low" }
barrier = { value = 0.1, unit = "us", source = "simulation", confidence = "low" }

[power]
static = { value = 0.5, unit = "uW", source = "our measurement", confidence = "medium" }
"""


def _write(tmp_path, text, name="mychip.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------- bundled files
def test_bundled_profiles_are_listed():
    assert set(BUNDLED) <= set(list_profiles())


@pytest.mark.parametrize("name", BUNDLED)
def test_every_number_in_bundled_profile_has_source_and_confidence(name):
    profile = load_profile(name)
    numbers = list(profile.quantities())
    assert numbers, f"{name} has no numbers"
    for section, key, q in numbers:
        assert q.source.strip(), f"{name} [{section}] {key} has no source"
        assert q.confidence in CONFIDENCE_LEVELS, f"{name} [{section}] {key}"


@pytest.mark.parametrize("name", BUNDLED)
def test_fitted_numbers_say_what_they_cannot_validate(name):
    for section, key, q in load_profile(name).quantities():
        if q.fitted:
            text = (q.source + " " + q.note).lower()
            assert "validat" in text, f"{name} [{section}] {key} is fitted but does not say " \
                                      "which measurement it cannot validate against"


def test_loihi1_energies_and_times_equal_davies_2018_table_2():
    p = load_profile("loihi1")
    assert p.value("energy", "synop", "pJ") == pytest.approx(23.6)
    assert p.value("energy", "neuron_update_inactive", "pJ") == pytest.approx(52.0)
    assert p.value("energy", "neuron_update_active", "pJ") == pytest.approx(81.0)
    assert p.value("energy", "spike_out", "pJ") == pytest.approx(1.7)
    assert p.value("energy", "hop_east_west", "pJ") == pytest.approx(3.0)
    assert p.value("energy", "hop_north_south", "pJ") == pytest.approx(4.0)
    assert p.value("time", "synop", "ns") == pytest.approx(3.5)
    assert p.value("time", "neuron_update_active", "ns") == pytest.approx(8.4)
    assert p.value("time", "neuron_update_inactive", "ns") == pytest.approx(5.3)
    assert "Davies" in p.source("energy", "synop") and "Table 2" in p.source("energy", "synop")


def test_loihi1_resources_equal_davies_2018():
    p = load_profile("loihi1")
    assert p.value("resources", "cores") == 128
    assert p.value("resources", "neurons_per_core") == 1024
    assert p.value("resources", "synaptic_memory_per_core") == 128 * 1024 * 8
    assert p.value("resources", "max_fan_in_per_core") == 4096
    assert p.value("resources", "max_fan_out_per_core") == 4096


def test_cmos45nm_is_horowitz_mac_and_ac_with_no_neuron_or_static_terms():
    p = load_profile("cmos45nm")
    assert p.kind == "analytic"
    assert p.value("energy", "mac") == pytest.approx(4.6)
    assert p.value("energy", "synop") == pytest.approx(0.9)
    assert "Horowitz" in p.source("energy", "mac")
    for key in ("neuron_update_active", "neuron_update_inactive", "spike_out", "hop"):
        assert not p.has("energy", key)
    assert "power" not in p.sections and "time" not in p.sections
    assert p.default_rule == "spikformer"
    assert "spikformer" in str(p.chip.get("counting_convention"))


def test_loihi2_per_op_energies_are_marked_assumed_loihi1_priors():
    p = load_profile("loihi2")
    for key in ("synop", "neuron_update_active", "neuron_update_inactive", "spike_out"):
        q = p.quantity("energy", key)
        assert q.confidence == "assumed"
        assert "no published" in q.source.lower()
        assert q.canonical == load_profile("loihi1").value("energy", key)


def test_loihi2_records_the_pilotnet_board_measurement():
    p = load_profile("loihi2")
    ref = "reference.pilotnet_lif"
    assert p.value(ref, "dynamic_power", "W") == pytest.approx(0.447)
    assert p.value(ref, "dynamic_energy_per_inference", "mJ") == pytest.approx(1.09)
    assert p.value(ref, "step_time", "us") == pytest.approx(153.0)
    assert p.value(ref, "cores_used") == 74


def test_speck_core_memories_equal_sinabs_constraints():
    p = load_profile("speck")
    assert p.value("resources", "cores") == 9
    assert p.value("resources", "kernel_memory_per_core") == (
        16384, 16384, 16384, 32768, 32768, 65536, 65536, 16384, 16384)
    assert p.value("resources", "neuron_memory_per_core") == (
        65536, 65536, 65536, 32768, 32768, 16384, 16384, 16384, 16384)
    assert p.value("resources", "bias_memory_per_core") == (1024,) * 9
    assert p.value("power", "static", "mW") == pytest.approx(0.42)
    assert p.quantity("energy", "synop").confidence == "assumed"
    assert p.mapping == "one-layer-per-core"


def test_value_converts_to_requested_unit():
    p = load_profile("loihi2")
    assert p.value("power", "static") == pytest.approx(232.0)          # canonical mW
    assert p.value("power", "static", "W") == pytest.approx(0.232)
    assert p.value("reference.pilotnet_lif", "step_time") == pytest.approx(153_000.0)  # ns


def test_value_refuses_a_unit_of_another_dimension():
    with pytest.raises(BadInputError, match=r"\[energy\] synop"):
        load_profile("loihi1").value("energy", "synop", "ns")


def test_profile_rule_names_match_the_energy_rules():
    assert tuple(KNOWN_RULES) == tuple(RULES)


def test_unknown_profile_name_lists_bundled_profiles():
    with pytest.raises(BadInputError, match="loihi2"):
        load_profile("loihi9")


# ---------------------------------------------------------------- user files
def test_user_profile_loads_by_path_with_units_converted(tmp_path):
    path = _write(tmp_path, GOOD_USER_PROFILE)
    p = load_profile(path)
    assert isinstance(p, Profile) and p.id == "mychip" and p.name == "My chip"
    assert p.value("energy", "synop") == pytest.approx(2.0)        # 0.002 nJ in pJ
    assert p.value("time", "barrier") == pytest.approx(100.0)      # 0.1 us in ns
    assert p.value("power", "static") == pytest.approx(5e-4)       # 0.5 uW in mW
    assert p.value("resources", "synaptic_memory_per_core") == 8 * 8192
    assert p.source("energy", "mac") == "our measurement"
    assert load_profile(str(path)).id == "mychip"


@pytest.mark.parametrize("name,mapper", [("loihi1", "loihi"), ("loihi2", "loihi"),
                                         ("speck", "speck"), ("cmos45nm", "none")])
def test_bundled_profiles_declare_their_mapper(name, mapper):
    assert load_profile(name).mapper == mapper
    assert f'mapper = "{mapper}"' in (load_profile(name).path.read_text())


def test_a_user_split_chip_without_a_mapper_gets_the_loihi_mapper(tmp_path):
    assert load_profile(_write(tmp_path, GOOD_USER_PROFILE)).mapper == "loihi"
    one_layer = GOOD_USER_PROFILE.replace('kind = "chip"',
                                          'kind = "chip"\nmapping = "one-layer-per-core"')
    assert load_profile(_write(tmp_path, one_layer, "one.toml")).mapper == "per_layer"


def test_unknown_mapper_names_file_and_choices(tmp_path):
    path = _broken(tmp_path, 'kind = "chip"', 'kind = "chip"\nmapper = "magic"')
    with pytest.raises(BadInputError, match=r"^mychip\.toml: \[chip\] mapper = 'magic' is not "
                                            r"one of loihi, speck, per_layer, none"):
        load_profile(path)


def test_loihi_mapper_on_a_one_layer_per_core_chip_is_refused(tmp_path):
    path = _broken(tmp_path, 'kind = "chip"',
                   'kind = "chip"\nmapping = "one-layer-per-core"\nmapper = "loihi"')
    with pytest.raises(BadInputError, match=r"^mychip\.toml: \[chip\] mapper = 'loihi' .*"
                                            r"needs mapping = 'split'"):
        load_profile(path)


def _broken(tmp_path, old, new):
    assert old in GOOD_USER_PROFILE
    return _write(tmp_path, GOOD_USER_PROFILE.replace(old, new, 1))


def test_missing_required_key_names_file_and_key(tmp_path):
    path = _broken(tmp_path, 'hop = { value = 0.5, unit = "pJ", source = "our measurement", '
                             'confidence = "low" }', "")
    with pytest.raises(BadInputError, match=r"^mychip\.toml: missing required key \[energy\] hop"):
        load_profile(path)


def test_string_where_a_number_goes_names_file_and_key(tmp_path):
    path = _broken(tmp_path, 'synop = { value = 0.002', 'synop = { value = "fast"')
    with pytest.raises(BadInputError, match=r"^mychip\.toml: \[energy\] synop: value must be a "
                                            r"number, got 'fast'"):
        load_profile(path)


def test_negative_energy_names_file_and_key(tmp_path):
    path = _broken(tmp_path, "mac = { value = 5,", "mac = { value = -5,")
    with pytest.raises(BadInputError, match=r"^mychip\.toml: \[energy\] mac: .*negative"):
        load_profile(path)


def test_unknown_unit_names_file_and_key(tmp_path):
    path = _broken(tmp_path, 'mac = { value = 5, unit = "pJ"', 'mac = { value = 5, unit = "pj"')
    with pytest.raises(BadInputError, match=r"^mychip\.toml: \[energy\] mac: unknown unit 'pj'"):
        load_profile(path)


def test_unit_of_wrong_dimension_names_file_and_key(tmp_path):
    path = _broken(tmp_path, 'mac = { value = 5, unit = "pJ"', 'mac = { value = 5, unit = "ns"')
    with pytest.raises(BadInputError, match=r"^mychip\.toml: \[energy\] mac: unit 'ns' is a time"):
        load_profile(path)


def test_number_without_source_names_file_and_key(tmp_path):
    path = _broken(tmp_path, 'spike_out = { value = 0.5, unit = "pJ", source = "our measurement", ',
                   'spike_out = { value = 0.5, unit = "pJ", ')
    with pytest.raises(BadInputError, match=r"^mychip\.toml: \[energy\] spike_out: missing "
                                            r"required field 'source'"):
        load_profile(path)


def test_bare_number_names_file_and_key(tmp_path):
    path = _broken(tmp_path, 'hop = { value = 0.5, unit = "pJ", source = "our measurement", '
                             'confidence = "low" }', "hop = 0.5")
    with pytest.raises(BadInputError, match=r"^mychip\.toml: \[energy\] hop: must be a table"):
        load_profile(path)


def test_unknown_confidence_names_file_and_key(tmp_path):
    path = _broken(tmp_path, 'confidence = "medium" }\nmac', 'confidence = "sure" }\nmac')
    with pytest.raises(BadInputError, match=r"^mychip\.toml: \[energy\] synop: confidence 'sure'"):
        load_profile(path)


def test_broken_toml_gives_file_and_line(tmp_path):
    text = GOOD_USER_PROFILE.replace('kind = "chip"', 'kind "chip"', 1)
    lineno = text.splitlines().index('kind "chip"') + 1
    path = _write(tmp_path, text)
    with pytest.raises(BadInputError) as err:
        load_profile(path)
    msg = str(err.value)
    assert msg.startswith("mychip.toml: TOML syntax error")
    assert re.search(rf"line {lineno}\b", msg), msg
    assert "\n" not in msg


def test_unknown_section_names_file_and_section(tmp_path):
    path = _write(tmp_path, GOOD_USER_PROFILE.replace("[energy]", "[enegry]", 1))
    with pytest.raises(BadInputError, match=r"^mychip\.toml: unknown section or key 'enegry'"):
        load_profile(path)


def test_missing_profile_file_is_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        load_profile(tmp_path / "absent.toml")
