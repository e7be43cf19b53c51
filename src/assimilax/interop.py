"""One-call wrappers turning foreign networks into assimilax denoisers and networks.

Two roles, two signatures:

- a **denoiser** ([`assimilax.AbstractDenoiser`][assimilax.denoisers.AbstractDenoiser]) is ``D(x_t, sigma, context) ~= E[x | x_t]``
  for one flat sample ``x_t`` of size ``d`` and the VE noise level ``sigma``;
- a **raw network** ``F(x_in, c_noise, context)`` is what [`assimilax.EDMPreconditioned`][assimilax.denoisers.EDMPreconditioned]
  wraps into a denoiser, ``D = c_skip x_t + c_out F(c_in x_t, c_noise, context)``.

If your model already returns ``E[x | x_t]`` (it was trained with its preconditioning
inside), make it a denoiser with [`as_denoiser`][].  If it is a raw, un-preconditioned
network, make it a network with [`as_network`][] and wrap it:
``EDMPreconditioned(network=as_network(module, params), sigma_data=...)``.

Supported objects:

- a plain function or any callable `eqx.Module` (its array leaves stay pytree leaves,
  so `jax.jit`, `jax.vmap` and `jax.grad` / `eqx.filter_grad` see the weights);
- a Flax **linen** module with its variables, called as
  ``module.apply(variables, x, s, context)`` (or ``method=`` / an adapter ``call=``);
- a Flax **nnx** module, stored split as ``graphdef, state = nnx.split(module)`` and
  merged at call time (the state is a pytree of arrays).

All wrappers act on one sample; batch them with `jax.vmap` (the samplers and filters do).
Flax is optional: this module imports it only when an nnx module is wrapped.
"""

import sys
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, ArrayLike, Float, PyTree

from .denoisers import AbstractDenoiser

__all__ = [
    "FlaxLinenDenoiser",
    "FlaxLinenNetwork",
    "FlaxNNXDenoiser",
    "FlaxNNXNetwork",
    "FunctionDenoiser",
    "as_denoiser",
    "as_network",
]


def _as_pytree_callable(fn: Callable) -> Callable:
    """Callables that are pytree nodes (eqx Modules, bound methods) are kept as they are;
    a callable that is a bare leaf (a plain function) is wrapped in
    `jax.tree_util.Partial`, which holds it as static data, so the wrapper can be an
    argument of `jax.jit` and not only of `eqx.filter_jit`."""
    leaves = jax.tree_util.tree_leaves(fn)
    if len(leaves) == 1 and leaves[0] is fn:
        return jax.tree_util.Partial(fn)
    return fn


def _is_linen(obj: Any) -> bool:
    # A linen module's class imported flax.linen: no need to import flax ourselves.
    linen = sys.modules.get("flax.linen")
    return linen is not None and isinstance(obj, linen.Module)


def _is_nnx(obj: Any) -> bool:
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(obj, nnx.Module)


def _linen_apply(
    module: Any, variables: PyTree, method: str | None, call: Callable | None, x, s, context
) -> Array:
    if call is not None:
        return call(module, variables, x, s, context)
    if method is None:
        return module.apply(variables, x, s, context)
    return module.apply(variables, x, s, context, method=method)


def _nnx_split(module: Any) -> tuple[Any, PyTree]:
    from flax import nnx

    if not isinstance(module, nnx.Module):
        raise TypeError(f"Expected a flax.nnx.Module, got {type(module).__name__}.")
    return nnx.split(module)


def _nnx_apply(graphdef: Any, state: PyTree, call: Callable | None, x, s, context) -> Array:
    from flax import nnx

    model = nnx.merge(graphdef, state)
    if call is not None:
        return call(model, x, s, context)
    return model(x, s, context)


def _check_linen(module: Any, variables: Any, who: str) -> None:
    if not _is_linen(module):
        raise TypeError(f"{who} needs a flax.linen.Module, got {type(module).__name__}.")
    if variables is None:
        raise TypeError(
            f"{who} needs the module's variables (as returned by `module.init(...)`)."
        )


# --------------------------------------------------------------------------------------
# Denoisers
# --------------------------------------------------------------------------------------


class FunctionDenoiser(AbstractDenoiser):
    """A denoiser from any callable ``fn(x_t, sigma, context) -> E[x | x_t]``.

    `fn` may be a plain function or a callable `eqx.Module` (whose weights then remain
    pytree leaves of the denoiser, visible to `jax.grad` and `eqx.partition`).
    """

    fn: Callable[[Array, Array, Any], Array]

    def __init__(self, fn: Callable[[Array, Array, Any], Array]):
        if not callable(fn):
            raise TypeError(f"FunctionDenoiser needs a callable, got {type(fn).__name__}.")
        self.fn = _as_pytree_callable(fn)

    def __call__(
        self, x_t: Float[Array, " d"], sigma: Float[ArrayLike, ""], context: PyTree
    ) -> Float[Array, " d"]:
        return self.fn(x_t, sigma, context)


class FlaxLinenDenoiser(AbstractDenoiser):
    """A denoiser from a Flax linen module: ``module.apply(params, x_t, sigma, context)``.

    **Arguments:**

    - `module`: the linen module (static: it holds no weights).
    - `params`: its variables as returned by ``module.init(...)``, e.g.
      ``{"params": ...}`` (a pytree of arrays: leaves of this denoiser).
    - `method`: the name of the module method to apply (default ``__call__``), which must
      take ``(x_t, sigma, context)``.
    - `call`: for any other signature, an adapter
      ``call(module, params, x_t, sigma, context) -> Float[Array, "d"]``, e.g.
      ``lambda m, p, x, s, c: m.apply(p, x[None], s[None], train=False)[0]``.
    """

    module: Any = eqx.field(static=True)
    params: PyTree
    method: str | None = eqx.field(static=True, default=None)
    call: Callable | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        _check_linen(self.module, self.params, "FlaxLinenDenoiser")

    def __call__(
        self, x_t: Float[Array, " d"], sigma: Float[ArrayLike, ""], context: PyTree
    ) -> Float[Array, " d"]:
        return _linen_apply(self.module, self.params, self.method, self.call, x_t, sigma, context)


class FlaxNNXDenoiser(AbstractDenoiser):
    """A denoiser from a Flax nnx module called as ``module(x_t, sigma, context)``.

    The module is split once, ``graphdef, state = nnx.split(module)``: the graph
    definition is static and the state (weights) is a pytree of leaves; the module is
    rebuilt by ``nnx.merge`` at every call (free under `jax.jit`).  Updates to the
    original module after wrapping are not seen.  For another signature pass
    ``call(module, x_t, sigma, context) -> Float[Array, "d"]``.
    """

    graphdef: Any = eqx.field(static=True)
    state: PyTree
    call: Callable | None = eqx.field(static=True)

    def __init__(self, module: Any, call: Callable | None = None):
        self.graphdef, self.state = _nnx_split(module)
        self.call = call

    def __call__(
        self, x_t: Float[Array, " d"], sigma: Float[ArrayLike, ""], context: PyTree
    ) -> Float[Array, " d"]:
        return _nnx_apply(self.graphdef, self.state, self.call, x_t, sigma, context)

    @property
    def module(self) -> Any:
        """The module, merged from the stored state."""
        from flax import nnx

        return nnx.merge(self.graphdef, self.state)


# --------------------------------------------------------------------------------------
# Raw networks, for EDMPreconditioned
# --------------------------------------------------------------------------------------


class FlaxLinenNetwork(eqx.Module):
    """A raw network ``F(x_in, c_noise, context) = module.apply(params, x_in, c_noise, context)``.

    The `network` of [`assimilax.EDMPreconditioned`][assimilax.denoisers.EDMPreconditioned].  Arguments as for
    [`FlaxLinenDenoiser`][]; the adapter is ``call(module, params, x_in, c_noise, context)``.
    """

    module: Any = eqx.field(static=True)
    params: PyTree
    method: str | None = eqx.field(static=True, default=None)
    call: Callable | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        _check_linen(self.module, self.params, "FlaxLinenNetwork")

    def __call__(
        self, x_in: Float[Array, " d"], c_noise: Float[ArrayLike, ""], context: PyTree
    ) -> Float[Array, " d"]:
        return _linen_apply(
            self.module, self.params, self.method, self.call, x_in, c_noise, context
        )


class FlaxNNXNetwork(eqx.Module):
    """A raw network ``F(x_in, c_noise, context) = module(x_in, c_noise, context)`` from nnx.

    The `network` of [`assimilax.EDMPreconditioned`][assimilax.denoisers.EDMPreconditioned]; stored split as for
    [`FlaxNNXDenoiser`][]; the adapter is ``call(module, x_in, c_noise, context)``.
    """

    graphdef: Any = eqx.field(static=True)
    state: PyTree
    call: Callable | None = eqx.field(static=True)

    def __init__(self, module: Any, call: Callable | None = None):
        self.graphdef, self.state = _nnx_split(module)
        self.call = call

    def __call__(
        self, x_in: Float[Array, " d"], c_noise: Float[ArrayLike, ""], context: PyTree
    ) -> Float[Array, " d"]:
        return _nnx_apply(self.graphdef, self.state, self.call, x_in, c_noise, context)


# --------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------


def _unsupported(obj: Any, who: str) -> TypeError:
    return TypeError(
        f"{who}: unsupported object of type {type(obj).__name__}; expected an "
        "assimilax.AbstractDenoiser, a callable (function or eqx.Module), a flax.linen.Module "
        "with params, or a flax.nnx.Module."
    )


def _check_no_linen_options(obj: Any, params: Any, method: Any, who: str) -> None:
    if params is not None or method is not None:
        raise TypeError(
            f"{who}: `params` and `method` apply to flax.linen modules only, got a "
            f"{type(obj).__name__}."
        )


def as_denoiser(
    obj: Any,
    params: PyTree | None = None,
    *,
    method: str | None = None,
    call: Callable | None = None,
) -> AbstractDenoiser:
    """Wrap `obj`, whose output is ``E[x | x_t]``, as an [`assimilax.AbstractDenoiser`][assimilax.denoisers.AbstractDenoiser].

    - an `AbstractDenoiser`: returned unchanged;
    - a flax.linen module (with `params`): [`FlaxLinenDenoiser`][];
    - a flax.nnx module: [`FlaxNNXDenoiser`][];
    - any other callable (function, `eqx.Module`): [`FunctionDenoiser`][].

    `call` is the signature adapter of the Flax wrappers; raises `TypeError` for anything
    else.
    """
    if isinstance(obj, AbstractDenoiser):
        _check_no_linen_options(obj, params, method, "as_denoiser")
        if call is not None:
            raise TypeError("as_denoiser: `call` does not apply to an AbstractDenoiser.")
        return obj
    if _is_linen(obj):
        if params is None:
            raise TypeError("as_denoiser: a flax.linen module needs its `params` (variables).")
        return FlaxLinenDenoiser(obj, params, method=method, call=call)
    if _is_nnx(obj):
        _check_no_linen_options(obj, params, method, "as_denoiser")
        return FlaxNNXDenoiser(obj, call=call)
    if callable(obj) and not isinstance(obj, type):
        _check_no_linen_options(obj, params, method, "as_denoiser")
        if call is not None:
            raise TypeError("as_denoiser: `call` applies to Flax modules only.")
        return FunctionDenoiser(obj)
    raise _unsupported(obj, "as_denoiser")


def as_network(
    obj: Any,
    params: PyTree | None = None,
    *,
    method: str | None = None,
    call: Callable | None = None,
) -> Callable[[Array, Array, Any], Array]:
    """Wrap a raw network as a pytree callable ``F(x_in, c_noise, context)``.

    The result is the `network` of [`assimilax.EDMPreconditioned`][assimilax.denoisers.EDMPreconditioned]:

    - a flax.linen module (with `params`): [`FlaxLinenNetwork`][];
    - a flax.nnx module: [`FlaxNNXNetwork`][];
    - an `eqx.Module`: returned unchanged (already a pytree callable);
    - a plain function: wrapped in `jax.tree_util.Partial` (a pytree callable holding the
      function as static data).

    Raises `TypeError` for anything else, and for an `AbstractDenoiser` (it is already
    preconditioned: use it directly).
    """
    if isinstance(obj, AbstractDenoiser):
        raise TypeError(
            "as_network: got an AbstractDenoiser, which is already a denoiser; "
            "use it directly instead of wrapping it in EDMPreconditioned."
        )
    if _is_linen(obj):
        if params is None:
            raise TypeError("as_network: a flax.linen module needs its `params` (variables).")
        return FlaxLinenNetwork(obj, params, method=method, call=call)
    if _is_nnx(obj):
        _check_no_linen_options(obj, params, method, "as_network")
        return FlaxNNXNetwork(obj, call=call)
    if callable(obj) and not isinstance(obj, type):
        _check_no_linen_options(obj, params, method, "as_network")
        if call is not None:
            raise TypeError("as_network: `call` applies to Flax modules only.")
        return _as_pytree_callable(obj)
    raise _unsupported(obj, "as_network")
