"""Particle filters over diffusion emulators: one protocol, ``init`` / ``step``."""

from .base import (
    AbstractFilter as AbstractFilter,
    Diagnostics as Diagnostics,
    FilterState as FilterState,
)
from .block_fa_apf import BlockFAAPF as BlockFAAPF, glue_histories as glue_histories
from .bootstrap import BootstrapPF as BootstrapPF
from .enkf import StochasticEnKF as StochasticEnKF
from .etkf import ETKF as ETKF
from .fa_apf import FAAPF as FAAPF
from .forecast import EnsembleForecast as EnsembleForecast
from .letkf import LETKF as LETKF
from .local_fa_apf import LocalFAAPF as LocalFAAPF
from .run import FilterOutput as FilterOutput, filter_scan as filter_scan
