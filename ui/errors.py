"""Library errors as one-sentence ``gr.Error`` s: the one place where the app converts them.

Applied to every callback, and again inside each ZeroGPU function: in ZeroGPU's worker process any exception
other than ``gr.Error`` reaches the visitor as a generic error, so the sentence must be made there.
"""
from __future__ import annotations

import functools
import logging

import gradio as gr

from attribution.errors import ExplorerError

log = logging.getLogger("video-attribution-explorer")

GENERIC_ERROR = ("Something went wrong on our side while {what}; please try again, or try another clip or "
                 "model (the details are in the server log).")


def to_user_error(e: BaseException, what: str) -> gr.Error:
    """The ``gr.Error`` a person sees for ``e`` (unexpected errors are logged with their traceback)."""
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, ExplorerError):
        return gr.Error(str(e), title="Cannot use this input", print_exception=False)
    if isinstance(e, MemoryError):
        return gr.Error("The server ran out of memory: trim the clip, use the fast preset or fewer areas, "
                        "and try again.", print_exception=False)
    if type(e).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
        return gr.Error("The GPU ran out of memory: trim the clip, use the fast preset or fewer areas, "
                        "and try again.", print_exception=False)
    log.error("unexpected error while %s", what, exc_info=e)
    return gr.Error(GENERIC_ERROR.format(what=what), print_exception=False)


def user_errors(what: str):
    """Decorator: any exception of the callback becomes :func:`to_user_error`'s ``gr.Error``."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - the page must get a sentence, the log the traceback
                raise to_user_error(e, what) from None
        return inner
    return wrap
