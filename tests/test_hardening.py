"""Bad input is one line and exit 2 at every site issue 16 found, and nothing hangs,
crashes or is left behind. Each expected message is checked against the fault the
test itself planted (a hand-edited file), not against nmtc's output of a good file.
"""
from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nmtoolchain.errors import BadInputError, NmtcError
from nmtoolchain.fileio import atomic_output, require_regular_file
from nmtoolchain.ir import load_graph

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "nmtoolchain" / "data"
SNN = DATA / "digits_cnn_snn.nmir"


def _cli(args, cwd, timeout=120):
    r = subprocess.run([sys.executable, "-m", "nmtoolchain.cli", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    return r.returncode, r.stdout, r.stderr


def _edit_nmir(tmp_path: Path, edit) -> Path:
    with zipfile.ZipFile(SNN) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    doc = json.loads(members["graph.json"])
    edit(doc, members)
    members["graph.json"] = json.dumps(doc).encode()
    out = tmp_path / "bad.nmir"
    with zipfile.ZipFile(out, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    return out


# ------------------------------------------------------------- .nmir reader sites
@pytest.mark.parametrize("edit, expected", [
    (lambda d, m: d.pop("nodes"), "'nodes' is NoneType, expected a list"),
    (lambda d, m: d.__setitem__("nodes", "x"), "'nodes' is str, expected a list"),
    (lambda d, m: d["nodes"].__setitem__(0, [1]), "node #0 is a list, expected an object"),
    (lambda d, m: d["nodes"][1].pop("name"), "node #1 has no name"),
    (lambda d, m: d["nodes"][1].pop("op"), "'op' is NoneType, expected str"),
    (lambda d, m: d["nodes"][1].__setitem__("fields", [1]), "'fields' is list, expected dict"),
    (lambda d, m: d["nodes"][1].__setitem__("inputs", [3]), "'inputs' must be node names"),
    (lambda d, m: d["nodes"][1].__setitem__("annotations", [1]), "'annotations' is not an object"),
    (lambda d, m: d.__setitem__("version", "2"), "'version' is '2', not an integer"),
    (lambda d, m: d.__setitem__("metadata", [1]), "'metadata' is a list"),
    (lambda d, m: d["metadata"].__setitem__("x", {"__array__": "a", "dtype": "nonsense"}),
     "'metadata' is malformed"),
])
def test_mistyped_nmir_member_is_named(tmp_path, edit, expected):
    path = _edit_nmir(tmp_path, edit)
    with pytest.raises(BadInputError) as err:
        load_graph(path)
    assert str(err.value).startswith(str(path)) and expected in str(err.value), str(err.value)


def _first_array(doc):
    for node in doc["nodes"]:
        for k, v in node["fields"].items():
            if isinstance(v, dict) and "__npy__" in v:
                return node, k, v["__npy__"]
    raise AssertionError("no array field")


@pytest.mark.parametrize("blob, expected", [
    (None, "is missing"),
    (b"\x93NUMPY\x01\x00", "unreadable"),
    ("nan", "holds NaN values"),
    ("complex", "expected real numbers"),
    ("strings", "expected real numbers"),
])
def test_bad_nmir_array_is_named(tmp_path, blob, expected):
    arrays = {"nan": np.full((8, 1, 3, 3), np.nan, np.float32),
              "complex": np.ones((8, 1, 3, 3), np.complex64), "strings": np.array(["a"])}

    def edit(doc, members):
        node, field, member = _first_array(doc)
        if blob is None:
            members.pop(member)
        elif isinstance(blob, bytes):
            members[member] = blob
        else:
            b = io.BytesIO()
            np.save(b, arrays[blob])
            members[member] = b.getvalue()
        edit.where = f"node '{node['name']}' ({node['op']}) field {field}"

    path = _edit_nmir(tmp_path, edit)
    with pytest.raises(BadInputError) as err:
        load_graph(path)
    assert edit.where in str(err.value) and expected in str(err.value), str(err.value)


# ------------------------------------------------------------ checkpoint configs
torch = pytest.importorskip("torch")


def _ckpt(tmp_path: Path, edit) -> Path:
    c = torch.load(DATA / "digits_qcfs_cnn.pt", weights_only=True)
    edit(c)
    path = tmp_path / "c.pt"
    torch.save(c, path)
    return path


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c.__setitem__("config", [1, 2]), "config is a list, expected a dict"),
    (lambda c: c.__setitem__("config", None), "config is a NoneType"),
    (lambda c: c.__setitem__("architecture", 3), "unknown architecture 3"),
    (lambda c: c["config"].__setitem__("channels", [0, 16]), "'channels' is [0, 16]"),
    (lambda c: c["config"].__setitem__("channels", [-8, 16]), "list of positive integers"),
    (lambda c: c["config"].__setitem__("kernel_size", "3"), "'kernel_size' is '3'"),
    (lambda c: c["config"].__setitem__("levels", 0), "'levels' is 0; expected an integer >= 1"),
    (lambda c: c["config"].__setitem__("threshold", "high"), "'threshold' is 'high'"),
    (lambda c: c["config"].__setitem__("batch_norm", "yes"), "true or false"),
    (lambda c: c["config"].__setitem__("channels", [10**6, 10**6]), "over the limit"),
    (lambda c: c.__setitem__("input_shape", [1.5, 8, 8]), "not a list of positive ints"),
    (lambda c: c.__setitem__("state_dict", [1]), "state_dict is a list"),
])
def test_bad_checkpoint_config_is_named(tmp_path, edit, expected):
    from nmtoolchain.frontends import load_model

    path = _ckpt(tmp_path, edit)
    with pytest.raises(BadInputError) as err:
        load_model(path)
    assert str(err.value).startswith(str(path)) and expected in str(err.value), str(err.value)


@pytest.mark.parametrize("value, expected", [
    (float("nan"), "holds NaN or Inf"), (float("inf"), "holds NaN or Inf"),
    ("complex", "is complex"),
])
def test_nonfinite_or_complex_weights_are_refused(tmp_path, value, expected):
    from nmtoolchain.frontends import load_model

    def edit(c):
        key = next(k for k in c["state_dict"] if k.endswith("weight"))
        w = c["state_dict"][key]
        c["state_dict"][key] = w.to(torch.complex64) if value == "complex" else \
            torch.full_like(w, value)
        edit.key = key

    path = _ckpt(tmp_path, edit)
    with pytest.raises(BadInputError, match=expected) as err:
        load_model(path)
    assert edit.key in str(err.value)


# ------------------------------------------------------------------ ONNX, NIR
def test_onnx_conv_stride_zero_is_refused_before_native_code(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    m = onnx.load(str(DATA / "digits_cnn.onnx"))
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    for a in list(conv.attribute):
        if a.name == "strides":
            conv.attribute.remove(a)
    conv.attribute.append(helper.make_attribute("strides", [0, 0]))
    path = tmp_path / "s0.onnx"
    path.write_bytes(m.SerializeToString())
    code, _, err = _cli(["inspect", path], tmp_path)  # a crash would be -SIGFPE
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"node '{conv.name}'" in err and "strides [0, 0]" in err


def test_nir_self_loop_is_refused_naming_the_node(tmp_path):
    h5py = pytest.importorskip("h5py")
    import shutil

    path = tmp_path / "loop.nir"
    shutil.copy(ROOT / "tests" / "data" / "cubali_nir108.nir", path)
    with h5py.File(path, "r+") as f:
        e = f["node"]["edges"][()]
        name = [n for n in f["node"]["nodes"] if n not in ("input", "output")][0]
        new = np.concatenate([e, np.array([[name.encode(), name.encode()]], dtype=e.dtype)])
        del f["node"]["edges"]
        f["node"]["edges"] = new
    from nmtoolchain.frontends import load_model

    with pytest.raises(NmtcError, match=f"node '{name}' has an edge to itself"):
        load_model(path)


def test_crashing_hdf5_reader_is_an_error_not_a_crash(tmp_path, monkeypatch):
    # the probe child really dies by a signal; nmtc must turn that into one line
    from nmtoolchain import fileio

    monkeypatch.setattr(fileio, "_HDF5_PROBE", "import os, signal; os.kill(os.getpid(), "
                                               "signal.SIGSEGV)")
    path = tmp_path / "x.nir"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(BadInputError, match="the HDF5 library crashed reading it, signal 11"):
        fileio.probe_hdf5(path)


# ---------------------------------------------------------- files and directories
def test_fifo_model_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "m.pt"
    os.mkfifo(fifo)
    code, _, err = _cli(["inspect", fifo], tmp_path, timeout=60)
    assert code == 2 and err.strip() == f"nmtc: error: {fifo}: is a FIFO (named pipe), " \
                                        "expected a regular model file"


def test_fifo_data_is_refused(tmp_path):
    fifo = tmp_path / "d.npz"
    os.mkfifo(fifo)
    with pytest.raises(BadInputError, match="is a FIFO"):
        require_regular_file(fifo, "data file")


def test_export_into_read_only_directory_is_exit_2_and_leaves_nothing(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, _, err = _cli(["export", SNN, "--target", "nmir", "-o", ro / "o.nmir"], tmp_path)
        assert code == 2 and len(err.splitlines()) == 1 and "cannot write" in err, err
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    # RLIMIT_FSIZE makes the write fail with EFBIG like a full disk would (SIGXFSZ ignored)
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "from nmtoolchain.cli import main\n"
        f"sys.exit(main(['export', {str(SNN)!r}, '--target', 'nmir', '-o', 'o.nmir']))\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "o.nmir: cannot write" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_stale_part_left_by_a_kill_is_cleaned_by_the_next_run(tmp_path):
    stale = tmp_path / ".o.nmir.abc123.part"
    stale.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".o.nmir.def456.part"  # a concurrent writer's: kept
    fresh.write_bytes(b"busy")
    with atomic_output(tmp_path / "o.nmir") as tmp:
        tmp.write_bytes(b"ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".o.nmir.def456.part", "o.nmir"]


def test_single_file_output_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "o.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "o.bin").stat().st_mode) == 0o644


# ------------------------------------------------------------------ CLI and limits
def test_click_usage_error_is_one_line(tmp_path):
    code, _, err = _cli(["inspect", SNN, "--frobnicate"], tmp_path)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "--frobnicate" in err and "nmtc inspect --help" in err


def test_huge_run_is_refused_with_its_estimate(tmp_path):
    code, _, err = _cli(["check-accuracy", DATA / "digits_qcfs_cnn.pt", "--dataset", "digits",
                         "-T", "100000"], tmp_path)
    assert code == 2 and len(err.splitlines()) == 1, err
    # 450 digits test samples x 100,000 steps: the estimate names both
    assert "x 100,000 steps x 450 samples" in err and "over the limit" in err
