"""The one colour definition every qdistill figure uses.

A teacher (or a KD loss, or a study arm) has the same colour in every figure: look it
up with :func:`color`. The colours are Okabe & Ito's colour-blind-safe set
(https://jfly.uni-koeln.de/color/); names not listed (a user's teacher run directory,
say) get one of :data:`EXTRA` chosen by a stable hash of the name, so the same name
gets the same colour in every figure and every process.
"""

from __future__ import annotations

import re
import zlib

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9",
    "bluish green": "#009E73", "yellow": "#F0E442", "blue": "#0072B2",
    "vermillion": "#D55E00", "reddish purple": "#CC79A7",
}

# Name -> colour. Teachers are bare names (KDConfig.teacher); KD losses are
# "loss:<KDConfig.variant>"; arms of a study are "arm:<name>"; figure marks "mark:<name>".
PALETTE: dict[str, str] = {
    # teachers
    "none": OKABE_ITO["black"],
    "lenet": OKABE_ITO["blue"],
    "alexnet": OKABE_ITO["vermillion"],
    "ensemble": OKABE_ITO["bluish green"],
    "mlp": OKABE_ITO["reddish purple"],
    # KD losses
    "loss:hinton": OKABE_ITO["blue"],
    "loss:paper": OKABE_ITO["orange"],
    # study arms (e.g. noise-aware vs noise-free training)
    "arm:control": OKABE_ITO["black"],
    "arm:treatment": OKABE_ITO["orange"],
    # marks
    "mark:paper": "#555555",  # the paper's claim
    "mark:zero": "#999999",  # zero / chance reference lines
    "mark:collapsed": "#7A0000",  # notes on runs at chance
}

# Fallback colours for names not in PALETTE: the rest of Okabe-Ito, then Tol's muted set.
EXTRA = (OKABE_ITO["orange"], OKABE_ITO["sky blue"], "#882255", "#44AA99", "#999933",
         "#332288", "#AA4499", "#DDCC77")


def color(name: str) -> str:
    """The colour of ``name`` (a teacher, ``loss:<variant>``, ``arm:<name>`` or
    ``mark:<name>``); names not in :data:`PALETTE` get a deterministic :data:`EXTRA`.
    A known teacher labelled with its training epochs (``alexnet-te10``, where a report
    holds it at two lengths) keeps its colour at the paper's 10 epochs and more, and a
    half-white tint of it when trained for fewer."""
    name = str(name)
    if name in PALETTE:
        return PALETTE[name]
    base, epochs = teacher_and_epochs(name)
    if epochs and base in PALETTE:
        return PALETTE[base] if epochs >= 10 else _tint(PALETTE[base])
    return EXTRA[zlib.crc32(name.encode()) % len(EXTRA)]


def teacher_and_epochs(label: str) -> tuple[str, int]:
    """("alexnet-te10") -> ("alexnet", 10): a teacher labelled with its training
    epochs (a report holding it at two lengths); any other name -> (name, 0)."""
    m = re.fullmatch(r"(.+)-te(\d+)", label)
    return (m.group(1), int(m.group(2))) if m else (label, 0)


def _tint(hex_colour: str, white: float = 0.5) -> str:
    """``hex_colour`` mixed with ``white`` of white."""
    rgb = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * white):02X}" for c in rgb)
