"""A trained student leaves qdistill: OpenQASM 3 files and their evaluation under shots
and noise (openqasm.py), Qiskit circuits and PennyLane QNodes (sdk.py)."""
