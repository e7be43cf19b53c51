"""What every assimilation job shares: running several filters on one problem.

An adapter's job builds its model, data and ``{name: filter}``; [`run_filters`][] runs
them with checkpoints, per-cycle timings and the failure policy, and the adapter turns the
[`FilterRuns`][] into its Dataset, figures and summary.
"""

from .runner import FilterRuns as FilterRuns, failed_lines as failed_lines, run_filters as run_filters

__all__ = ["FilterRuns", "failed_lines", "run_filters"]
