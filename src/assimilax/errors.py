"""The exceptions assimilax raises for what a user can fix, in one hierarchy.

Every error a user can cause derives from [`AssimilaxError`][]; each also derives from
the built-in exception a Python user would expect (`ValueError`, `FileNotFoundError`,
`FloatingPointError`), so ``except ValueError`` keeps working.  Messages name the
argument (or file, option, filter and cycle), the value and what is allowed.  The
``assimilax`` command prints such an error as one line and exits with status 2 (bad
input) or 1 (a run that failed); ``--debug`` shows the traceback.

```text
AssimilaxError
├── InvalidArgument (ValueError)         a parameter out of range, a wrong shape or size
│   └── InvalidConfiguration             a job's configuration (several problems at once)
├── InvalidData (ValueError)             observations, truths, statistics, ensembles
│   └── FileFormatError                  a file that cannot be read or lacks a variable
├── CheckpointError (ValueError)         a checkpoint that cannot be read or written
│   └── CheckpointMismatch               a checkpoint of another run
├── NonFiniteError (FloatingPointError)  NaN or inf in a filter's analysis
└── RunFailed (RuntimeError)             a job in which some filters failed
```
"""

from collections.abc import Mapping


class AssimilaxError(Exception):
    """The base of every error assimilax raises for a user to fix."""


class InvalidArgument(AssimilaxError, ValueError):
    """A parameter out of its range, non-finite, of the wrong shape or size."""


def invalid(argument: str, value: object, allowed: str, *, owner: str | None = None) -> InvalidArgument:
    """``InvalidArgument("<owner>: <argument> = <value>: must be <allowed>")``."""
    where = f"{owner}: " if owner else ""
    return InvalidArgument(f"{where}{argument} = {_show(value)}: must be {allowed}.")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class InvalidConfiguration(InvalidArgument):
    """A job configuration with one or more invalid fields (all are listed)."""

    def __init__(self, what: str, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"invalid {what}: " + "; ".join(problems) + ".")


class InvalidData(AssimilaxError, ValueError):
    """Observations, a truth, statistics or an ensemble that cannot be used as given."""


class FileFormatError(InvalidData):
    """A file that cannot be read, or that lacks what it must hold (named in the message)."""

    def __init__(self, path: object, problem: str):
        self.path = str(path)
        super().__init__(f"{path}: {problem}")


class CheckpointError(AssimilaxError, ValueError):
    """A checkpoint that cannot be read, or a run that cannot write its checkpoint."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint written by another run (another filter, ensemble, data or key)."""


class NonFiniteError(AssimilaxError, FloatingPointError):
    """NaN or inf in a filter's analysis: the filter, the cycle and what went non-finite.

    - `filter`: the filter's name (its class, or its label in a job).
    - `cycle`: the observation index ``t`` of the analysis that is not finite.
    - `what`: the parts that are not finite (``"particles"``, ``"weights"``, ``"ess"``...).
    - `done`: the cycles kept (in the checkpoint, when there is one).
    - `result`: set by [`assimilax.assimilate`][assimilax.assimilate.assimilate]: the state
      before the failed cycle and the output of the cycles before it (None at cycle 0).
    """

    result: tuple | None = None

    def __init__(self, filter: str, cycle: int, what: tuple[str, ...], detail: str = "", done: int | None = None):
        self.filter, self.cycle, self.what, self.done = filter, cycle, tuple(what), done
        text = f"{filter}: the analysis of cycle {cycle} holds NaN or inf in its {', '.join(what)}"
        super().__init__(text + (f" ({detail})" if detail else "") + ".")


class RunFailed(AssimilaxError, RuntimeError):
    """Some filters of a job failed; the others' results were written.

    - `failures`: ``{filter name: the error's message}`` (messages that start with the
      name are shown as they are).
    - `dataset`: the job's results of the filters that finished (an `xarray.Dataset`), or
      None when none did.
    """

    def __init__(self, failures: Mapping[str, str], written: str | None = None, dataset: object = None):
        self.failures, self.dataset = dict(failures), dataset
        text = "; ".join(m if m.startswith(f"{n}:") else f"{n}: {m}" for n, m in self.failures.items())
        super().__init__(text + (f" (the other filters' results are in {written})" if written else ""))


__all__ = [
    "AssimilaxError",
    "CheckpointError",
    "CheckpointMismatch",
    "FileFormatError",
    "InvalidArgument",
    "InvalidConfiguration",
    "InvalidData",
    "NonFiniteError",
    "RunFailed",
    "invalid",
]
