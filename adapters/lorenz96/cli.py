"""``assimilax lorenz96``: the twin experiment from the command line."""

import argparse

from assimilax.errors import InvalidArgument
from assimilax.experiment import Option, add_config_options, config_from_args, config_values
from assimilax.run_options import add_run_options, options_from_args, run_and_report

from .experiment import FILTERS, LOCAL_UPDATES, OBSERVE, SOLVERS, TwinExperiment


# The options of `TwinExperiment`'s fields, in the order of ``--help`` (``--init-std`` last).
OPTIONS = {
    "particles": Option("ensemble size N", flags=("--particles", "-n")),
    "cycles": Option("number of observation times", flags=("--cycles", "-T")),
    "observe_every": Option("observe every k-th component"),
    "observe": Option("what is observed of the observed components: x, or |x| (the sign is lost: a non-Gaussian case)", choices=OBSERVE),
    "obs_std": Option("observation noise standard deviation"),
    "q": Option("model noise standard deviation per interval"),
    "dim": Option("Lorenz-96 dimension (the shipped emulator is for 40)"),
    "seed": Option("seed of truth, observations and filters"),
    "spinup": Option("cycles left out of the summary means (default: min(20, cycles / 5))"),
    "filters": Option(f"filters to run, from {', '.join(FILTERS)}", choices=FILTERS, metavar="FILTER", unique=True),
    "levels": Option("noise levels of the sampler"),
    "sigma_max": Option("largest noise level of the sampler"),
    "sigma_min": Option("smallest noise level of the sampler"),
    "rho": Option("EDM (Karras) exponent of the noise levels"),
    "solver": Option("probability-flow ODE solver", choices=sorted(SOLVERS)),
    "corrector_steps": Option("Langevin corrector steps per level"),
    "cg_iterations": Option("conjugate-gradient steps of MMPS"),
    "guidance_max_sigma": Option("guide the proposals only at noise levels below this"),
    "ess_band": Option("tempering ESS band, fractions of N", metavar=("LOW", "HIGH")),
    "block_size": Option("components per block of the block FA-APF filters"),
    "emulator_path": Option("path of other trained weights (.eqx with its .json)", flags=("--emulator",)),
    "inflation": Option("multiplicative inflation of the EnKF, ETKF and LETKF forecast anomalies"),
    "localisation_radius": Option("LETKF Gaspari-Cohn length scale in grid points (DAPPER's loc_rad; half-width sqrt(10/3) times it)"),
    "local_radius": Option("Gaspari-Cohn length scale of the localised FA-APF filters, in grid points"),
    "local_inflation": Option("inflation of the updated histories of the localised FA-APF filters (transport and resampling only)"),
    "local_update": Option(
        "local update of the localised FA-APF filters: the second-order exact transform, the optimal transport of "
        "each component's marginal, coupled resampling, or auto (transform for linear observations, transport for --observe abs)",
        choices=LOCAL_UPDATES,
    ),
    "local_predictive_variance": Option(
        "variance added to R in the first-stage weights of the localised FA-APF filters "
        "(default: q^2 for linear observations, R / 2 for --observe abs)"),
    "local_ess_band": Option("tempering ESS band of the localised FA-APF filters, fractions of N", metavar=("LOW", "HIGH")),
    "init_std": Option("standard deviation of the initial ensemble around the truth's start"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``lorenz96`` subcommand (entry point ``assimilax.commands``)."""
    p = subparsers.add_parser(
        "lorenz96",
        help="Lorenz-96 twin experiment with the shipped diffusion emulator",
        description=(
            "Twin experiment on Lorenz-96: a truth of the stochastic model, noisy observations of "
            "every OBSERVE_EVERY-th component, and the FA-APF (global and block-localised) with the "
            "shipped diffusion emulator against the oracle FA-APF, the optimal-proposal PF, the bootstrap PF, a stochastic EnKF "
            "and the unconditional forecast. Writes a NetCDF file, figures and a summary table."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_options(p, TwinExperiment, OPTIONS, exclude=("obs_indices", "truth_path"))
    p.add_argument(
        "--truth",
        default=None,
        metavar="FILE",
        help="run on a given truth and observations (.npz or .nc with xx (K+1, d), row 0 the start; yy (K, p); "
        "obs_idx (p,); q (model noise std); r (observation noise variance)); they replace --dim, --cycles, "
        "--q, --obs-std and --observe-every",
    )
    p.add_argument("--output", "-o", default="outputs/lorenz96", help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_run_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the experiment from parsed arguments; returns the exit status.

    Errors propagate as `assimilax.errors` exceptions; `assimilax.cli.main` prints them as
    one line with the exit status (2 bad input, 1 a failed run).
    """
    from . import experiment

    if args.truth is not None:
        cfg = TwinExperiment.from_truth(args.truth, **config_values(TwinExperiment, args))
        print(f"truth {args.truth}: d = {cfg.dim}, {cfg.cycles} cycles, {int(cfg.observed.sum())} observed "
              f"components, q = {cfg.q}, obs_std = {cfg.obs_std:g}")
    else:
        cfg = config_from_args(TwinExperiment, args)
    if cfg.uses_trained_emulator() and cfg.dim != 40 and cfg.emulator_path is None:
        raise InvalidArgument(f"--dim {cfg.dim}: the shipped emulator is for dim = 40; pass --emulator or run only oracle filters.")
    return run_and_report(
        lambda: experiment.run(cfg, args.output, options=options_from_args(args)),
        experiment.summary_table,
        f"{args.output}/lorenz96_twin.nc, skill_spread.png, hovmoller.png, summary.txt",
    )
