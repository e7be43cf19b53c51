"""``assimilax gencast``: the reference experiment on GenCast from the command line."""

import argparse
import sys

from assimilax.experiment import Option, add_config_options, config_values
from assimilax.run_options import add_run_options, options_from_args, run_and_report

from .experiment import FILTERS, KEEP, MMPS_SOLVERS, OBSERVATIONS, PRESET_SETTINGS, SOLVERS, GenCastExperiment


# The options of `GenCastExperiment`'s fields, in the order of ``--help``.
OPTIONS = {
    "checkpoint": Option("official GenCast .npz checkpoint"),
    "stats": Option("folder with mean_by_level.nc, stddev_by_level.nc, diffs_stddev_by_level.nc, min_by_level.nc"),
    "truth": Option("ERA5-layout NetCDF file or Zarr store, 12 h steps"),
    "particles": Option("ensemble size N (default 8; reference preset 256)", flags=("--particles", "-n")),
    "cycles": Option("observation times (default: all the truth allows)", flags=("--cycles", "-T")),
    "start": Option("first time used (ISO date); the first two are the initial history"),
    "observations": Option(
        "observation scenario: every-nth (--observe at every --observe-every-th point, noise --obs-std), "
        "the reference experiment's stations+satellite, subsampling-4x4 or coarsening-4x4 (files in "
        "--obs-dir, variances in physical units), or files (--obs-network)", choices=OBSERVATIONS),
    "obs_dir": Option("folder with the reference experiment's observation files (its data/observations)"),
    "obs_networks": Option(
        "with --observations files: a mask (.npy/.nc) or station coordinates ((p, 2) .npy or CSV of "
        "latitude, longitude) observing the comma-separated VARS, with variances in physical units (a file "
        "or a number; default --obs-std in the filter's units); repeatable",
        flags=("--obs-network",), metavar="FILE:VARS[:VARIANCES]", repeat=True),
    "regrid_observations": Option("move masks of another equiangular grid (e.g. the 1-degree networks) to the truth's grid (nearest points)"),
    "observe": Option("observed target variables (all levels)"),
    "observe_every": Option("observe every n-th grid point"),
    "obs_std": Option("observation noise standard deviation"),
    "space": Option("units of observations and noise", choices=("normalised", "physical")),
    "levels": Option("noise levels of the guided sampler (default 40; reference preset 32)"),
    "solver": Option("probability-flow ODE solver of the guided sampler (default dpm3m; reference preset ab3)", choices=sorted(SOLVERS)),
    "corrector_steps": Option("Langevin corrector steps per level (default 0; reference preset 2)"),
    "langevin_delta": Option("Langevin step size delta (tau = delta sigma^2; default 0.2)"),
    "mmps_solver": Option("MMPS linear solver: unrolled CG or BiCGStab (default cg; reference preset bicgstab)", choices=MMPS_SOLVERS),
    "cg_iterations": Option("iterations of the MMPS solver (default 1; reference preset 2)"),
    "guidance_max_sigma": Option(
        "guide the FA-APF proposals only at noise levels sigma <= SIGMA (default: at every level); "
        "a trained network's Tweedie Jacobian is unreliable at the top levels (the Lorenz-96 job uses 5)", metavar="SIGMA"),
    "ess_band": Option("tempering ESS band, fractions of N (default 50/256 60/256)", metavar=("LOW", "HIGH")),
    "block_tiles": Option(
        "replace the FA-APF by the block FA-APF (output label fa-apf-block): first-stage weights, "
        "tempering and resampling per tile of LAT x LON grid points, each with the observations "
        "in it (default: the global FA-APF)", metavar=("LAT", "LON")),
    "filters": Option(f"from {', '.join(FILTERS)}", choices=FILTERS, metavar="FILTER", unique=True),
    "noise": Option("sampler noise", choices=("spherical", "white")),
    "attention": Option("mesh attention implementation", choices=("auto", "dense", "banded")),
    "seed": Option("seed of observations and filters"),
    "keep": Option(
        "what each cycle brings to the host: the N analysis states (also gives CRPS) or only "
        "their mean and variance (2 states; for 0.25 degrees or large N)", choices=KEEP),
    "sigma_max": Option("largest noise level of the guided sampler (reference preset 88)"),
    "sigma_min": Option("smallest noise level of the guided sampler (reference preset 2e-5)"),
    "rho": Option("EDM (Karras) exponent of the noise levels (reference preset 6)"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gencast`` subcommand (entry point ``assimilax.commands``)."""
    p = subparsers.add_parser(
        "gencast",
        help="FA-APF on GenCast (official checkpoint + statistics) against an ERA5 truth",
        description=(
            "Observations drawn from an ERA5-layout truth (default: 2 m temperature and temperature on "
            "all levels at every 4th grid point, noise 0.1 in normalised units), assimilated into GenCast "
            "with the FA-APF (or, with --block-tiles, the block FA-APF on lat-lon tiles); the unconditional "
            "GenCast ensemble is the baseline. Writes a NetCDF file, "
            "figures and a summary table."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--preset", default=None, choices=sorted(PRESET_SETTINGS),
                   help="the reference experiment's filter settings (256 particles, ESS band [50, 60], 32 Karras levels "
                        "88 -> 2e-5 with rho 6, AB3 + 2 Langevin corrections of 0.2, MMPS by BiCGStab with 2 iterations); "
                        "options given explicitly (or in the --config file) override it")
    add_config_options(p, GenCastExperiment, OPTIONS)
    p.add_argument("--output", "-o", default="outputs/gencast", help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_run_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the experiment from parsed arguments; returns the exit status."""
    from . import experiment

    # Errors propagate: assimilax.cli.main prints them as one line with the exit status.
    given = config_values(GenCastExperiment, args)  # the --config file's, then the command line's
    cfg = GenCastExperiment(**given) if args.preset is None else GenCastExperiment.with_preset(args.preset, **given)
    return run_and_report(
        lambda: experiment.run(cfg, args.output, options=options_from_args(args)),
        experiment.summary_table,
        f"{args.output}/gencast_assimilation.nc, skill_spread.png, maps.png, summary.txt",
    )

if __name__ == "__main__":  # python -m assimilax_adapters.gencast.cli ... (before the entry point is registered)
    from assimilax.cli import main as assimilax_main

    sys.exit(assimilax_main(sys.argv[1:]))
