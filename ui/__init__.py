"""The application layer of the browser demo: what ``app.py`` wires to its widgets (no model code here)."""
