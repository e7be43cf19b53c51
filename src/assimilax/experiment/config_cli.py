"""Command-line options generated from a job's configuration dataclass, and ``--config FILE.toml``.

An adapter's subcommand calls [`add_config_options`][] with its configuration dataclass:
one ``--field-name`` option per field (underscores become dashes), typed by the field's
annotation, with the field's default, and the help, choices, metavar or other flags of the
field's [`Option`][].  Its ``main`` calls [`config_from_args`][] (or [`config_values`][]
where a constructor of its own takes the fields), so that a new field is a new option
without another line of argparse.

``--config FILE`` reads a TOML file (standard-library `tomllib`) whose keys are the same
fields, with underscores:

```toml
particles = 64
filters = ["enkf", "letkf"]
ess_band = [0.2, 0.3]
```

Precedence: the dataclass's defaults < the file's values < the options given on the
command line.  To know which options were given, the generated options have the default
``argparse.SUPPRESS``: an option left out is absent from the parsed namespace, so
``hasattr(args, field)`` is True exactly for the options given (``--help`` still shows the
dataclass's default, written into the help text).  The file is checked whole before
anything runs: an unknown key, a value of the wrong type or outside the choices raise one
[`assimilax.errors.InvalidConfiguration`][] naming the file and every bad key, and a file
that cannot be read or is not TOML a [`assimilax.errors.FileFormatError`][]; ``assimilax``
prints either as one line with exit status 2.

Supported annotations: ``int``, ``float``, ``str``, ``bool`` (``--flag`` / ``--no-flag``),
``tuple[X, X]`` (that many values), ``tuple[X, ...]`` (one or more values; with
``Option(repeat=True)`` one value per use of a repeatable flag), and ``X | None`` for each
(``None`` only as the default: neither TOML nor the command line can give it).
"""

import argparse
import dataclasses
import difflib
import tomllib
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from ..errors import FileFormatError, InvalidConfiguration, _show

T = TypeVar("T")
_SPEC = "_assimilax_config_fields"  # the namespace attribute that carries the fields' specs
_NOUNS = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings"), bool: ("true or false", "booleans")}


@dataclasses.dataclass(frozen=True)
class Option:
    """What an adapter says about one field's option; everything else comes from the field.

    - `help`: the help text (the default is appended unless the text mentions one).
    - `flags`: the option strings, replacing ``--field-name`` (``("--particles", "-n")``,
      ``("--emulator",)`` for a field ``emulator_path``).
    - `choices`: the values allowed (each value of a tuple field), on the command line and
      in the file.
    - `metavar`: the value's name in the help (a tuple for a field of several values).
    - `unique`: a tuple field keeps each value once, in the order first given.
    - `repeat`: a ``tuple[X, ...]`` field takes one value per use of the flag (repeatable)
      instead of several values after one flag.
    """

    help: str | None = None
    flags: tuple[str, ...] = ()
    choices: Collection[Any] | None = None
    metavar: str | tuple[str, ...] | None = None
    unique: bool = False
    repeat: bool = False

    def __post_init__(self):
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))


@dataclasses.dataclass(frozen=True)
class _Field:
    """A configuration field as an option: its scalar type, its length and its option."""

    name: str
    scalar: type  # int, float, str or bool
    length: int | None  # None: one value; 0: a tuple of any length; n: a tuple of n values
    option: Option
    flags: tuple[str, ...]
    required: bool  # the field has no default


def _field(config_cls: type, field: dataclasses.Field, hint: Any, option: Option) -> _Field:
    """The `_Field` of a dataclass field, from its annotation (TypeError if unsupported)."""
    unsupported = TypeError(f"{config_cls.__name__}.{field.name}: annotation {hint!r} has no command-line option; "
                            "exclude the field or give it int, float, str, bool, tuple[X, X], tuple[X, ...] or X | None.")
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(rest) != 1:
            raise unsupported
        hint = rest[0]
    scalar, length = hint, None
    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        if len(items) == 2 and items[1] is Ellipsis:
            scalar, length = items[0], 0
        elif items and all(item is items[0] for item in items):
            scalar, length = items[0], len(items)
        else:
            raise unsupported
    if scalar not in _NOUNS or (scalar is bool and length is not None) or (option.repeat and length != 0):
        raise unsupported
    required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    flags = option.flags or ("--" + field.name.replace("_", "-"),)
    return _Field(field.name, scalar, length, option, flags, required)


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _help(f: _Field, default: Any) -> str:
    """The option's help with its default appended (as `argparse.ArgumentDefaultsHelpFormatter` would)."""
    text = f.option.help or ""
    if f.required:
        note = f"required: on the command line or as {f.name} in the --config file"
    elif default is None or default == () or "default" in text:
        return text
    else:
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else str(default)
        note = f"default: {shown}".replace("%", "%%")
    return f"{text} ({note})" if text else note


def add_config_options(
    parser: argparse.ArgumentParser,
    config_cls: type,
    options: Mapping[str, Option] | None = None,
    exclude: Collection[str] = (),
) -> None:
    """Add ``--config FILE`` and one option per field of the dataclass `config_cls`.

    - `options`: ``{field name: Option}``, the help, flags, choices and metavar the adapter
      gives; their fields come first, in this order, then the others in field order.
    - `exclude`: fields that get no option and no key in the file (those the job sets).

    Read the parsed arguments back with [`config_from_args`][] or [`config_values`][].
    """
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"add_config_options: config_cls = {config_cls!r}: must be a dataclass.")
    options = dict(options or {})
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    strays = sorted((set(options) | set(exclude)) - set(fields)) + sorted(set(options) & set(exclude))
    if strays:
        raise TypeError(f"add_config_options: {strays}: must be fields of {config_cls.__name__} given an Option or excluded, not both.")
    hints = typing.get_type_hints(config_cls)
    parser.add_argument(
        "--config", default=None, metavar="FILE",
        help="a TOML file of the configuration: keys are the options' names with underscores "
             "(particles = 64, filters = [\"enkf\"]); options given on the command line override it",
    )
    specs = {}
    for name in [*options, *(n for n in fields if n not in options and n not in exclude)]:
        f = specs[name] = _field(config_cls, fields[name], hints[name], options.get(name, Option()))
        kwargs: dict[str, Any] = dict(dest=name, default=argparse.SUPPRESS, help=_help(f, _default(fields[name])))
        if f.scalar is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=f.scalar, choices=f.option.choices, metavar=f.option.metavar)
            if f.option.metavar is None and f.option.choices is None:
                long = next((flag for flag in f.flags if flag.startswith("--")), f.flags[0])
                kwargs["metavar"] = long.lstrip("-").replace("-", "_").upper()
            if f.option.repeat:
                kwargs["action"] = "append"
            elif f.length is not None:
                kwargs["nargs"] = f.length or "+"
        parser.add_argument(*f.flags, **kwargs)
    parser.set_defaults(**{_SPEC: (config_cls, specs)})


def _specs(config_cls: type, args: argparse.Namespace) -> dict[str, _Field]:
    cls, specs = getattr(args, _SPEC, (None, None))
    if cls is not config_cls:
        raise TypeError(f"the arguments were not parsed by a parser given add_config_options(parser, {config_cls.__name__}).")
    return specs


def _from_toml(f: _Field, value: Any) -> Any:
    """`value` of the file for `f`, converted (float, tuple); ValueError("<allowed>") if wrong."""
    one, many = _NOUNS[f.scalar]
    if f.length is None:
        allowed, items = one, [value]
    else:
        allowed, items = f"a list of {f.length or ''} {many}".replace("  ", " "), value
        if not isinstance(value, list) or (f.length and len(value) != f.length):
            raise ValueError(allowed)
    for item in items:
        if isinstance(item, bool) != (f.scalar is bool) or not isinstance(item, int | float if f.scalar is float else f.scalar):
            raise ValueError(allowed)
    if f.option.choices is not None and not all(item in f.option.choices for item in items):
        raise ValueError(f"{'one of' if f.length is None else 'a list of values from'} {list(f.option.choices)}")
    items = [float(item) if f.scalar is float else item for item in items]
    return items[0] if f.length is None else tuple(items)


def _read_config_file(path: str, specs: Mapping[str, _Field]) -> dict[str, Any]:
    """The fields of the TOML file `path`, checked and converted; raises naming every bad key."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise FileFormatError(path, f"cannot be read ({error.strerror or error}).") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise FileFormatError(path, f"is not a valid TOML file ({error}).") from None
    values, problems = {}, []
    for key, value in data.items():
        if key not in specs:
            close = difflib.get_close_matches(key, specs, n=1)
            known = f"did you mean {close[0]}?" if close else f"the keys are {', '.join(specs)}"
            problems.append(f"{key} = {_show(value)}: unknown key ({known})")
            continue
        try:
            values[key] = _from_toml(specs[key], value)
        except ValueError as allowed:
            problems.append(f"{key} = {_show(value)}: must be {allowed}")
    if problems:
        raise InvalidConfiguration(f"configuration file {path}", problems)
    return values


def config_values(config_cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields given in the ``--config`` file and on the command line (which wins).

    Fields given neither way are left out (the dataclass's defaults apply); a field without
    a default that is given neither way raises [`assimilax.errors.InvalidConfiguration`][].
    For a constructor of the adapter's own (a preset, a truth file) that takes the fields.
    """
    specs = _specs(config_cls, args)
    values = {} if args.config is None else _read_config_file(args.config, specs)
    for name in specs.keys() & vars(args).keys():  # given explicitly: the defaults are SUPPRESS
        value = getattr(args, name)
        values[name] = tuple(value) if isinstance(value, list) else value
    for name, f in specs.items():
        if f.option.unique and name in values:
            values[name] = tuple(dict.fromkeys(values[name]))
    missing = [f"{f.flags[0]}: must be given (or {f.name} in the --config file)" for f in specs.values() if f.required and f.name not in values]
    if missing:
        raise InvalidConfiguration(f"{config_cls.__name__} options", missing)
    return values


def config_from_args(config_cls: type[T], args: argparse.Namespace, **fixed: Any) -> T:
    """The configuration: its defaults < the ``--config`` file < the command line < `fixed`.

    `fixed` holds the fields the job sets itself (those excluded from the options).
    """
    return config_cls(**{**config_values(config_cls, args), **fixed})


__all__ = ["Option", "add_config_options", "config_from_args", "config_values"]
