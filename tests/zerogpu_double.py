"""A test double of the ``spaces`` package's ZeroGPU decorator, reproducing what matters to the app:

* the decorated function runs in **another process** (forked, as ZeroGPU's worker is);
* its **arguments and result are pickled** across (so a lock, an open file or a closure cannot travel);
* an exception other than ``gr.Error`` comes back as a **generic error** that names only its class, as a
  visitor of a ZeroGPU Space sees it; a ``gr.Error`` keeps its message;
* ``duration`` (seconds, or a function of the call's arguments) is evaluated and recorded for each call.
"""
from __future__ import annotations

import functools
import multiprocessing
import pickle
import types

CALLS: list[dict] = []   # one {"function", "duration"} per call, for the tests to inspect


def _child(fn, payload: bytes, conn) -> None:
    import gradio as gr
    import torch
    # GNU OpenMP's thread pool does not survive a fork: a CPU forward in the child would wait forever for the
    # parent's workers. The real worker computes on its GPU; here the child computes on one CPU thread.
    torch.set_num_threads(1)
    try:
        args, kwargs = pickle.loads(payload)
        conn.send_bytes(pickle.dumps(("ok", fn(*args, **kwargs))))
    except gr.Error as e:
        conn.send_bytes(pickle.dumps(("gr.Error", (e.message, e.title))))
    except BaseException as e:  # noqa: BLE001 - whatever it was, only its class name crosses back
        conn.send_bytes(pickle.dumps(("error", type(e).__name__)))
    finally:
        conn.close()


def GPU(fn=None, *, duration=60, size=None):  # noqa: N802 - the real decorator's name
    def wrap(f):
        @functools.wraps(f)
        def call(*args, **kwargs):
            import gradio as gr
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            CALLS.append({"function": f.__name__, "duration": seconds})
            payload = pickle.dumps((args, kwargs))          # fails here if an argument cannot travel
            ctx = multiprocessing.get_context("fork")
            receive, send = ctx.Pipe(duplex=False)
            worker = ctx.Process(target=_child, args=(f, payload, send), daemon=True)
            worker.start()
            send.close()
            kind, value = pickle.loads(receive.recv_bytes())
            worker.join()
            if kind == "ok":
                return value
            if kind == "gr.Error":
                raise gr.Error(value[0], title=value[1], print_exception=False)
            raise gr.Error(value, print_exception=False)    # what a visitor sees: the bare class name
        return call
    return wrap(fn) if callable(fn) else wrap


def module() -> types.ModuleType:
    """A stand-in ``spaces`` module to put in ``sys.modules``."""
    m = types.ModuleType("spaces")
    m.GPU = GPU
    return m
