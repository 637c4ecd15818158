"""Run by tests/test_fused_triton.py in a fresh process: Triton's interpreter
must be chosen before the kernel is defined (TRITON_INTERPRET=1 at import).

Checks the Triton CUBA kernel, interpreted on the CPU, against Lava's integer
formulas (test_fused_loops.lava_cuba) on random layers that reach every
branch (int32 wraps, the 24-bit correction, saturation, drives rounding half
to even, netx's reset schedule), through CubaLoihi.run_block and directly
with tiles smaller than the layer and a static (stride-0) input. Prints "ok"."""
import os
import sys

os.environ["TRITON_INTERPRET"] = "1"
os.environ["NMTC_TRITON"] = "1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from simulators.cycle import fused_triton  # noqa: E402
from test_fused_loops import _kernel, lava_cuba  # noqa: E402

assert fused_triton.available("cpu")
rng = np.random.default_rng(0)
for trial in range(32):
    steps, batch, n = int(rng.integers(1, 12)), 2, 3
    drive = bool(trial % 2)
    i_decay, v_decay = int(rng.integers(0, 4097)), int(rng.integers(0, 4097))
    vth, bias_exp = int(rng.integers(0, 300)), int(rng.integers(0, 8))
    interval, phase = [(0, 0), (4, 1), (5, 0), (3, 2)][(trial // 2) % 4]
    big = int(rng.choice([300, 1 << 26]))
    a = rng.integers(-big, big, (steps, batch, n)).astype(np.float64)
    if drive:  # a bias mantissa, as a float that rounds half to even
        a = np.clip(a, -4096, 4095) + rng.choice([0.0, 0.5, -0.5, 0.25])
    bias = rng.integers(-4096, 4095, n)
    spikes, u, v = lava_cuba(a.reshape(steps, -1), i_decay, v_decay, vth, np.tile(bias, batch),
                             bias_exp, drive, interval, phase)
    k = _kernel((n,), i_decay, v_decay, vth, bias, bias_exp, drive, interval, phase)
    k.reset(batch)
    out = k.run_block([torch.as_tensor(a, dtype=torch.float32 if drive else torch.float64)], 0)
    assert np.array_equal(out.numpy().reshape(steps, -1), spikes), trial
    assert np.array_equal(k.u.numpy().reshape(-1), u), trial
    assert np.array_equal(k.v.numpy().reshape(-1), v), trial

# tiles of 4 over 2 x 7 neurons, a static drive (one row read for every step)
steps, shape = 6, (7,)
img = torch.as_tensor(rng.integers(-4096, 4095, (2,) + shape), dtype=torch.float32)
x = img.unsqueeze(0).expand((steps,) + tuple(img.shape))
spikes, u, v = lava_cuba(x.reshape(steps, -1).numpy(), 1024, 512, 20, np.zeros(14, np.int64), 6,
                         True, 4, 1)
uu, vv = torch.zeros(2, 7, dtype=torch.float64), torch.zeros(2, 7, dtype=torch.float64)
drive = (img.long() << 6).double()  # integer mantissas: the bias, shifted by bias_exp 6
drive = drive.unsqueeze(0).expand((steps,) + tuple(img.shape))
got = fused_triton.cuba_loihi_block(drive, uu, vv, None, i_keep=4096 - 1024,
                                    v_keep=4096 - 512, vth=20 << 6, drive=True, interval=4,
                                    phase=1, t0=0, block=4)
assert np.array_equal(got.numpy().reshape(steps, -1), spikes)
assert np.array_equal(uu.numpy().reshape(-1), u) and np.array_equal(vv.numpy().reshape(-1), v)
assert spikes.any() and not spikes.all()
print("ok")
