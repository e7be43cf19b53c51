"""What every assimilation job shares: running several filters on one problem.

An adapter's job builds its model, data and ``{name: filter}``;
[`run_job`][assimilax.experiment.runner.run_job] runs them (through
[`run_filters`][assimilax.experiment.runner.run_filters]) with checkpoints, per-cycle
timings and the failure policy of its [`RunOptions`][assimilax.experiment.options.RunOptions],
and writes the adapter's Dataset, figures and summary.  Its command-line options come from
its configuration dataclass through
[`add_config_options`][assimilax.experiment.config_cli.add_config_options] and
[`config_from_args`][assimilax.experiment.config_cli.config_from_args] (also ``--config FILE.toml``),
and its shared fields are checked by [`check_config`][assimilax.experiment.config_checks.check_config].
"""

from .config_checks import check_config as check_config
from .config_cli import (
    Option as Option,
    add_config_options as add_config_options,
    config_from_args as config_from_args,
    config_values as config_values,
)
from .options import RunOptions as RunOptions
from .runner import FilterRuns as FilterRuns, failed_lines as failed_lines, run_filters as run_filters, run_job as run_job

__all__ = [
    "FilterRuns",
    "Option",
    "RunOptions",
    "add_config_options",
    "check_config",
    "config_from_args",
    "config_values",
    "failed_lines",
    "run_filters",
    "run_job",
]
