"""Exceptions with messages written for people.

The app turns them into ``gr.Error`` and the CLI into exit code 2, so every message is one sentence that says
what is wrong and, where possible, what to do about it.
"""


class ExplorerError(Exception):
    """Base class of every error this project raises on purpose."""


class VideoError(ExplorerError):
    """The clip cannot be used: not a video, corrupt, empty, too large, too long, ..."""


class ModelError(ExplorerError):
    """The model cannot be built or loaded: unknown name, missing weights offline, bad sidecar, ..."""


class InputError(ExplorerError):
    """An argument is wrong: unknown target label, bad area list, unknown method, ..."""


class Cancelled(ExplorerError):
    """The caller cancelled the work (the app's Stop button, ``Ctrl-C`` in a progress callback, ...)."""
