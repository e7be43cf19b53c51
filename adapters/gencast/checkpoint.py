"""Reader and writer for the official GenCast checkpoint files (``.npz``).

Format (DeepMind's ``checkpoint.py``): a tree of records (dataclasses), dicts, lists and
tuples is flattened to one ``numpy.savez`` archive.  Each leaf is stored under the path of
keys leading to it, joined by ``":"``:

- a record contributes its fields by name, **omitting fields whose value is None** (so an
  absent optional field reads back as None, and an absent required field is an error);
- a dict contributes its keys (``str(key)``, which must not contain ``":"``);
- a list or tuple contributes ``"0", "1", ...`` (so an empty one stores nothing);
- a leaf (string, number, bool, array) is stored as ``numpy.asarray(leaf)``: strings as
  0-d unicode arrays, numbers as 0-d arrays; an enum member as its ``value``.

E.g. ``params:mesh2grid_gnn/~_networks_builder/decoder_nodes_grid_nodes_mlp/~/linear_0:w``
or ``denoiser_architecture_config:sparse_transformer_config:d_model``.  Reading
unflattens the keys and decodes the tree against the record types of
[`config`][assimilax_adapters.gencast.config], by name: ``tuple[T, ...]`` and ``list[T]``
from the sorted integer keys, ``tuple[A, B]`` of fixed length, ``X | None`` absent -> None,
``dict[str, Any]`` (the parameters) left as a nested dict of numpy arrays.  Unlike the
reference, the reader also refuses entries no field asks for.
"""

import dataclasses
import enum
import io
import os
import types
import typing
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from assimilax.errors import FileFormatError, InvalidData

from ._files import READ_ERRORS, MissingFile, reason
from .config import CheckPoint

SEP = ":"

PathLike = str | os.PathLike | io.IOBase  # a path or a binary file object


class CheckpointFormatError(FileFormatError):
    """A checkpoint file does not match the expected structure (names the offending key).

    A [`assimilax.errors.FileFormatError`][] (so a ``ValueError``): raised as
    ``CheckpointFormatError(path, problem)`` (message ``"<path>: <problem>"``) or, where no
    file is known, ``CheckpointFormatError(message)`` (`path` is then ``None``).
    """

    def __init__(self, *args):
        if len(args) == 2:
            super().__init__(*args)
        else:
            self.path = None
            InvalidData.__init__(self, *args)


def _file_name(file: "PathLike") -> str:
    return os.fspath(file) if isinstance(file, (str, os.PathLike)) else str(getattr(file, "name", "<file object>"))


# ---------------------------------------------------------------------------------------
# Flattening
# ---------------------------------------------------------------------------------------


def flatten(tree: Any) -> dict[str, np.ndarray]:
    """Flatten a tree of records/dicts/lists/tuples to ``{"a:b:c": array}``."""
    flat: dict[str, np.ndarray] = {}
    _flatten_into(tree, (), flat)
    return flat


def _children(tree: Any, path: tuple[str, ...]) -> list[tuple[str, Any]] | None:
    """The (key, child) pairs of an inner node, or None for a leaf."""
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        items = [(f.name, getattr(tree, f.name)) for f in dataclasses.fields(tree)]
        return [(k, v) for k, v in items if v is not None]
    if isinstance(tree, Mapping):
        items = [(str(k), v) for k, v in tree.items()]
    elif isinstance(tree, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(tree)]
    else:
        return None
    if not items:
        raise ValueError(
            f"Cannot store the empty {type(tree).__name__} at {_name(path)!r}: the format "
            "has no entry for it and it would read back as missing."
        )
    return items


def _flatten_into(tree: Any, path: tuple[str, ...], flat: dict[str, np.ndarray]) -> None:
    children = _children(tree, path)
    if children is None:
        if tree is None:
            raise ValueError(f"None is only allowed as a record field, found at {_name(path)!r}.")
        if isinstance(tree, enum.Enum):
            tree = tree.value
        leaf = np.asarray(tree)
        if leaf.dtype == object:
            raise ValueError(f"Cannot store {type(tree).__name__} at {_name(path)!r} without pickle.")
        flat[_name(path)] = leaf
        return
    for key, child in children:
        if SEP in key:
            raise ValueError(f"Key {key!r} at {_name(path)!r} contains the separator {SEP!r}.")
        _flatten_into(child, path + (key,), flat)


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of [`flatten`][] up to types: nested dicts keyed by the path components."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, last = key.split(SEP)
        node = tree
        for i, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CheckpointFormatError(
                    f"Entry {key!r} lies below the leaf {SEP.join(parents[: i + 1])!r}."
                )
        if last in node:
            raise CheckpointFormatError(f"Entry {key!r} is both a leaf and a group.")
        node[last] = value
    return tree


def _name(path: tuple[str, ...]) -> str:
    return SEP.join(path) if path else "<root>"


# ---------------------------------------------------------------------------------------
# Typed decoding
# ---------------------------------------------------------------------------------------


def decode(typ: Any, value: Any, path: tuple[str, ...] = ()) -> Any:
    """Convert an unflattened tree to `typ` (a record, container or scalar type), strictly."""
    if typ is Any:
        return value
    origin = typing.get_origin(typ)
    if origin in (types.UnionType, typing.Union):
        options = [t for t in typing.get_args(typ) if t is not type(None)]
        if len(options) != 1:
            raise TypeError(f"Only `X | None` unions are supported, got {typ} at {_name(path)!r}.")
        return decode(options[0], value, path)
    if dataclasses.is_dataclass(typ):
        return _decode_record(typ, value, path)
    if origin is dict:
        key_type, value_type = typing.get_args(typ)
        group = _expect_group(value, path, typ)
        return {
            decode(key_type, np.asarray(k), path): decode(value_type, v, path + (k,))
            for k, v in group.items()
        }
    if origin in (list, tuple):
        args = typing.get_args(typ)
        group = _expect_group(value, path, typ)
        indices = _sequence_keys(group, path)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(indices) != len(args):
                raise CheckpointFormatError(
                    f"{_name(path)!r} must hold {len(args)} entries, found {len(indices)}."
                )
            return tuple(decode(t, group[k], path + (k,)) for t, k in zip(args, indices))
        items = [decode(args[0], group[k], path + (k,)) for k in indices]
        return tuple(items) if origin is tuple else items
    # Leaves.
    if isinstance(value, dict):
        raise CheckpointFormatError(
            f"{_name(path)!r} should be a single {getattr(typ, '__name__', typ)} value but is a "
            f"group with entries {sorted(value)}."
        )
    if typ is np.ndarray:
        return np.asarray(value)
    array = np.asarray(value)
    if array.ndim != 0:
        raise CheckpointFormatError(
            f"{_name(path)!r} should be a scalar {typ.__name__}, got an array of shape {array.shape}."
        )
    if typ is bool and not (array.dtype.kind == "b" or (array.dtype.kind in "iu" and array.item() in (0, 1))):
        raise CheckpointFormatError(f"{_name(path)!r}: cannot read {array.item()!r} as bool.")
    try:
        return typ(array.item())
    except (TypeError, ValueError) as e:
        raise CheckpointFormatError(
            f"{_name(path)!r}: cannot read {array.item()!r} as {typ.__name__}."
        ) from e


def _expect_group(value: Any, path: tuple[str, ...], typ: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CheckpointFormatError(f"{_name(path)!r} should be a group ({typ}), found a single value.")
    return value


def _sequence_keys(group: dict[str, Any], path: tuple[str, ...]) -> list[str]:
    try:
        indices = sorted(group, key=int)
    except ValueError:
        raise CheckpointFormatError(
            f"{_name(path)!r} should be a sequence keyed 0, 1, ..., found keys {sorted(group)}."
        ) from None
    if [int(k) for k in indices] != list(range(len(indices))):
        raise CheckpointFormatError(
            f"{_name(path)!r} should be keyed 0..{len(indices) - 1}, found {indices}."
        )
    return indices


def _decode_record(cls: type, value: Any, path: tuple[str, ...]) -> Any:
    group = _expect_group(value, path, cls.__name__)
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    extra = sorted(set(group) - names)
    if extra:
        raise CheckpointFormatError(
            f"Unexpected entr{'y' if len(extra) == 1 else 'ies'} "
            f"{', '.join(repr(_name(path + (k,))) for k in extra)}: {cls.__name__} has no such "
            f"field (fields: {', '.join(sorted(names))})."
        )
    kwargs = {}
    for f in fields:
        typ = hints[f.name]
        if f.name not in group:
            if _is_optional(typ):
                kwargs[f.name] = None
                continue
            raise CheckpointFormatError(
                f"Missing entry {_name(path + (f.name,))!r} (field {f.name!r} of {cls.__name__})."
            )
        kwargs[f.name] = decode(typ, group[f.name], path + (f.name,))
    return cls(**kwargs)


def _is_optional(typ: Any) -> bool:
    return typing.get_origin(typ) in (types.UnionType, typing.Union) and type(None) in typing.get_args(typ)


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------


def save_checkpoint(file: PathLike, checkpoint: Any) -> None:
    """Write `checkpoint` (a [`CheckPoint`][assimilax_adapters.gencast.config.CheckPoint] or any
    record tree) in the official ``.npz`` format (uncompressed ``numpy.savez``)."""
    flat = flatten(checkpoint)
    buffer = io.BytesIO()
    np.savez(buffer, **flat)
    if isinstance(file, (str, os.PathLike)):
        with open(file, "wb") as f:
            f.write(buffer.getvalue())
    else:
        file.write(buffer.getvalue())


def read_flat(file: PathLike) -> dict[str, np.ndarray]:
    """The raw ``{"a:b:c": array}`` entries of a checkpoint file (no pickles are loaded).

    A missing file raises [`MissingFile`][assimilax_adapters.gencast._files.MissingFile], one
    that is not a readable ``.npz`` archive (empty, truncated, another format) a
    [`CheckpointFormatError`][] naming it."""
    name = _file_name(file)
    if isinstance(file, (str, os.PathLike)):
        if not os.path.exists(file):
            raise MissingFile(name, "the GenCast checkpoint does not exist.")
        if os.path.isfile(file) and os.path.getsize(file) == 0:
            raise CheckpointFormatError(name, "the GenCast checkpoint is an empty file.")
        if not zipfile.is_zipfile(file):
            raise CheckpointFormatError(
                name, "not a GenCast checkpoint: not an .npz (zip) archive, or one truncated (no zip directory at its end)."
            )
    try:
        with np.load(file, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except READ_ERRORS as e:
        raise CheckpointFormatError(
            name, f"cannot read the GenCast checkpoint ({reason(e)}); it is truncated or not an .npz archive."
        ) from None


def load_checkpoint(file: PathLike, cls: type = CheckPoint) -> Any:
    """Read a GenCast checkpoint into `cls` (default [`CheckPoint`][assimilax_adapters.gencast.config.CheckPoint]).

    Parameters come back as ``{module_path: {param_name: numpy array}}``; the configs as
    the typed records of [`config`][assimilax_adapters.gencast.config].  Raises
    [`CheckpointFormatError`][] naming the key when an entry is missing, unexpected or of
    the wrong kind.
    """
    flat = read_flat(file)
    try:
        return decode(cls, unflatten(flat))
    except CheckpointFormatError as e:
        raise CheckpointFormatError(_file_name(file), f"not a GenCast checkpoint: {e}") from None


def check_param_shapes(
    params: Mapping[str, Mapping[str, np.ndarray]],
    expected: Mapping[str, Mapping[str, tuple[int, ...]]],
) -> None:
    """Check that `params` has exactly the `expected` modules, names and shapes.

    Raises a `CheckpointFormatError` listing every missing, unexpected or misshapen
    parameter (as ``module:name``), so one run shows everything that is wrong.
    """
    problems = []
    for module in sorted(set(expected) | set(params)):
        if module not in params:
            problems.append(f"missing module {module!r}")
            continue
        if module not in expected:
            problems.append(f"unexpected module {module!r}")
            continue
        got, want = params[module], expected[module]
        for name in sorted(set(got) | set(want)):
            key = f"{module}{SEP}{name}"
            if name not in got:
                problems.append(f"missing parameter {key!r} of shape {tuple(want[name])}")
            elif name not in want:
                problems.append(f"unexpected parameter {key!r}")
            elif tuple(np.shape(got[name])) != tuple(want[name]):
                problems.append(
                    f"parameter {key!r} has shape {tuple(np.shape(got[name]))}, "
                    f"expected {tuple(want[name])}"
                )
    if problems:
        raise CheckpointFormatError(
            f"Parameters do not match the architecture ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}):\n  " + "\n  ".join(problems)
        )
