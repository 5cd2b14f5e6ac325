"""Protein-like phantoms: a synthetic atomic chain folded into three domains.

The paper's phantoms (gmmscape.phantoms) are a few hundred wide blobs; real maps are
thousands of atoms of ~1.5 A with a protein's power spectrum, and a method tuned on
blobs discards most of a real data set's signal. This module generates, from its own
seed and no structure database, a chain of pseudo-atoms that fills three compact
globular domains at protein density:

- ``body``: 260 residues, the rigid core;
- ``hinge``: 170 residues on the body's +y face, rotating about an axis through the
  contact point so that its far tip travels ``TIP_TRAVEL`` (12 A) along a continuous
  path (``STATES`` steps, coordinate 0-1);
- ``extra``: 70 residues (13 % of the mass) on the body's -x/-y side, away from the
  hinge; present in half of the particles in the composition system, independent of
  the motion.

Each residue is four pseudo-atoms (backbone N, CA, C at the CA trace and a side-chain
centroid 2.4 A out), each a Gaussian of width ``ATOM_SIGMA`` (1.5 A): about 2,000 atoms.
The chain is a self-avoiding random walk of 3.8 A CA-CA steps confined to each domain's
ellipsoid (volume 133 A^3 per residue, as for folded proteins).

Phantoms are built in Angstrom and returned as gmmscape.phantoms.System in box fractions
for a given box extent (box * apix), so any sampling can be simulated.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from .errors import InputError
from .phantoms import BODY, DOMAIN, EXTRA, System

PROTEIN_SEED = 20261202
CA_STEP = 3.8  # Angstrom
RESIDUE_VOLUME = 133.0  # Angstrom^3 (1.21 A^3/Da x 110 Da)
MIN_CA_DISTANCE = 3.6  # self-avoidance of the CA trace, Angstrom
SIDE_CHAIN = 2.4  # side-chain centroid distance from CA, Angstrom
ATOM_SIGMA = 1.5  # Angstrom
RESIDUES = {"body": 260, "hinge": 170, "extra": 70}
SHAPES = {  # relative ellipsoid axes (scaled to the domain's volume)
    "body": (1.25, 0.9, 0.9),
    "hinge": (0.85, 1.3, 0.9),
    "extra": (1.1, 0.9, 1.0),
}
TIP_TRAVEL = 12.0  # Angstrom, the hinge domain's far tip over the whole path
STATES = 40
MIN_EXTENT = 100.0  # Angstrom: the molecule (~75 A across) plus shifts must fit


def _axes(name: str) -> np.ndarray:
    """Ellipsoid semi-axes (A) of a domain, scaled to its residues' volume."""
    shape = np.asarray(SHAPES[name])
    volume = RESIDUES[name] * RESIDUE_VOLUME
    radius = (3.0 * volume / (4.0 * np.pi * shape.prod())) ** (1.0 / 3.0)
    return radius * shape


def _walk(n: int, axes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """CA trace (n, 3) of a self-avoiding walk inside an ellipsoid centred at the origin."""
    ca = np.empty((n, 3))
    ca[0] = rng.uniform(-0.3, 0.3, 3) * axes
    for i in range(1, n):
        for attempt in range(200):
            step = rng.standard_normal(3)
            step *= CA_STEP / np.linalg.norm(step)
            trial = ca[i - 1] + step
            inside = ((trial / axes) ** 2).sum() <= 1.0
            clash = i > 2 and np.min(np.linalg.norm(ca[: i - 2] - trial, axis=1)) < MIN_CA_DISTANCE
            if inside and (not clash or attempt > 150):
                break
        else:  # boxed in: step back towards the centre
            trial = ca[i - 1] - CA_STEP * ca[i - 1] / max(np.linalg.norm(ca[i - 1]), 1e-9)
        ca[i] = trial
    return ca


def _atoms(ca: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-atom positions (4n, 3) and amplitudes: N and C between CAs, side chains out."""
    prev = np.vstack([ca[:1] - (ca[1:2] - ca[:1]), ca[:-1]])
    nxt = np.vstack([ca[1:], ca[-1:] + (ca[-1:] - ca[-2:-1])])
    n_atom = ca + (prev - ca) / 3.0
    c_atom = ca + (nxt - ca) / 3.0
    outward = 2.0 * ca - prev - nxt + 0.5 * rng.standard_normal(ca.shape)
    outward /= np.maximum(np.linalg.norm(outward, axis=1, keepdims=True), 1e-9)
    side = ca + SIDE_CHAIN * outward
    positions = np.concatenate([n_atom, ca, c_atom, side])
    # electrons of N, C(alpha), C(=O) and a side chain of a few heavy atoms
    weights = np.concatenate(
        [np.full(len(ca), 7.0), np.full(len(ca), 6.0), np.full(len(ca), 14.0)]
        + [rng.uniform(6.0, 30.0, len(ca))]
    )
    return positions, weights


@cache
def domains() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Atoms (positions in A, amplitudes) of each domain at its place in the molecule."""
    rng = np.random.default_rng(PROTEIN_SEED)
    body_axes, hinge_axes, extra_axes = _axes("body"), _axes("hinge"), _axes("extra")
    centres = {
        "body": np.zeros(3),
        "hinge": np.array([4.0, body_axes[1] + hinge_axes[1] - 4.0, 2.0]),
        "extra": np.array(
            [-(body_axes[0] + extra_axes[0]) * 0.75, -(body_axes[1] + extra_axes[1]) * 0.55, 0.0]
        ),
    }
    out = {}
    for name, axes in (("body", body_axes), ("hinge", hinge_axes), ("extra", extra_axes)):
        positions, weights = _atoms(_walk(RESIDUES[name], axes, rng), rng)
        out[name] = (positions + centres[name], weights)
    atoms = np.concatenate([p for p, _ in out.values()])
    centre = atoms.mean(axis=0)  # the molecule's centre of mass at the box centre
    return {name: (p - centre, w) for name, (p, w) in out.items()}


def _hinge_geometry() -> tuple[np.ndarray, float]:
    """Pivot (contact point of hinge and body) and the half-angle (rad) of the path."""
    hinge = domains()["hinge"][0]
    body = domains()["body"][0]
    towards = hinge.mean(axis=0) - body.mean(axis=0)
    towards /= np.linalg.norm(towards)
    pivot = body.mean(axis=0) + towards * np.max((body - body.mean(axis=0)) @ towards)
    tip = np.max(np.linalg.norm(hinge - pivot, axis=1))
    return pivot, 0.5 * TIP_TRAVEL / tip


def hinge_positions(coordinate: float) -> np.ndarray:
    """Hinge-domain atoms (A) at a path coordinate in [0, 1]: rotation about z through the
    pivot by an angle from -a to +a, so the far tip moves TIP_TRAVEL along an arc."""
    pivot, half = _hinge_geometry()
    angle = half * (2.0 * coordinate - 1.0)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return (domains()["hinge"][0] - pivot) @ rot.T + pivot


def _gmm(positions: np.ndarray, weights: np.ndarray, extent: float) -> np.ndarray:
    n = len(positions)
    return np.column_stack([positions / extent, weights, np.full(n, ATOM_SIGMA / extent)])


def protein_system(extent: float, with_extra: bool) -> System:
    """Hinge motion (and with_extra: the extra domain in half the models) for a box of
    `extent` Angstrom; amplitudes are electrons, centres and widths box fractions."""
    if not extent >= MIN_EXTENT:
        raise InputError(
            f"box * apix: expected at least {MIN_EXTENT:.0f} A for the protein phantom, "
            f"got {extent:.1f} A"
        )
    body, extra = domains()["body"], domains()["extra"]
    hinge_w = domains()["hinge"][1]
    coordinate = np.linspace(0.0, 1.0, STATES)
    models, composition, state = [], [], []
    for s, x in enumerate(coordinate):
        parts = [_gmm(*body, extent), _gmm(hinge_positions(x), hinge_w, extent)]
        for present in (0, 1) if with_extra else (None,):
            extra_gmm = _gmm(*extra, extent)
            if present == 0:
                extra_gmm[:, 3] = 0.0
            models.append(np.concatenate(parts + ([extra_gmm] if with_extra else [])))
            composition.append(present or 0)
            state.append(s)
    labels = [np.full(len(body[0]), BODY), np.full(len(hinge_w), DOMAIN)]
    if with_extra:
        labels.append(np.full(len(extra[0]), EXTRA))
    states = np.asarray(state)
    return System(
        name="protein_composition" if with_extra else "protein_hinge",
        models=np.ascontiguousarray(models),
        state=states,
        coordinate=coordinate[states],
        composition=np.asarray(composition, dtype=np.int64),
        part=np.concatenate(labels),
        coordinate_name="hinge path (0-1)",
    )
