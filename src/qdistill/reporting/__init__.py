"""Tables (tables.py: means, paired gains with intervals, Markdown/CSV), figures
(plots.py, palette.py) and ``python -m qdistill.reporting.rebuild`` to redraw a results
directory from its committed per-run files."""
