"""``assimilax lorenz96``: the twin experiment from the command line."""

import argparse

from assimilax.errors import InvalidArgument
from assimilax.run_options import add_run_options, options_from_args, run_and_report

from .experiment import FILTERS, SOLVERS, TwinExperiment


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``lorenz96`` subcommand (entry point ``assimilax.commands``)."""
    d = TwinExperiment()
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
    p.add_argument("--particles", "-n", type=int, default=d.particles, help="ensemble size N")
    p.add_argument("--cycles", "-T", type=int, default=d.cycles, help="number of observation times")
    p.add_argument("--observe-every", type=int, default=d.observe_every, help="observe every k-th component")
    p.add_argument("--observe", default=d.observe, choices=("identity", "abs"),
                   help="what is observed of the observed components: x, or |x| (the sign is lost: a non-Gaussian case)")
    p.add_argument("--obs-std", type=float, default=d.obs_std, help="observation noise standard deviation")
    p.add_argument("--q", type=float, default=d.q, help="model noise standard deviation per interval")
    p.add_argument("--dim", type=int, default=d.dim, help="Lorenz-96 dimension (the shipped emulator is for 40)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of truth, observations and filters")
    p.add_argument("--spinup", type=int, default=None, help="cycles left out of the summary means (default: min(20, cycles / 5))")
    p.add_argument("--filters", nargs="+", default=list(d.filters), choices=FILTERS, metavar="FILTER", help=f"filters to run, from {', '.join(FILTERS)}")
    p.add_argument("--levels", type=int, default=d.levels, help="noise levels of the sampler")
    p.add_argument("--sigma-max", type=float, default=d.sigma_max, help="largest noise level of the sampler")
    p.add_argument("--sigma-min", type=float, default=d.sigma_min, help="smallest noise level of the sampler")
    p.add_argument("--rho", type=float, default=d.rho, help="EDM (Karras) exponent of the noise levels")
    p.add_argument("--solver", default=d.solver, choices=sorted(SOLVERS), help="probability-flow ODE solver")
    p.add_argument("--corrector-steps", type=int, default=d.corrector_steps, help="Langevin corrector steps per level")
    p.add_argument("--cg-iterations", type=int, default=d.cg_iterations, help="conjugate-gradient steps of MMPS")
    p.add_argument("--guidance-max-sigma", type=float, default=d.guidance_max_sigma, help="guide the proposals only at noise levels below this")
    p.add_argument("--ess-band", type=float, nargs=2, default=list(d.ess_band), metavar=("LOW", "HIGH"), help="tempering ESS band, fractions of N")
    p.add_argument("--block-size", type=int, default=d.block_size, help="components per block of the block FA-APF filters")
    p.add_argument("--emulator", default=None, help="path of other trained weights (.eqx with its .json)")
    p.add_argument("--inflation", type=float, default=d.inflation, help="multiplicative inflation of the EnKF, ETKF and LETKF forecast anomalies")
    p.add_argument("--localisation-radius", type=float, default=d.localisation_radius, help="LETKF Gaspari-Cohn length scale in grid points (DAPPER's loc_rad; half-width sqrt(10/3) times it)")
    p.add_argument("--local-radius", type=float, default=d.local_radius, help="Gaspari-Cohn length scale of the localised FA-APF filters, in grid points")
    p.add_argument("--local-inflation", type=float, default=d.local_inflation, help="inflation of the resampled histories of the localised FA-APF filters")
    p.add_argument("--local-ess-band", type=float, nargs=2, default=list(d.local_ess_band), metavar=("LOW", "HIGH"), help="tempering ESS band of the localised FA-APF filters, fractions of N")
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

    options = dict(
        particles=args.particles,
        cycles=args.cycles,
        observe_every=args.observe_every,
        obs_std=args.obs_std,
        observe=args.observe,
        q=args.q,
        dim=args.dim,
        seed=args.seed,
        spinup=args.spinup,
        filters=tuple(dict.fromkeys(args.filters)),
        levels=args.levels,
        solver=args.solver,
        sigma_min=args.sigma_min,
        sigma_max=args.sigma_max,
        rho=args.rho,
        corrector_steps=args.corrector_steps,
        cg_iterations=args.cg_iterations,
        guidance_max_sigma=args.guidance_max_sigma,
        ess_band=tuple(args.ess_band),
        block_size=args.block_size,
        emulator_path=args.emulator,
        inflation=args.inflation,
        localisation_radius=args.localisation_radius,
        local_radius=args.local_radius,
        local_inflation=args.local_inflation,
        local_ess_band=tuple(args.local_ess_band),
    )
    if args.truth is not None:
        cfg = TwinExperiment.from_truth(args.truth, **options)
        print(f"truth {args.truth}: d = {cfg.dim}, {cfg.cycles} cycles, {int(cfg.observed.sum())} observed "
              f"components, q = {cfg.q}, obs_std = {cfg.obs_std:g}")
    else:
        cfg = TwinExperiment(**options)
    if cfg.uses_trained_emulator() and cfg.dim != 40 and args.emulator is None:
        raise InvalidArgument(f"--dim {cfg.dim}: the shipped emulator is for dim = 40; pass --emulator or run only oracle filters.")
    return run_and_report(
        lambda: experiment.run(cfg, args.output, options=options_from_args(args)),
        experiment.summary_table,
        f"{args.output}/lorenz96_twin.nc, skill_spread.png, hovmoller.png, summary.txt",
    )
