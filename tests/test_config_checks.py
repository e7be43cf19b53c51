"""`assimilax.experiment.check_config`: the checks every job's configuration shares."""

import dataclasses

import pytest

import assimilax as ax


@dataclasses.dataclass(frozen=True)
class Job:
    particles: int = 8
    cycles: int = 2
    seed: int = 0
    levels: int = 4
    solver: str = "dpm3m"
    filters: tuple[str, ...] = ("a",)
    ess_band: tuple[float, float] = (0.2, 0.3)
    local_ess_band: tuple[float, float] = (0.1, 0.2)
    q: float = 0.5
    path: str | None = None
    spinup: int | None = None

    def __post_init__(self):
        ax.experiment.check_config(self, "test job", ("a", "b"), positive=("q",),
                                   checks=lambda: [(self.cycles < 100, f"cycles must be below 100, got {self.cycles}")])


def test_a_valid_configuration_passes():
    Job()
    Job(spinup=1, path="x", filters=("b", "a"))


@pytest.mark.parametrize("kw, message", [
    (dict(particles=1), "particles must be at least 2, got 1"),
    (dict(particles=True), "particles must be an integer, got True"),
    (dict(particles=2.0), "particles must be an integer, got 2.0"),
    (dict(spinup="3"), "spinup must be an integer, got '3'"),
    (dict(cycles=0), "cycles must be at least 1, got 0"),
    (dict(seed=2**32), "seed must be in [0, 2**32)"),
    (dict(levels=1), "levels must be at least 2, got 1"),
    (dict(solver="rk4"), "unknown solver 'rk4'; choose from ['euler'"),
    (dict(filters=("c",)), "unknown filters ['c']; choose from ['a', 'b']"),
    (dict(filters=()), "unknown filters (none given)"),
    (dict(ess_band=(0.3, 0.2)), "ess_band must satisfy 0 < low <= high <= 1, got (0.3, 0.2)"),
    (dict(local_ess_band=(0.0, 0.2)), "local_ess_band must satisfy 0 < low <= high <= 1"),
    (dict(ess_band=(0.2, float("nan"))), "ess_band must be finite, got nan"),
    (dict(q=float("inf")), "q must be finite, got inf"),
    (dict(q="0.5"), "q must be a number, got '0.5'"),
    (dict(q=0.0), "q must be positive, got 0.0"),
    (dict(cycles=200), "cycles must be below 100, got 200"),
])
def test_each_problem_is_named(kw, message):
    with pytest.raises(ax.errors.InvalidConfiguration, match="invalid test job: ") as info:
        Job(**kw)
    assert message in str(info.value)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ax.errors.InvalidConfiguration) as info:
        Job(particles=1, levels=1, q=-1.0)
    assert len(info.value.problems) == 3
