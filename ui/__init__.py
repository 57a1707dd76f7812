"""The app's user interface: settings, callbacks, words, and how model work runs (see app.py)."""
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported anywhere
