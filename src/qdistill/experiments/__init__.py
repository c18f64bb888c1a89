"""Experiments: many runs with seeds and a report. The paper's grids (grids.py), the
runner that trains a list of runs resumably on a process pool or Ray (runner.py,
executors.py), ``qdistill reproduce`` (reproduce.py), the noise-robustness study
(robustness.py) and the paper's published numbers (paper.py)."""
