"""Progress of long runs, for whoever listens (the CLI's bar on a terminal).

A run deep inside a command (the simulator under ``check-accuracy``, the
calibration runs of an export) reports its steps here without every caller
threading a callback through: :func:`listening` installs a sink for the
duration of a command, :func:`step_callback` hands a run the callback to call,
or None when nobody listens (the default: the library and ``--json`` stay silent).
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Callable, Iterator, Optional

#: receives (what is running, steps done, steps in total)
ProgressSink = Callable[[str, int, int], None]

_SINK: ContextVar[Optional[ProgressSink]] = ContextVar("nmtc_progress_sink", default=None)


@contextlib.contextmanager
def listening(sink: Optional[ProgressSink]) -> Iterator[None]:
    """Send the progress of runs started inside the ``with`` to ``sink``."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


def step_callback(what: str, total: int) -> Optional[Callable[[int], None]]:
    """A callback taking the steps done of a run of ``total`` steps, or None when
    no sink listens (so a run without a listener pays nothing)."""
    sink = _SINK.get()
    if sink is None:
        return None
    return lambda done: sink(what, int(done), int(total))


__all__ = ["ProgressSink", "listening", "step_callback"]
