"""How a job runs: progress, devices, checkpoints and the non-finite policy."""

import dataclasses
from typing import Literal

from ..errors import InvalidArgument
from ..sharding import ParticleLayout


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The options of a job that do not change what it computes (beyond float rounding).

    - `progress`: show a progress bar per filter.
    - `layout`: a [`assimilax.sharding.ParticleLayout`][] (devices and chunk size); None is
      one device.
    - `restart`: start afresh where a checkpoint belongs to another run (else it is refused).
    - `checkpoint_every`: the checkpoint interval in cycles.
    - `on_nonfinite`: ``"stop"`` a filter whose analysis turns non-finite (the others still
      run and are written) or ``"resample"`` its bad particles
      ([`assimilax.assimilate`][assimilax.assimilate.assimilate]).
    """

    progress: bool = True
    layout: ParticleLayout | None = None
    restart: bool = False
    checkpoint_every: int = 10
    on_nonfinite: Literal["stop", "resample"] = "stop"

    def __post_init__(self):
        every = self.checkpoint_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InvalidArgument(f"RunOptions: checkpoint_every = {every!r}: must be a positive integer.")
        if self.on_nonfinite not in ("stop", "resample"):
            raise InvalidArgument(f"RunOptions: on_nonfinite = {self.on_nonfinite!r}: must be 'stop' or 'resample'.")
