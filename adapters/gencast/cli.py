"""``assimilax gencast``: the reference experiment on GenCast from the command line."""

import argparse
import sys

from assimilax.run_options import add_run_options, options_from_args, run_and_report

from .experiment import FILTERS, KEEP, MMPS_SOLVERS, OBSERVATIONS, PRESET_SETTINGS, SOLVERS, GenCastExperiment


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
    p.add_argument("--checkpoint", required=True, help="official GenCast .npz checkpoint")
    p.add_argument("--stats", required=True, help="folder with mean_by_level.nc, stddev_by_level.nc, diffs_stddev_by_level.nc, min_by_level.nc")
    p.add_argument("--truth", required=True, help="ERA5-layout NetCDF file or Zarr store, 12 h steps")
    p.add_argument("--preset", default=None, choices=sorted(PRESET_SETTINGS),
                   help="the reference experiment's filter settings (256 particles, ESS band [50, 60], 32 Karras levels "
                        "88 -> 2e-5 with rho 6, AB3 + 2 Langevin corrections of 0.2, MMPS by BiCGStab with 2 iterations); "
                        "options given explicitly override it")
    p.add_argument("--particles", "-n", type=int, default=None, help="ensemble size N (default 8; reference preset 256)")
    p.add_argument("--cycles", "-T", type=int, default=None, help="observation times (default: all the truth allows)")
    p.add_argument("--start", default=None, help="first time used (ISO date); the first two are the initial history")
    p.add_argument("--observations", default="every-nth", choices=OBSERVATIONS,
                   help="observation scenario: every-nth (--observe at every --observe-every-th point, noise --obs-std), "
                        "the reference experiment's stations+satellite, subsampling-4x4 or coarsening-4x4 (files in "
                        "--obs-dir, variances in physical units), or files (--obs-network)")
    p.add_argument("--obs-dir", default=None, help="folder with the reference experiment's observation files (its data/observations)")
    p.add_argument("--obs-network", action="append", default=[], metavar="FILE:VARS[:VARIANCES]",
                   help="with --observations files: a mask (.npy/.nc) or station coordinates ((p, 2) .npy or CSV of "
                        "latitude, longitude) observing the comma-separated VARS, with variances in physical units (a file "
                        "or a number; default --obs-std in the filter's units); repeatable")
    p.add_argument("--regrid-observations", action="store_true",
                   help="move masks of another equiangular grid (e.g. the 1-degree networks) to the truth's grid (nearest points)")
    p.add_argument("--observe", nargs="+", default=["2m_temperature", "temperature"], help="observed target variables (all levels)")
    p.add_argument("--observe-every", type=int, default=4, help="observe every n-th grid point")
    p.add_argument("--obs-std", type=float, default=0.1, help="observation noise standard deviation")
    p.add_argument("--space", default="normalised", choices=("normalised", "physical"), help="units of observations and noise")
    p.add_argument("--levels", type=int, default=None, help="noise levels of the guided sampler (default 40; reference preset 32)")
    p.add_argument("--solver", default=None, choices=sorted(SOLVERS), help="probability-flow ODE solver of the guided sampler (default dpm3m; reference preset ab3)")
    p.add_argument("--corrector-steps", type=int, default=None, help="Langevin corrector steps per level (default 0; reference preset 2)")
    p.add_argument("--langevin-delta", type=float, default=None, help="Langevin step size delta (tau = delta sigma^2; default 0.2)")
    p.add_argument("--mmps-solver", default=None, choices=MMPS_SOLVERS, help="MMPS linear solver: unrolled CG or BiCGStab (default cg; reference preset bicgstab)")
    p.add_argument("--cg-iterations", type=int, default=None, help="iterations of the MMPS solver (default 1; reference preset 2)")
    p.add_argument("--guidance-max-sigma", type=float, default=None, metavar="SIGMA",
                   help="guide the FA-APF proposals only at noise levels sigma <= SIGMA (default: at every level); "
                        "a trained network's Tweedie Jacobian is unreliable at the top levels (the Lorenz-96 job uses 5)")
    p.add_argument("--ess-band", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"), help="tempering ESS band, fractions of N (default 50/256 60/256)")
    p.add_argument("--block-tiles", type=int, nargs=2, default=None, metavar=("LAT", "LON"),
                   help="replace the FA-APF by the block FA-APF (output label fa-apf-block): first-stage weights, "
                        "tempering and resampling per tile of LAT x LON grid points, each with the observations "
                        "in it (default: the global FA-APF)")
    p.add_argument("--filters", nargs="+", default=list(FILTERS), choices=FILTERS, metavar="FILTER", help=f"from {', '.join(FILTERS)}")
    p.add_argument("--noise", default="spherical", choices=("spherical", "white"), help="sampler noise")
    p.add_argument("--attention", default="auto", choices=("auto", "dense", "banded"), help="mesh attention implementation")
    p.add_argument("--seed", type=int, default=0, help="seed of observations and filters")
    p.add_argument("--keep", default="ensemble", choices=KEEP,
                   help="what each cycle brings to the host: the N analysis states (also gives CRPS) or only "
                        "their mean and variance (2 states; for 0.25 degrees or large N)")
    p.add_argument("--output", "-o", default="outputs/gencast", help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_run_options(p)
    p.set_defaults(func=main)


# Built-in defaults of the options a preset sets (explicit options > preset > these).
DEFAULTS = dict(particles=8, levels=40, solver="dpm3m", corrector_steps=0, langevin_delta=0.2,
                mmps_solver="cg", cg_iterations=1, ess_band=(50 / 256, 60 / 256))


def experiment_config(preset: str | None, given: dict, other: dict) -> GenCastExperiment:
    """The configuration: explicitly `given` options over the `preset`'s over `DEFAULTS`."""
    if preset is None:
        return GenCastExperiment(**{**DEFAULTS, **given, **other})
    return GenCastExperiment.with_preset(preset, **{**given, **other})


def main(args: argparse.Namespace) -> int:
    """Run the experiment from parsed arguments; returns the exit status."""
    from . import experiment

    # Errors propagate: assimilax.cli.main prints them as one line with the exit status.
    given = {
        "particles": args.particles, "levels": args.levels, "solver": args.solver,
        "corrector_steps": args.corrector_steps, "langevin_delta": args.langevin_delta,
        "mmps_solver": args.mmps_solver, "cg_iterations": args.cg_iterations,
        "ess_band": None if args.ess_band is None else tuple(args.ess_band),
    }
    cfg = experiment_config(args.preset, {k: v for k, v in given.items() if v is not None}, dict(
        checkpoint=args.checkpoint, stats=args.stats, truth=args.truth,
        cycles=args.cycles, start=args.start, observe=tuple(args.observe),
        observe_every=args.observe_every, obs_std=args.obs_std, space=args.space,
        guidance_max_sigma=args.guidance_max_sigma,
        filters=tuple(dict.fromkeys(args.filters)), noise=args.noise, attention=args.attention,
        seed=args.seed, keep=args.keep,
        block_tiles=None if args.block_tiles is None else tuple(args.block_tiles),
        observations=args.observations, obs_dir=args.obs_dir, obs_networks=tuple(args.obs_network),
        regrid_observations=args.regrid_observations,
    ))
    return run_and_report(
        lambda: experiment.run(cfg, args.output, options=options_from_args(args)),
        experiment.summary_table,
        f"{args.output}/gencast_assimilation.nc, skill_spread.png, maps.png, summary.txt",
    )

if __name__ == "__main__":  # python -m assimilax_adapters.gencast.cli ... (before the entry point is registered)
    from assimilax.cli import main as assimilax_main

    sys.exit(assimilax_main(sys.argv[1:]))
