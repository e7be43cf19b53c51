"""What every assimilation job shares: running several filters on one problem.

An adapter's job builds its model, data and ``{name: filter}``;
[`run_job`][assimilax.experiment.runner.run_job] runs them (through
[`run_filters`][assimilax.experiment.runner.run_filters]) with checkpoints, per-cycle
timings and the failure policy of its [`RunOptions`][assimilax.experiment.options.RunOptions],
and writes the adapter's Dataset, figures and summary.
"""

from .options import RunOptions as RunOptions
from .runner import FilterRuns as FilterRuns, failed_lines as failed_lines, run_filters as run_filters, run_job as run_job

__all__ = ["FilterRuns", "RunOptions", "failed_lines", "run_filters", "run_job"]
