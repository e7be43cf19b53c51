"""Options generated from a configuration dataclass, and ``--config FILE.toml``.

The generated parser has one option per field (typed, with the field's default); a TOML
file's values are used, options given on the command line override them, and a bad file
(unknown key, wrong type, not TOML, missing) is one line with status 2 before anything
runs.  One ``assimilax lorenz96 --config`` run end to end (EnKF, 16 particles, 2 cycles).
"""

import argparse
import dataclasses
import json

import pytest
import xarray as xr

from assimilax.cli import build_parser, main
from assimilax.errors import FileFormatError, InvalidConfiguration
from assimilax.experiment import Option, add_config_options, config_from_args, config_values


@dataclasses.dataclass(frozen=True)
class Toy:
    path: str
    count: int = 3
    scale: float = 1.5
    mode: str = "a"
    verbose: bool = False
    band: tuple[float, float] = (0.2, 0.25)
    names: tuple[str, ...] = ("x", "y")
    files: tuple[str, ...] = ()
    limit: int | None = None
    tiles: tuple[int, int] | None = None
    hidden: int = 7


OPTIONS = {
    "count": Option("how many", flags=("--count", "-c")),
    "mode": Option("the mode", choices=("a", "b")),
    "names": Option("names", unique=True),
    "files": Option("a file", flags=("--file",), repeat=True),
}


def toy_parser():
    parser = argparse.ArgumentParser(prog="toy")
    add_config_options(parser, Toy, OPTIONS, exclude=("hidden",))
    return parser


def toy(argv, **fixed):
    return config_from_args(Toy, toy_parser().parse_args(argv), **fixed)


def write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_generated_parser_matches_the_fields():
    parser = toy_parser()
    flags = {a.dest: a.option_strings for a in parser._actions}
    names = [f.name for f in dataclasses.fields(Toy) if f.name != "hidden"]
    assert set(names) <= set(flags) and "hidden" not in flags and flags["config"] == ["--config"]
    assert flags["count"] == ["--count", "-c"] and flags["files"] == ["--file"]
    assert flags["verbose"] == ["--verbose", "--no-verbose"] and flags["band"] == ["--band"]
    # Nothing given: the dataclass's defaults, and the defaults are in the help.
    assert toy(["--path", "p"]) == Toy(path="p")
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["count"] == "how many (default: 3)" and helps["band"] == "default: 0.2 0.25"
    assert "required" in helps["path"] and helps["limit"] == "" and "usage" in parser.format_help()
    cfg = toy(["--path", "p", "-c", "4", "--scale", "2", "--mode", "b", "--verbose", "--band", "0.1", "0.3",
               "--names", "u", "v", "u", "--file", "f1", "--file", "f2", "--limit", "9", "--tiles", "2", "3"])
    assert cfg == Toy(path="p", count=4, scale=2.0, mode="b", verbose=True, band=(0.1, 0.3), names=("u", "v"),
                      files=("f1", "f2"), limit=9, tiles=(2, 3))
    assert toy(["--path", "p"], hidden=1).hidden == 1  # an excluded field set by the job
    with pytest.raises(SystemExit):
        toy_parser().parse_args(["--mode", "c"])


def test_unsupported_field_or_stray_option_is_a_type_error():
    @dataclasses.dataclass
    class Bad:
        table: dict = dataclasses.field(default_factory=dict)

    with pytest.raises(TypeError, match="Bad.table"):
        add_config_options(argparse.ArgumentParser(), Bad)
    with pytest.raises(TypeError, match="nope"):
        add_config_options(argparse.ArgumentParser(), Toy, {"nope": Option()})


def test_toml_values_are_used_and_the_command_line_overrides_them(tmp_path):
    path = write(tmp_path, 'path = "from-file"\ncount = 5\nscale = 2\nverbose = true\nband = [0.3, 0.4]\n'
                           'names = ["b", "a", "b"]\ntiles = [4, 8]\n')
    cfg = toy(["--config", path])
    assert cfg == Toy(path="from-file", count=5, scale=2.0, verbose=True, band=(0.3, 0.4), names=("b", "a"), tiles=(4, 8))
    assert isinstance(cfg.scale, float) and isinstance(cfg.band, tuple)
    cfg = toy(["--config", path, "-c", "6", "--no-verbose", "--band", "0.5", "0.6"])
    assert (cfg.count, cfg.verbose, cfg.band, cfg.path, cfg.scale) == (6, False, (0.5, 0.6), "from-file", 2.0)
    # The values without the defaults, for a constructor of the adapter's own.
    assert config_values(Toy, toy_parser().parse_args(["--config", path, "-c", "6"]))["count"] == 6
    assert "mode" not in config_values(Toy, toy_parser().parse_args(["--config", path]))


@pytest.mark.parametrize(
    "text, error, messages",
    [
        ('path = "p"\ncuont = 2\n', InvalidConfiguration, ["cuont = 2: unknown key (did you mean count?)"]),
        ('path = "p"\ncount = "ten"\nband = [1]\nmode = "z"\n', InvalidConfiguration,
         ["count = 'ten': must be an integer", "band = [1]: must be a list of 2 numbers", "mode = 'z': must be one of ['a', 'b']"]),
        ('path = "p"\nverbose = 1\nnames = "x"\ncount = true\n', InvalidConfiguration,
         ["verbose = 1: must be true or false", "names = 'x': must be a list of strings", "count = True: must be an integer"]),
        ("path = \n", FileFormatError, ["is not a valid TOML file"]),
        ('count = 2\n', InvalidConfiguration, ["--path: must be given (or path in the --config file)"]),
    ],
)
def test_bad_files_name_the_file_and_every_key(tmp_path, text, error, messages):
    path = write(tmp_path, text)
    with pytest.raises(error) as caught:
        toy(["--config", path])
    for message in messages:
        assert message in str(caught.value)
    if error is not InvalidConfiguration or "--path" not in messages[0]:
        assert path in str(caught.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("partcles = 16\n", "c.toml: partcles = 16: unknown key (did you mean particles?)"),
        ('particles = "16"\n', "c.toml: particles = '16': must be an integer"),
        ('filters = ["kalman"]\n', "filters = ['kalman']: must be a list of values from ['fa-apf'"),
        ("truth_path = 'x.npz'\n", "truth_path = 'x.npz': unknown key"),
        ("particles = [16\n", "c.toml: is not a valid TOML file"),
        (None, "missing.toml: cannot be read (No such file or directory)"),
    ],
)
def test_bad_config_file_is_one_line_with_status_2(tmp_path, capsys, text, message):
    path = str(tmp_path / "missing.toml") if text is None else write(tmp_path, text)
    assert main(["lorenz96", "--config", path, "--no-progress", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_kolmogorov_and_gencast_read_the_file(tmp_path, capsys):
    from assimilax_adapters.gencast.experiment import GenCastExperiment
    from assimilax_adapters.kolmogorov.experiment import KolmogorovExperiment

    parser = build_parser()
    path = write(tmp_path, 'filters = ["letkf", "enkf", "letkf"]\nq = 0.4\nstride = 8\n')
    cfg = config_from_args(KolmogorovExperiment, parser.parse_args(["kolmogorov", "--config", path, "--stride", "2"]))
    assert (cfg.filters, cfg.q, cfg.stride) == (("letkf", "enkf"), 0.4, 2)
    # gencast: the required paths from the file; defaults < --preset < the file < the command line.
    path = write(tmp_path, 'checkpoint = "c.npz"\nstats = "s"\ntruth = "t.nc"\nlevels = 3\n', "g.toml")
    args = parser.parse_args(["gencast", "--config", path, "--preset", "reference", "-n", "4"])
    cfg = GenCastExperiment.with_preset(args.preset, **config_values(GenCastExperiment, args))
    assert (cfg.checkpoint, cfg.particles, cfg.levels, cfg.solver, cfg.rho) == ("c.npz", 4, 3, "ab3", 6.0)
    assert main(["gencast", "--truth", "t.nc"]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint: must be given" in err and "--stats: must be given" in err and len(err.strip().splitlines()) == 1


def test_lorenz96_config_file_end_to_end(tmp_path, capsys):
    path = write(tmp_path, 'particles = 16\ncycles = 4\nfilters = ["enkf", "enkf"]\ninflation = 1.05\n'
                           'observe_every = 4\nseed = 3\n')
    out = tmp_path / "run"
    assert main(["lorenz96", "--config", path, "--cycles", "2", "--no-progress", "-o", str(out)]) == 0
    assert "enkf" in capsys.readouterr().out
    with xr.open_dataset(out / "lorenz96_twin.nc") as ds:
        cfg = json.loads(ds.attrs["configuration"])
        assert dict(ds.sizes) == {"filter": 1, "time": 2, "particle": 16, "variable": 40}
        assert int(ds["observed"].values.sum()) == 10
    assert (cfg["particles"], cfg["cycles"], cfg["filters"], cfg["inflation"], cfg["seed"]) == (16, 2, ["enkf"], 1.05, 3)
