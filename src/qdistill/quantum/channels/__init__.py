"""The noise channels: one registry, :data:`CHANNELS`, read by :class:`NoiseModel`
(spec keys, rates, validation) and by both simulators in :mod:`..noise` (density
matrices and trajectories), which use nothing but each channel's Kraus matrices.

Adding a channel is one new file plus one table entry:

1. ``channels/my_channel.py``: a subclass of :class:`Channel` with ``key`` (the spec
   key), ``wires`` (``1``, ``2`` or ``"each"``, see :class:`Channel`) and
   ``kraus(rate, dtype, device)``; its docstring gives the formula and the PennyLane /
   Qiskit equivalent. Import only from ``.base``.
2. Here: ``"my_key": MyChannel()`` in :data:`CHANNELS`. The table's order is the order in
   which channels act after a gate (so ``damping`` after ``depolarizing``).

Then ``NoiseModel.parse("my_key=0.01")`` works, ``noise.my_key`` reads the rate, ``spec()``
writes it, and both simulators apply it; nothing else changes. Test that its Kraus set
is trace preserving and that the density result matches PennyLane's ``default.mixed``
(``tests/test_noise_channels.py`` does both for every entry, and shows a toy channel).

How a trajectory samples any channel from its Kraus matrices is in :mod:`.jumps`.

Readout error is not a channel: it flips measured bits, acting on the probabilities of
the measured wires (``NoiseModel.readout``), not on the state after a gate.
"""

from __future__ import annotations

from .base import Channel, pauli_words
from .damping import AmplitudeDamping
from .depolarizing import Depolarizing
from .depolarizing2 import Depolarizing2

__all__ = ["CHANNELS", "AmplitudeDamping", "Channel", "Depolarizing", "Depolarizing2",
           "pauli_words"]

CHANNELS: dict[str, Channel] = {
    "depolarizing": Depolarizing(),
    "depolarizing2": Depolarizing2(),
    "damping": AmplitudeDamping(),
}
