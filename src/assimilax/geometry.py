"""State geometries, a distance taper, and localisation by distance.

Localised ensemble filters (the [`assimilax.LETKF`][assimilax.filters.letkf.LETKF]) weight each observation, in the
analysis at a state location, by a *taper* of the distance between the two.  This module
holds the three pieces:

- a **geometry**: the distance between two points of a layout, ``dist(a, b)``:
  [`Periodic1D`][] (a ring, e.g. Lorenz-96), [`Periodic2D`][] (a doubly periodic
  plane, e.g. a torus of turbulence) and [`LatLon`][] (great-circle distance on a sphere,
  e.g. GenCast's grid);
- a **taper** ``rho(r) in [0, 1]``, ``rho(0) = 1``: [`GaspariCohn`][], the compactly
  supported fifth-order piecewise rational function of Gaspari & Cohn (1999, eq. 4.10);
- a [`DistanceLocalisation`][]: the coordinates of every state component and every
  observation, with a geometry and a taper, giving the weights ``rho(dist(s_l, o_j))``
  of the observations at state component ``l``.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Real

from . import _checks
from .errors import InvalidArgument, invalid
from .observations import AbstractObservationOperator

# --------------------------------------------------------------------------------------
# Geometries
# --------------------------------------------------------------------------------------


class AbstractGeometry(eqx.Module):
    """The distance between points of a layout; a point is a vector of `n_coordinates`."""

    @property
    @abc.abstractmethod
    def n_coordinates(self) -> int:
        """How many numbers describe a point (1 on a ring, 2 on a plane or a sphere)."""

    @abc.abstractmethod
    def distance(self, a: Float[Array, " c"], b: Float[Array, " c"]) -> Float[Array, ""]:
        """The distance between the points `a` and `b`."""

    def pairwise(self, a: Float[Array, "n c"], b: Float[Array, "m c"]) -> Float[Array, "n m"]:
        """``dist(a_i, b_j)`` for all pairs."""
        return jax.vmap(lambda u: jax.vmap(lambda v: self.distance(u, v))(b))(a)

    def check_points(self, points: ArrayLike, name: str) -> np.ndarray:
        """`points` as a ``(n, n_coordinates)`` float array; a ``(n,)`` array is accepted
        when there is one coordinate.  Raises a `ValueError` naming `name` otherwise."""
        p = np.asarray(points, dtype=float)
        c = self.n_coordinates
        if p.ndim == 1 and c == 1:
            p = p[:, None]
        if p.ndim != 2 or p.shape[1] != c:
            raise InvalidArgument(
                f"{name} must have shape (n, {c}) for {type(self).__name__}"
                + (" (or (n,))" if c == 1 else "")
                + f", got {np.shape(points)}."
            )
        if not np.all(np.isfinite(p)):
            raise InvalidArgument(f"{name} contain NaN or inf.")
        return p


def _periodic_difference(a: Array, b: Array, length: Array) -> Array:
    """``|a - b|`` on a circle of circumference `length`: ``min(t, L - t)``, ``t = |a - b| mod L``."""
    t = jnp.mod(jnp.abs(a - b), length)
    return jnp.minimum(t, length - t)


class Periodic1D(AbstractGeometry):
    """A ring of circumference `length`: ``dist(a, b) = min(|a - b| mod L, L - |a - b| mod L)``.

    For Lorenz-96 on ``d`` components, ``Periodic1D(d)`` with component ``i`` at ``i``.
    """

    length: float | int = eqx.field(converter=float)

    def __check_init__(self):
        _checks.positive("Periodic1D", "length", self.length)

    @property
    def n_coordinates(self) -> int:
        return 1

    def distance(self, a: Float[Array, " c"], b: Float[Array, " c"]) -> Float[Array, ""]:
        return _periodic_difference(a[0], b[0], jnp.asarray(self.length, a.dtype))


class Periodic2D(AbstractGeometry):
    """A doubly periodic plane (a flat torus) of sides ``lengths = (L_x, L_y)``:
    the Euclidean norm of the two periodic coordinate differences."""

    lengths: tuple[float | int, ...] = eqx.field(converter=lambda v: tuple(float(x) for x in v))

    def __check_init__(self):
        if len(self.lengths) != 2 or not all(0 < length < float("inf") for length in self.lengths):
            raise invalid("lengths", self.lengths, "two finite numbers > 0", owner="Periodic2D")

    @property
    def n_coordinates(self) -> int:
        return 2

    def distance(self, a: Float[Array, " c"], b: Float[Array, " c"]) -> Float[Array, ""]:
        delta = _periodic_difference(a, b, jnp.asarray(self.lengths, a.dtype))
        return jnp.sqrt(jnp.sum(delta**2))


class LatLon(AbstractGeometry):
    """The great-circle distance on a sphere of `radius` (default the Earth's, 6371 km)
    between points ``(latitude, longitude)`` in degrees, by the haversine formula:

        dist = 2 R asin(sqrt(sin^2(dphi / 2) + cos phi_a cos phi_b sin^2(dlambda / 2))).
    """

    radius: float | int = eqx.field(converter=float, default=6371.0)

    def __check_init__(self):
        _checks.positive("LatLon", "radius", self.radius)

    @property
    def n_coordinates(self) -> int:
        return 2

    def distance(self, a: Float[Array, " c"], b: Float[Array, " c"]) -> Float[Array, ""]:
        phi_a, lam_a = jnp.deg2rad(a[0]), jnp.deg2rad(a[1])
        phi_b, lam_b = jnp.deg2rad(b[0]), jnp.deg2rad(b[1])
        h = jnp.sin((phi_b - phi_a) / 2) ** 2 + jnp.cos(phi_a) * jnp.cos(phi_b) * jnp.sin(
            (lam_b - lam_a) / 2
        ) ** 2
        return 2 * self.radius * jnp.arcsin(jnp.sqrt(jnp.clip(h, 0.0, 1.0)))

    def check_points(self, points: ArrayLike, name: str) -> np.ndarray:
        p = super().check_points(points, name)
        if np.any(np.abs(p[:, 0]) > 90):
            raise InvalidArgument(f"{name}: latitudes must be in [-90, 90] degrees, got max |lat| {np.abs(p[:, 0]).max()}.")
        return p


# --------------------------------------------------------------------------------------
# Tapers
# --------------------------------------------------------------------------------------


class AbstractTaper(eqx.Module):
    """A localisation function ``rho(r)``: 1 at distance 0, decreasing, in ``[0, 1]``."""

    @abc.abstractmethod
    def __call__(self, distance: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """``rho`` of every distance."""

    @property
    @abc.abstractmethod
    def support(self) -> float:
        """The distance beyond which ``rho = 0`` (``inf`` if none)."""


class GaspariCohn(AbstractTaper):
    """The Gaspari-Cohn taper (Gaspari & Cohn 1999, eq. 4.10) of half-width ``c``.

    With ``z = r / c``:

        rho = -z^5/4 + z^4/2 + 5 z^3/8 - 5 z^2/3 + 1                     for 0 <= z <= 1,
        rho = z^5/12 - z^4/2 + 5 z^3/8 + 5 z^2/3 - 5 z + 4 - 2/(3 z)      for 1 < z <= 2,
        rho = 0                                                          for z > 2.

    It is a correlation function (positive definite on R^3) that vanishes beyond ``2 c``.
    Near 0 it matches the Gaussian ``exp(-r^2 / (2 L^2))`` with ``c = sqrt(10/3) L``:
    [`GaspariCohn.from_length_scale`][] builds it from ``L``, which is what DAPPER calls
    the localisation radius (``loc_rad``).
    """

    half_width: float | int = eqx.field(converter=float)

    def __check_init__(self):
        _checks.positive("GaspariCohn", "half_width", self.half_width)

    @classmethod
    def from_length_scale(cls, length_scale: float) -> "GaspariCohn":
        """The taper of half-width ``sqrt(10/3) L`` (DAPPER's ``loc_rad = L``)."""
        _checks.positive("GaspariCohn.from_length_scale", "length_scale", length_scale)
        return cls(float(np.sqrt(10.0 / 3.0) * length_scale))

    @property
    def support(self) -> float:
        return 2.0 * self.half_width

    def __call__(self, distance: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        z = jnp.abs(distance) / self.half_width
        inner = (((-0.25 * z + 0.5) * z + 0.625) * z - 5.0 / 3.0) * z**2 + 1.0
        zs = jnp.where(z > 1.0, z, 2.0)  # keeps 2 / (3 z) finite where it is not used
        outer = ((((zs / 12.0 - 0.5) * zs + 0.625) * zs + 5.0 / 3.0) * zs - 5.0) * zs + 4.0 - 2.0 / (3.0 * zs)
        return jnp.where(z <= 1.0, inner, jnp.where(z <= 2.0, jnp.maximum(outer, 0.0), 0.0))


class NoTaper(AbstractTaper):
    """``rho = 1`` everywhere: no localisation (the LETKF becomes the ETKF)."""

    @property
    def support(self) -> float:
        return float("inf")

    def __call__(self, distance: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return jnp.ones_like(distance)


# --------------------------------------------------------------------------------------
# Localisation by distance
# --------------------------------------------------------------------------------------


class DistanceLocalisation(eqx.Module):
    """Where every state component and every observation lies, and how far they reach.

    The weight of observation ``j`` in the analysis of state component ``l`` is
    ``rho(dist(s_l, o_j))``; [`DistanceLocalisation.weights`][] gives the ``(p,)`` weights
    of one component.  Build one with explicit coordinates, or with
    [`DistanceLocalisation.from_operator`][] to place each observation at the state
    component it is most sensitive to.

    **Arguments:**

    - `geometry`: an [`AbstractGeometry`][].
    - `state_points`: ``(d, c)`` coordinates of the state components (``(d,)`` on a ring).
    - `obs_points`: ``(p, c)`` coordinates of the observations.
    - `taper`: an [`AbstractTaper`][], e.g. ``GaspariCohn.from_length_scale(4.0)``.
    """

    geometry: AbstractGeometry
    state_points: Float[Array, "d c"]
    obs_points: Float[Array, "p c"]
    taper: AbstractTaper

    def __init__(
        self,
        geometry: AbstractGeometry,
        state_points: Real[ArrayLike, "d c"] | Real[ArrayLike, " d"],
        obs_points: Real[ArrayLike, "p c"] | Real[ArrayLike, " p"],
        taper: AbstractTaper,
    ):
        self.geometry = geometry
        self.state_points = jnp.asarray(geometry.check_points(state_points, "state_points"))
        self.obs_points = jnp.asarray(geometry.check_points(obs_points, "obs_points"))
        self.taper = taper

    @property
    def state_size(self) -> int:
        return self.state_points.shape[0]

    @property
    def obs_size(self) -> int:
        return self.obs_points.shape[0]

    @classmethod
    def from_operator(
        cls,
        geometry: AbstractGeometry,
        state_points: Real[ArrayLike, "d c"] | Real[ArrayLike, " d"],
        operator: AbstractObservationOperator,
        taper: AbstractTaper,
        at: Float[ArrayLike, " d"] | None = None,
    ) -> "DistanceLocalisation":
        """Place observation ``j`` at the state component ``argmax_l |J_jl|`` it is most
        sensitive to, ``J`` the Jacobian of `operator` at `at` (default zero; irrelevant
        for a linear operator): exact for a selection, the largest weight for an
        interpolation or a block mean."""
        points = geometry.check_points(state_points, "state_points")
        d = points.shape[0]
        operator.check_state_size(d)
        x0 = jnp.zeros(d) if at is None else jnp.asarray(at, dtype=jnp.result_type(float))
        _, pullback = jax.vjp(operator, x0)
        eye = jnp.eye(operator.obs_size, dtype=x0.dtype)
        rows = jax.lax.map(lambda e: jnp.abs(pullback(e)[0]), eye, batch_size=256)
        nearest = np.asarray(jnp.argmax(rows, axis=1))
        dead = np.flatnonzero(np.asarray(rows.max(axis=1)) == 0)
        if dead.size:
            raise InvalidArgument(
                f"DistanceLocalisation: observation {dead[0]} does not depend on any state "
                "component at the linearisation point; give `obs_points` explicitly."
            )
        return cls(geometry, points, points[nearest], taper)

    def weights(self, point: Float[Array, " c"]) -> Float[Array, " p"]:
        """``rho(dist(point, o_j))`` for every observation ``j``."""
        return self.taper(jax.vmap(lambda o: self.geometry.distance(point, o))(self.obs_points))

    def check(self, state_size: int, obs_size: int) -> None:
        """Raise a `ValueError` if the coordinates do not match a state and observations."""
        if self.state_size != state_size:
            raise InvalidArgument(
                f"DistanceLocalisation has {self.state_size} state points but the state has "
                f"{state_size} components."
            )
        if self.obs_size != obs_size:
            raise InvalidArgument(
                f"DistanceLocalisation has {self.obs_size} observation points but the "
                f"observation operator returns {obs_size} values."
            )


def nearest_observations(
    weights: Float[Array, " p"], count: int
) -> tuple[Float[Array, " k"], Int[Array, " k"]]:
    """The `count` largest weights and their observation indices (a static local domain)."""
    values, indices = jax.lax.top_k(weights, count)
    return values, indices
