"""``assimilax kolmogorov``: the Kolmogorov-flow twin experiment from the command line."""

import argparse

import assimilax as ax
from assimilax.experiment import Option, add_config_options, config_from_args
from assimilax.run_options import add_run_options, options_from_args, run_and_report

from .experiment import FILTERS, OBSERVE, KolmogorovExperiment


# The options of `KolmogorovExperiment`'s fields, in the order of ``--help``.
OPTIONS = {
    "particles": Option("ensemble size N", flags=("--particles", "-n")),
    "cycles": Option("observation times", flags=("--cycles", "-T")),
    "seed": Option("seed of truth, observations and filters"),
    "observe": Option("grid points or block means", choices=OBSERVE),
    "stride": Option("every STRIDE-th point, or STRIDE x STRIDE blocks"),
    "obs_fraction": Option("observation noise std as a fraction of the field's std"),
    "filters": Option(f"from {', '.join(FILTERS)}", choices=FILTERS, metavar="FILTER", unique=True),
    "levels": Option("noise levels of the sampler"),
    "tile": Option("tile side of the block FA-APF, in grid points"),
    "localisation_radius": Option("LETKF length scale, in grid points"),
    "local_radius": Option("Gaspari-Cohn length scale of the localised FA-APF filters, in grid points"),
    "local_inflation": Option("inflation of the updated histories of the localised FA-APF filters"),
    "local_update": Option("local update of the localised FA-APF filters: the second-order exact transform, the optimal "
                           "transport of each grid point's marginal, or coupled resampling", choices=ax.LOCAL_UPDATE_NAMES),
    "emulator_path": Option("path of other trained weights (.eqx with its .json)", flags=("--emulator",)),
    "q": Option("model noise standard deviation per interval (the shipped emulator is for 0.5)"),
    "init_std": Option("standard deviation of the initial ensemble around the truth's start"),
    "solver": Option("probability-flow ODE solver of the sampler", choices=sorted(ax.SOLVER_NAMES)),
    "ess_band": Option("tempering ESS band of the FA-APF filters, fractions of N", metavar=("LOW", "HIGH")),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``kolmogorov`` subcommand (entry point ``assimilax.commands``)."""
    p = subparsers.add_parser(
        "kolmogorov",
        help="2-D Kolmogorov-flow twin experiment with the shipped diffusion emulator",
        description="Twin experiment on 2-D Kolmogorov flow (vorticity, periodic 64 x 64): observations of every "
                    "STRIDE-th grid point or of STRIDE x STRIDE block means, the localised and block FA-APF with the "
                    "shipped emulator (and the exact one), the LETKF, the EnKF and the unconditional forecast. Writes a "
                    "NetCDF file, figures (skill/spread, truth / mean / error maps) and a summary table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_options(p, KolmogorovExperiment, OPTIONS)
    p.add_argument("--output", "-o", default="outputs/kolmogorov", help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_run_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the experiment from parsed arguments (errors are printed by `assimilax.cli.main`)."""
    from . import experiment

    cfg = config_from_args(KolmogorovExperiment, args)
    return run_and_report(
        lambda: experiment.run(cfg, args.output, options=options_from_args(args)),
        experiment.summary_table,
        f"{args.output}/kolmogorov_twin.nc, skill_spread.png, maps.png, summary.txt",
    )
