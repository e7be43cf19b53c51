"""Test configuration: runtime shape/type checking of the whole package.

Every public function of `assimilax` and its adapters carries jaxtyping annotations; the
import hook below (installed for the whole session, before the package is imported)
checks them with beartype on every call the tests make.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import jax  # noqa: E402
import pytest  # noqa: E402
from jaxtyping import install_import_hook  # noqa: E402

install_import_hook(["assimilax", "assimilax_adapters"], "beartype.beartype")


@pytest.fixture
def x64():
    """Double precision for one test (comparisons with exact references), then back."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)
