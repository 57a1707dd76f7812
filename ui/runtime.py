"""How the app's model work runs: inside a ZeroGPU window when the Space has one, one job at a time, stoppable.

* **ZeroGPU.** On a ZeroGPU Space (``SPACES_ZERO_GPU`` set, the ``spaces`` package installed) the functions
  decorated with :func:`gpu` run in a worker process that holds a GPU for a requested number of seconds;
  their arguments and results are pickled, and any exception other than ``gr.Error`` reaches the visitor as a
  generic error. So only the model work goes inside (decoding, model construction, rendering and zipping stay
  outside), and user errors are turned into ``gr.Error`` inside the window (:func:`ui.errors.user_errors`).
  Elsewhere :func:`gpu` returns the function unchanged.
* **One job at a time.** :data:`MODEL_LOCK` is held while a model runs. Gradio's queue already runs one model
  event at a time, but a stopped event frees its queue slot at once while its thread finishes the current
  iteration; the lock keeps the next job from running the same model meanwhile.
* **Stop.** :func:`stoppable` runs a callback in a worker thread and turns the cancellation of its Gradio event
  (the Stop button, or ``Job.cancel()`` from ``gradio_client``) into the engine's ``cancel`` event, so the
  optimisation stops after its current iteration.
"""
from __future__ import annotations

import functools
import gc
import os
import threading
from typing import Callable

import anyio

ON_ZEROGPU = os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "true", "yes")
MODEL_LOCK = threading.Lock()

try:  # ZeroGPU: `spaces` must be imported before anything initialises CUDA (app.py imports this module first)
    import spaces  # type: ignore[import-not-found]

    _GPU = spaces.GPU
except ImportError:  # local, CI, ordinary GPU or CPU Spaces
    _GPU = None


def gpu(duration: int | Callable = 60):
    """``spaces.GPU(duration=...)`` on ZeroGPU (``duration``: seconds, or a function of the call's arguments);
    elsewhere the function itself (off ZeroGPU ``spaces.GPU`` returns it unchanged too).

    The worker is forked from this process. Garbage left by the decoder (PyAV frames whose scaler owns worker
    threads) must be freed here first: freed in the child, it waits forever on threads that did not survive
    the fork."""
    def wrap(fn):
        if _GPU is None or not ON_ZEROGPU:
            return fn
        window = _GPU(duration=duration)(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            gc.collect()
            return window(*args, **kwargs)
        return call
    return wrap


async def stoppable(fn: Callable, *args, **kwargs):
    """Run ``fn(*args, cancel=event, **kwargs)`` in a worker thread; when the awaiting Gradio event is cancelled,
    set ``event`` (the engine checks it every iteration) and let the cancellation through at once."""
    cancel = threading.Event()
    try:
        return await anyio.to_thread.run_sync(lambda: fn(*args, cancel=cancel, **kwargs), abandon_on_cancel=True)
    finally:
        cancel.set()   # cancelled, failed or done: nothing may go on running for this request
