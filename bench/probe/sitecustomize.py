"""Benchmark-only probe loaded into a proxy process by bench/proxy_internals.py (PYTHONPATH=bench/probe).

Inactive unless SYNQRA_PROBE_DIR is set. SIGUSR1 starts measuring, SIGUSR2 stops and writes
<SYNQRA_PROBE_DIR>/<pid>.json (garbage collections: count and process CPU seconds per generation, from
gc.callbacks) and, with SYNQRA_PROBE_CPROFILE=1, <pid>.prof (cProfile of the main thread, CPU-time clock).
"""

import cProfile
import gc
import json
import os
import signal
import time

_out = os.environ.get("SYNQRA_PROBE_DIR")
if _out:
    _state: dict = {"on": False, "t": [0.0] * 3, "n": [0] * 3, "t0": None, "prof": None}

    def _gc_event(phase: str, info: dict) -> None:
        if not _state["on"]:
            return
        if phase == "start":
            _state["t0"] = time.process_time()
        elif _state["t0"] is not None:
            g = info["generation"]
            _state["t"][g] += time.process_time() - _state["t0"]
            _state["n"][g] += 1

    def _start(*_: object) -> None:
        _state.update(on=True, t=[0.0] * 3, n=[0] * 3)
        if os.environ.get("SYNQRA_PROBE_CPROFILE") == "1":
            _state["prof"] = cProfile.Profile(time.process_time)
            _state["prof"].enable()

    def _stop(*_: object) -> None:
        _state["on"] = False
        prof = _state["prof"]
        if prof is not None:
            prof.disable()
            prof.dump_stats(os.path.join(_out, f"{os.getpid()}.prof"))
            _state["prof"] = None
        with open(os.path.join(_out, f"{os.getpid()}.json"), "w") as f:
            json.dump(
                {
                    "gc_seconds": _state["t"],
                    "gc_count": _state["n"],
                    "threshold": gc.get_threshold(),
                    "frozen": gc.get_freeze_count(),
                    "tracked": len(gc.get_objects()),
                },
                f,
            )

    gc.callbacks.append(_gc_event)
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
