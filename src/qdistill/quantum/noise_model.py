"""What the noise is: :class:`NoiseModel` (the rates of the channels in
:data:`.channels.CHANNELS` plus the readout error, parsed from ``key=value`` strings) and
the device-class presets with their sources.

How it is simulated (density matrices, trajectories) is in :mod:`.noise`, which
re-exports everything here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .channels import CHANNELS, Channel

__all__ = ["DEVICES", "PRESETS", "DeviceFigures", "NoiseModel"]

READOUT = "readout"
# Positional arguments keep the original dataclass field order (compatibility); channels
# added to CHANNELS since are keyword-only.
_POSITIONAL = ("depolarizing", "depolarizing2", "damping", READOUT)


def _keys() -> tuple[str, ...]:
    """Every spec key: the channels in table order, then ``readout``."""
    return (*CHANNELS, READOUT)


class NoiseModel:
    """Rates (probabilities in [0, 1]) of the channels in :data:`.channels.CHANNELS`
    (``depolarizing``, ``depolarizing2``, ``damping``, ...; each channel's docstring has
    its formula), plus ``readout``: the bit-flip probability of every measured bit.

    Readout is not a channel: it acts on the measured wires' probabilities, not on the
    state after a gate (see :func:`.noise.readout_flip`).

    ``NoiseModel(depolarizing=0.01, readout=0.02)``; every rate is an attribute
    (``noise.damping``; 0 when unset) and in :attr:`rates`. Immutable, hashable, equal
    when the rates are.
    """

    def __init__(self, *args: float, **rates: float) -> None:
        if len(args) > len(_POSITIONAL):
            raise TypeError(f"NoiseModel takes at most {len(_POSITIONAL)} positional rates "
                            f"({', '.join(_POSITIONAL)}); pass the others by keyword")
        for key, v in zip(_POSITIONAL, args, strict=False):
            if key in rates:
                raise TypeError(f"NoiseModel got {key!r} twice")
            rates[key] = v
        unknown = set(rates) - set(_keys())
        if unknown:
            raise TypeError(f"NoiseModel got unknown rates {', '.join(sorted(unknown))}; "
                            f"valid: {', '.join(_keys())}")
        for key, v in rates.items():
            if not isinstance(v, int | float) or not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"noise {key}={v!r}: a probability must be in [0, 1]")
        # Only the non-zero rates are stored: a model made before a channel was
        # registered equals one made after.
        nonzero = {k: float(rates[k]) for k in CHANNELS if rates.get(k)}
        object.__setattr__(self, "_rates", nonzero)
        object.__setattr__(self, READOUT, float(rates.get(READOUT, 0.0)))

    readout: float

    def __getattr__(self, name: str) -> float:
        rates = self.__dict__.get("_rates")  # absent while copy/pickle rebuilds it
        if rates is not None and name in CHANNELS:
            return rates.get(name, 0.0)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    @property
    def rates(self) -> Mapping[str, float]:
        """Every channel's rate, in table order (0 for the ones not set)."""
        return {k: self._rates.get(k, 0.0) for k in CHANNELS}

    def channels(self) -> list[tuple[Channel, float]]:
        """The channels with a non-zero rate, in the order they act after a gate."""
        return [(c, self._rates[k]) for k, c in CHANNELS.items() if k in self._rates]

    def as_dict(self) -> dict[str, float]:
        """``{key: rate}`` for every key (channels, then ``readout``)."""
        return {**self.rates, READOUT: self.readout}

    def replace(self, **changes: float) -> NoiseModel:
        return NoiseModel(**{**self.as_dict(), **changes})

    def _key(self) -> tuple:
        return tuple(sorted(self._rates.items())), self.readout

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoiseModel):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"NoiseModel({', '.join(f'{k}={v!r}' for k, v in self.as_dict().items())})"

    @property
    def noiseless(self) -> bool:
        return not self._rates and not self.readout

    def spec(self) -> str:
        """``key=value,...`` of the non-zero rates (``none`` when noiseless); parses back."""
        parts = [f"{k}={v:g}" for k, v in self.as_dict().items() if v]
        return ",".join(parts) or "none"

    @classmethod
    def preset(cls, name: str) -> NoiseModel:
        """A device-class preset (see :data:`DEVICES`); unknown names list the valid ones."""
        if name not in PRESETS:
            raise ValueError(f"unknown noise preset {name!r}; valid: {', '.join(PRESETS)}")
        return PRESETS[name]

    @classmethod
    def parse(cls, spec: str | NoiseModel | None) -> NoiseModel:
        """``depolarizing=0.01,depolarizing2=0.02,damping=0.001,readout=0.02`` (any
        subset of the keys in :data:`.channels.CHANNELS` and ``readout``; the rest 0),
        ``preset:NAME`` optionally followed by overrides (``preset:ibm-heron,readout=0``),
        or ``none``."""
        if isinstance(spec, NoiseModel):
            return spec
        text = (spec or "").strip()
        if text.lower() in ("", "none"):
            return cls()
        values: dict[str, float] = {}
        keys = _keys()
        for i, item in enumerate(t.strip() for t in text.split(",")):
            if item.startswith("preset:"):
                if i:
                    raise ValueError(f"noise {spec!r}: preset:NAME must come first")
                values = cls.preset(item[len("preset:"):].strip()).as_dict()
                continue
            key, sep, raw = item.partition("=")
            key = key.strip().lower()
            if not sep or key not in keys:
                raise ValueError(
                    f"noise {spec!r}: unknown item {item!r}; valid keys: {', '.join(keys)} "
                    f"(as key=value), or preset:NAME with NAME in {', '.join(PRESETS)}")
            try:
                values[key] = float(raw)
            except ValueError:
                raise ValueError(f"noise {spec!r}: {key}={raw.strip()!r} is not a number"
                                 ) from None
        return cls(**values)


@dataclass(frozen=True)
class DeviceFigures:
    """Published calibration figures of a device class. APPROXIMATIONS: typical
    (median) values rounded from the source on its date; real devices vary by qubit and
    by day and have errors this model leaves out (coherent errors, crosstalk, leakage,
    idle dephasing). Use them for what-if studies, not as a claim about a device."""

    error_1q: float  # average 1-qubit gate infidelity r (randomized benchmarking)
    error_2q: float  # average 2-qubit gate infidelity r
    readout: float  # readout (assignment / SPAM) error per bit
    t1_s: float | None  # energy relaxation time; None: effectively infinite
    gate_1q_s: float  # 1-qubit gate duration
    source: str

    def noise_model(self) -> NoiseModel:
        """``p = 3r/2`` (1q), ``5r/4`` (2q); damping ``1 - exp(-t_1q / T1)`` per gate (most
        gates here are 1-qubit; the decay during 2-qubit gates is part of their r)."""
        damping = 0.0 if self.t1_s is None else 1 - math.exp(-self.gate_1q_s / self.t1_s)
        return NoiseModel(depolarizing=1.5 * self.error_1q,
                          depolarizing2=1.25 * self.error_2q, damping=damping,
                          readout=self.readout)


# Provenance (checked 2026-11-25):
# - IBM: medians over every qubit and gate of the calibration snapshots that
#   qiskit-ibm-runtime 0.51.0 ships with its fake backends (props_<name>.json, taken
#   2025-02-26), two significant digits; `python scripts/device_figures.py` recomputes
#   them and fails if a preset is off by more than 5 %.
# - IonQ Aria: the "system fidelity" and "system timing" tables of the Azure Quantum
#   IonQ provider page (learn.microsoft.com/azure/quantum/provider-ionq, 2024 version).
# - Quantinuum H2: the cited paper.
DEVICES: dict[str, DeviceFigures] = {
    "ibm-eagle": DeviceFigures(
        2.4e-4, 7.6e-3, 2.0e-2, 250e-6, 58e-9,
        "IBM Eagle r3 class: median SX error, ECR error, readout error, T1 and SX length "
        "over ibm_brisbane and ibm_sherbrooke, calibration snapshots of 2025-02-26 as "
        "shipped in qiskit-ibm-runtime 0.51.0 (FakeBrisbane, FakeSherbrooke), rounded"),
    "ibm-heron": DeviceFigures(
        2.3e-4, 3.5e-3, 8.8e-3, 160e-6, 30e-9,
        "IBM Heron r2 class: median SX error, CZ error, readout error, T1 and SX length "
        "over ibm_fez and ibm_marrakesh, calibration snapshots of 2025-02-26 as shipped "
        "in qiskit-ibm-runtime 0.51.0 (FakeFez, FakeMarrakesh), rounded"),
    "ionq-aria": DeviceFigures(
        5.0e-4, 4.0e-3, 3.9e-3, None, 135e-6,
        "IonQ Aria: 1q fidelity 99.95 % (SPAM-corrected), 2q fidelity 99.6 %, SPAM 99.61 "
        "%, 1q gate 135 us, T1 10-100 s (Azure Quantum IonQ provider page, 2024; rounded); "
        "damping neglected (135 us / 10 s = 1.4e-5 per gate, 3 % of the 1q error)"),
    "quantinuum-h2": DeviceFigures(
        2.0e-5, 2.0e-3, 1.6e-3, None, 10e-6,
        "Quantinuum H2 (H-series) class: Moses et al., 'A race-track trapped-ion quantum "
        "processor', PRX 13, 041052 (2023), arXiv:2305.03828 (May 2023): SPAM 1.6e-3, "
        "1q infidelity ~2e-5, 2q infidelity ~2e-3 (rounded); T1 effectively infinite"),
}
PRESETS: dict[str, NoiseModel] = {name: d.noise_model() for name, d in DEVICES.items()}
