"""``assimilax kolmogorov``: the Kolmogorov-flow twin experiment from the command line."""

import argparse

from assimilax.run_options import add_run_options, options_from_args, run_and_report

from .experiment import FILTERS, OBSERVE, KolmogorovExperiment


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``kolmogorov`` subcommand (entry point ``assimilax.commands``)."""
    d = KolmogorovExperiment()
    p = subparsers.add_parser(
        "kolmogorov",
        help="2-D Kolmogorov-flow twin experiment with the shipped diffusion emulator",
        description="Twin experiment on 2-D Kolmogorov flow (vorticity, periodic 64 x 64): observations of every "
                    "STRIDE-th grid point or of STRIDE x STRIDE block means, the block FA-APF with the shipped "
                    "emulator (and the exact one), the LETKF, the EnKF and the unconditional forecast. Writes a "
                    "NetCDF file, figures (skill/spread, truth / mean / error maps) and a summary table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--particles", "-n", type=int, default=d.particles, help="ensemble size N")
    p.add_argument("--cycles", "-T", type=int, default=d.cycles, help="observation times")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of truth, observations and filters")
    p.add_argument("--observe", default=d.observe, choices=OBSERVE, help="grid points or block means")
    p.add_argument("--stride", type=int, default=d.stride, help="every STRIDE-th point, or STRIDE x STRIDE blocks")
    p.add_argument("--obs-fraction", type=float, default=d.obs_fraction, help="observation noise std as a fraction of the field's std")
    p.add_argument("--filters", nargs="+", default=list(d.filters), choices=FILTERS, metavar="FILTER", help=f"from {', '.join(FILTERS)}")
    p.add_argument("--levels", type=int, default=d.levels, help="noise levels of the sampler")
    p.add_argument("--tile", type=int, default=d.tile, help="tile side of the block FA-APF, in grid points")
    p.add_argument("--localisation-radius", type=float, default=d.localisation_radius, help="LETKF length scale, in grid points")
    p.add_argument("--emulator", default=None, help="path of other trained weights (.eqx with its .json)")
    p.add_argument("--output", "-o", default="outputs/kolmogorov", help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_run_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the experiment from parsed arguments (errors are printed by `assimilax.cli.main`)."""
    from . import experiment

    cfg = KolmogorovExperiment(
        particles=args.particles, cycles=args.cycles, seed=args.seed, observe=args.observe, stride=args.stride,
        obs_fraction=args.obs_fraction, filters=tuple(dict.fromkeys(args.filters)), levels=args.levels,
        tile=args.tile, localisation_radius=args.localisation_radius, emulator_path=args.emulator,
    )
    return run_and_report(
        lambda: experiment.run(cfg, args.output, options=options_from_args(args)),
        experiment.summary_table,
        f"{args.output}/kolmogorov_twin.nc, skill_spread.png, maps.png, summary.txt",
    )
