"""Command-line options that say *how* a job runs (devices, chunks, compile cache, restart).

Every adapter's subcommand adds them with [`add_run_options`][] and turns them into a
[`assimilax.sharding.ParticleLayout`][] with [`layout_from_args`][], so ``--devices``,
``--chunk-size``, ``--compile-cache``, ``--distributed`` and ``--restart`` mean the same in
every job.  None of them changes the results beyond floating-point rounding, so they are
not part of an experiment's configuration.
"""

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax

from .errors import InvalidArgument, RunFailed
from .experiment.options import RunOptions
from .sharding import ParticleLayout, enable_compile_cache, particle_layout

if TYPE_CHECKING:
    import xarray as xr


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Add the run options to a subcommand's parser."""
    group = parser.add_argument_group("how the job runs")
    group.add_argument(
        "--devices", type=int, default=None, metavar="N",
        help="devices to split the particles over (default: all; after --distributed, all of every process)",
    )
    group.add_argument(
        "--chunk-size", type=int, default=None, metavar="C",
        help="particles one device evaluates at once (default: all of its particles); bounds the memory",
    )
    group.add_argument(
        "--compile-cache", default=None, metavar="DIR",
        help="keep compiled steps in JAX's persistent compilation cache in DIR",
    )
    group.add_argument(
        "--distributed", action="store_true",
        help="call jax.distributed.initialize() first (one process per host; SLURM and Open MPI are detected)",
    )
    group.add_argument(
        "--coordinator", default=None, metavar="HOST:PORT",
        help="with --distributed outside SLURM/Open MPI: the address of process 0",
    )
    group.add_argument("--num-processes", type=int, default=None, metavar="P", help="with --coordinator: the number of processes")
    group.add_argument("--process-id", type=int, default=None, metavar="I", help="with --coordinator: this process's index, 0 to P-1")
    group.add_argument(
        "--restart", action="store_true",
        help="ignore checkpoints of another run in the output folder and start afresh",
    )
    group.add_argument(
        "--checkpoint-every", type=int, default=10, metavar="K",
        help="save each filter's checkpoint every K cycles (and at the end); a rerun resumes from it",
    )
    group.add_argument(
        "--on-nonfinite", default="stop", choices=("stop", "resample"),
        help="a filter whose analysis holds NaN or inf: stop it (the other filters still run and are "
             "written; exit status 1), or drop the bad particles and resample the finite ones (counted in "
             "the output's 'dropped')",
    )
    group.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="show the Python traceback of an error instead of one line",
    )


def layout_from_args(args: argparse.Namespace) -> ParticleLayout:
    """The particle layout the options ask for; validates them with clear errors."""
    if args.chunk_size is not None and args.chunk_size < 1:
        raise InvalidArgument(f"--chunk-size {args.chunk_size}: must be a positive integer.")
    if args.devices is not None and args.devices < 1:
        raise InvalidArgument(f"--devices {args.devices}: must be a positive integer.")
    manual = (args.coordinator, args.num_processes, args.process_id)
    if any(v is not None for v in manual) and not all(v is not None for v in manual):
        raise InvalidArgument("--coordinator, --num-processes and --process-id go together: give all three or none.")
    if args.num_processes is not None and not 0 <= args.process_id < args.num_processes:
        raise InvalidArgument(f"--process-id {args.process_id}: must be in [0, {args.num_processes}).")
    if args.distributed or args.coordinator is not None:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    if args.compile_cache is not None:
        enable_compile_cache(args.compile_cache)
    return particle_layout(args.devices, args.chunk_size)


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """The [`RunOptions`][assimilax.experiment.options.RunOptions] the command line asks for
    (the layout from [`layout_from_args`][]); validates them with clear errors."""
    if args.checkpoint_every < 1:
        raise InvalidArgument(f"--checkpoint-every {args.checkpoint_every}: must be a positive integer.")
    return RunOptions(
        progress=not args.no_progress,
        layout=layout_from_args(args),
        restart=args.restart,
        checkpoint_every=args.checkpoint_every,
        on_nonfinite=args.on_nonfinite,
    )


def run_and_report(job: Callable[[], "xr.Dataset"], summary_table: Callable[["xr.Dataset"], str], written: str) -> int:
    """Run `job`, print its summary table and what it wrote; returns the exit status 0.

    A job in which some filters failed prints the table of those that finished, then
    raises its [`assimilax.errors.RunFailed`][] (``assimilax`` prints it and exits 1).
    """
    start = time.perf_counter()
    try:
        ds = job()
    except RunFailed as failed:
        if failed.dataset is not None:
            print("\n" + summary_table(failed.dataset))
        raise
    print("\n" + summary_table(ds))
    print(f"wrote {written} ({time.perf_counter() - start:.0f} s in all)")
    return 0
