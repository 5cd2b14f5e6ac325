"""Phantoms of the paper's three simulated systems (Extended Data Fig. 5), made of Gaussians.

Every phantom is a rigid body (an irregular union of ellipsoids, so that its
orientation is identifiable from a projection) with a small domain sitting on its
top face (+y). Positions and widths are fractions of the box (docs/conventions.md),
so the same phantom serves any box: every Gaussian width is SIGMA = 0.03 (about one
pixel at box 32, so nothing aliases), and every centre stays within radius 0.30 of
the origin, leaving room for the Gaussians' tails and a shift of 0.04 box.

- ``linear``: the domain slides along x over 0.26 box, longer than its own width
  (0.20 box); 20 states, coordinate = position along the path in [0, 1].
- ``cyclic``: the domain orbits the y axis at radius 0.10 box, turning with it;
  36 states, coordinate = angle in degrees (0, 10, ..., 350).
- ``composition``: ``linear`` plus a small blob on the body's +z face, present in
  half of the particles; one model per (state, composition), the blob's amplitudes
  set to 0 when it is absent, so every model has the same Gaussians.

All Gaussians have amplitude 1 and are packed at the same density (k-means
centroids of points drawn uniformly in the shape), so each part's share of the mass
is its share of the volume: the domain is ~12% of the molecule, the blob ~10%.
The phantoms are fixed (their own seed), independent of the particle seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
from scipy.cluster.vq import kmeans2

from .errors import InputError

SIGMA = 0.03
PHANTOM_SEED = 20210601

BODY, DOMAIN, EXTRA = 0, 1, 2  # part labels of the Gaussians

Lobes = tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...]

BODY_LOBES: Lobes = (
    ((0.0, -0.03, 0.0), (0.22, 0.12, 0.16)),
    ((-0.12, -0.11, 0.07), (0.10, 0.09, 0.09)),
    ((0.12, -0.07, -0.10), (0.09, 0.08, 0.09)),
)
DOMAIN_LOBES: Lobes = (((0.0, 0.0, 0.0), (0.10, 0.085, 0.085)),)  # built at the origin
EXTRA_LOBES: Lobes = (((0.08, -0.04, 0.21), (0.09, 0.085, 0.08)),)
N_BODY, N_DOMAIN, N_EXTRA = 320, 46, 39  # equal packing density: counts follow volumes

DOMAIN_HEIGHT = 0.17  # y of the domain's centre, resting on the body's top face
LINEAR_HALF_PATH = 0.13  # the domain's centre moves from x = -0.13 to x = +0.13
LINEAR_STATES = 20
ORBIT_RADIUS = 0.10
CYCLIC_STATES = 36


@dataclass(frozen=True)
class System:
    """A simulated system: one GMM per model, each model one (state, composition)."""

    name: str
    models: np.ndarray  # (M, N, 5) float64 GMMs, box fractions
    state: np.ndarray  # (M,) int, 0-based state of each model
    coordinate: np.ndarray  # (M,) ground-truth continuous coordinate of each model
    composition: np.ndarray  # (M,) int, 1 when the extra density is present
    part: np.ndarray  # (N,) int, BODY / DOMAIN / EXTRA for each Gaussian
    coordinate_name: str  # what the coordinate measures, with its unit

    @property
    def n_states(self) -> int:
        return int(self.state.max()) + 1


def _inside(points: np.ndarray, lobes: Lobes) -> np.ndarray:
    """Which points fall inside the union of the ellipsoids."""
    hit = np.zeros(len(points), dtype=bool)
    for centre, axes in lobes:
        hit |= (((points - np.asarray(centre)) / np.asarray(axes)) ** 2).sum(1) <= 1.0
    return hit


def _fill(lobes: Lobes, n: int, rng: np.random.Generator) -> np.ndarray:
    """n evenly spread points filling the union of ellipsoids (k-means of uniform draws).

    Even packing keeps the density smooth, so the GMM build sees a protein-like blob
    rather than clumps.
    """
    lo = np.min([np.subtract(c, a) for c, a in lobes], axis=0)
    hi = np.max([np.add(c, a) for c, a in lobes], axis=0)
    draws = rng.uniform(lo, hi, size=(30 * n, 3))
    points = draws[_inside(draws, lobes)]
    centres, _ = kmeans2(points, n, iter=20, minit="++", seed=rng)
    return centres


def _gaussians(centres: np.ndarray) -> np.ndarray:
    """(n, 5) GMM of unit-amplitude Gaussians of width SIGMA at the given centres."""
    n = len(centres)
    return np.column_stack([centres, np.ones(n), np.full(n, SIGMA)])


@cache
def parts() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (n, 3) of the rigid body, of the domain (around the origin), of the blob.

    Cached and read-only: the k-means fill takes a fraction of a second.
    """
    rng = np.random.default_rng(PHANTOM_SEED)
    domain = _fill(DOMAIN_LOBES, N_DOMAIN, rng)
    domain -= domain.mean(axis=0)  # its centre then lies exactly on the path or orbit
    centres = (_fill(BODY_LOBES, N_BODY, rng), domain, _fill(EXTRA_LOBES, N_EXTRA, rng))
    for c in centres:
        c.flags.writeable = False
    return centres


def _rot_y(angle_deg: float) -> np.ndarray:
    """Rotation about the y axis (acting on column vectors x, y, z)."""
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def linear_path(coordinate: np.ndarray) -> np.ndarray:
    """Centre (M, 3) of the linear domain at coordinates in [0, 1]."""
    x = LINEAR_HALF_PATH * (2.0 * np.asarray(coordinate, dtype=np.float64) - 1.0)
    return np.column_stack([x, np.full_like(x, DOMAIN_HEIGHT), np.zeros_like(x)])


def _system(
    name: str,
    body: np.ndarray,
    domains: np.ndarray,
    coordinate: np.ndarray,
    coordinate_name: str,
    extra: np.ndarray | None = None,
) -> System:
    """Assemble per-state domain positions (S, n, 3) into models; with extra, two per state."""
    n_states = len(domains)
    blocks = [np.broadcast_to(_gaussians(body), (n_states, len(body), 5))]
    blocks.append(np.stack([_gaussians(d) for d in domains]))
    labels = [np.full(len(body), BODY), np.full(domains.shape[1], DOMAIN)]
    states = np.arange(n_states)
    if extra is None:
        models = np.concatenate(blocks, axis=1)
        composition = np.zeros(n_states, dtype=np.int64)
    else:
        blocks.append(np.broadcast_to(_gaussians(extra), (n_states, len(extra), 5)))
        labels.append(np.full(len(extra), EXTRA))
        models = np.repeat(np.concatenate(blocks, axis=1), 2, axis=0)
        composition = np.tile([0, 1], n_states)
        models[composition == 0, -len(extra) :, 3] = 0.0
        states, coordinate = np.repeat(states, 2), np.repeat(coordinate, 2)
    return System(
        name=name,
        models=np.ascontiguousarray(models),
        state=states,
        coordinate=np.asarray(coordinate, dtype=np.float64),
        composition=composition,
        part=np.concatenate(labels),
        coordinate_name=coordinate_name,
    )


def _linear(name: str, with_extra: bool) -> System:
    body, domain, extra = parts()
    coordinate = np.linspace(0.0, 1.0, LINEAR_STATES)
    domains = domain[None] + linear_path(coordinate)[:, None]
    label = "position on the path (0-1)"
    return _system(name, body, domains, coordinate, label, extra if with_extra else None)


def linear_system() -> System:
    """Rigid body plus a domain sliding along x."""
    return _linear("linear", with_extra=False)


def composition_system() -> System:
    """The linear system plus a blob present in half of the models, independent of the motion."""
    return _linear("composition", with_extra=True)


def cyclic_system() -> System:
    """Rigid body plus a domain orbiting the y axis, turning with its orbit."""
    body, domain, _ = parts()
    angles = np.arange(CYCLIC_STATES) * (360.0 / CYCLIC_STATES)
    start = domain + np.array([ORBIT_RADIUS, DOMAIN_HEIGHT, 0.0])
    domains = np.stack([start @ _rot_y(a).T for a in angles])
    return _system("cyclic", body, domains, angles, "rotation angle (degrees)")


SYSTEMS: dict[str, Callable[[], System]] = {
    "linear": linear_system,
    "cyclic": cyclic_system,
    "composition": composition_system,
}


def scale_part(system: System, part: int, factor: float) -> System:
    """The system with one part's amplitudes multiplied by factor.

    A heavier extra density makes the compositions differ more than the noise, the
    regime where class maps beat the consensus (docs/validation.md).
    """
    models = system.models.copy()
    models[:, system.part == part, 3] *= factor
    return replace(system, models=models)


def build_system(name: str) -> System:
    """The named system's models; raises InputError for an unknown name."""
    if name not in SYSTEMS:
        raise InputError(f"system: expected one of {', '.join(SYSTEMS)}, got {name!r}")
    return SYSTEMS[name]()


# Oligomers for symmetry expansion (gmmscape.symmetry): identical subunits, each a body
# and a small domain beside it, placed by the group's operators; in every model one
# subunit's domain has slid along its path while the others rest at its start.
SUBUNIT_BODY: Lobes = (((0.13, 0.0, 0.0), (0.07, 0.07, 0.07)),)
SUBUNIT_DOMAIN: Lobes = (((0.0, 0.0, 0.0), (0.055, 0.055, 0.055)),)  # built at the origin
N_SUBUNIT_BODY, N_SUBUNIT_DOMAIN = 48, 24
SUBUNIT_REST = np.array([0.23, -0.12, 0.0])  # the domain's centre at rest ...
SUBUNIT_PATH = np.array([0.0, 0.24, 0.0])  # ... and its path, along the tangent (+y)
OLIGOMER_COORDINATES = (0.4, 0.55, 0.7, 0.85, 1.0)  # of the moved domain along its path


def oligomer_system(group: str = "C3", lift: float | None = None) -> System:
    """A Cn or Dn oligomer (subunit k = operator k of gmmscape.symmetry applied to the
    subunit at +x): one model per (moved subunit, coordinate), state = subunit *
    len(OLIGOMER_COORDINATES) + position, coordinate = how far along its path (0-1) the
    moved subunit's domain is (the others rest at 0). ``lift``: z of the subunit at +x
    (default 0 for Cn, 0.08 for Dn, whose 2-fold about x maps it below z = 0)."""
    from .symmetry import operators, parse_group

    ops = operators(group)
    lift = (0.08 if parse_group(group)[0] == "D" else 0.0) if lift is None else lift
    rng = np.random.default_rng(PHANTOM_SEED + 1)
    body = _fill(SUBUNIT_BODY, N_SUBUNIT_BODY, rng) + [0.0, 0.0, lift]
    domain = _fill(SUBUNIT_DOMAIN, N_SUBUNIT_DOMAIN, rng)
    domain -= domain.mean(axis=0)
    rest = SUBUNIT_REST + [0.0, 0.0, lift]
    models, states, coordinates = [], [], []
    for k in range(len(ops)):
        for s, t in enumerate(OLIGOMER_COORDINATES):
            at = np.zeros(len(ops))
            at[k] = t
            units = [
                np.vstack([body, domain + rest + a * SUBUNIT_PATH]) @ op.T
                for op, a in zip(ops, at, strict=True)
            ]
            models.append(_gaussians(np.vstack(units)))
            states.append(k * len(OLIGOMER_COORDINATES) + s)
            coordinates.append(t)
    unit_part = np.r_[np.full(len(body), BODY), np.full(len(domain), DOMAIN)]
    return System(
        name=f"oligomer_{group.lower()}",
        models=np.stack(models),
        state=np.asarray(states),
        coordinate=np.asarray(coordinates, dtype=np.float64),
        composition=np.zeros(len(models), dtype=np.int64),
        part=np.tile(unit_part, len(ops)),
        coordinate_name="position of the moved subunit's domain on its path (0-1)",
    )
