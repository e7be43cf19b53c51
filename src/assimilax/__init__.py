"""assimilax: training-free data assimilation with pre-trained diffusion emulators."""

from .assimilate import FilterMoments as FilterMoments, assimilate as assimilate
from .denoisers import (
    AbstractDenoiser as AbstractDenoiser,
    EDMPreconditioned as EDMPreconditioned,
    DiagonalGaussianDenoiser as DiagonalGaussianDenoiser,
    GaussianDenoiser as GaussianDenoiser,
    VPDenoiser as VPDenoiser,
    score as score,
)
from .emulators import (
    AbstractEmulator as AbstractEmulator,
    AbstractIncrementEmulator as AbstractIncrementEmulator,
    predictive_mean as predictive_mean,
    push_history as push_history,
)
from .exact_emulators import (
    GaussianTransitionEmulator as GaussianTransitionEmulator,
    LinearGaussianEmulator as LinearGaussianEmulator,
)
from .filters import (
    AbstractFilter as AbstractFilter,
    BlockFAAPF as BlockFAAPF,
    BootstrapPF as BootstrapPF,
    Diagnostics as Diagnostics,
    ETKF as ETKF,
    EnsembleForecast as EnsembleForecast,
    FAAPF as FAAPF,
    FilterOutput as FilterOutput,
    FilterState as FilterState,
    LETKF as LETKF,
    LocalFAAPF as LocalFAAPF,
    StochasticEnKF as StochasticEnKF,
    filter_scan as filter_scan,
)
from .interop import (
    FlaxLinenDenoiser as FlaxLinenDenoiser,
    FlaxLinenNetwork as FlaxLinenNetwork,
    FlaxNNXDenoiser as FlaxNNXDenoiser,
    FlaxNNXNetwork as FlaxNNXNetwork,
    FunctionDenoiser as FunctionDenoiser,
    as_denoiser as as_denoiser,
    as_network as as_network,
)
from .guidance import (
    AbstractGuidance as AbstractGuidance,
    DPS as DPS,
    GuidanceBelowLevel as GuidanceBelowLevel,
    IsotropicMMPS as IsotropicMMPS,
    MMPS as MMPS,
    PseudoInverse as PseudoInverse,
    posterior_denoiser as posterior_denoiser,
)
from .geometry import (
    AbstractGeometry as AbstractGeometry,
    AbstractTaper as AbstractTaper,
    DistanceLocalisation as DistanceLocalisation,
    GaspariCohn as GaspariCohn,
    LatLon as LatLon,
    NoTaper as NoTaper,
    Periodic1D as Periodic1D,
    Periodic2D as Periodic2D,
)
from .layout import StateLayout as StateLayout
from . import errors as errors
from . import experiment as experiment
from . import sharding as sharding
from .sharding import ParticleLayout as ParticleLayout, particle_layout as particle_layout
from .local_updates import (
    AbstractLocalUpdate as AbstractLocalUpdate,
    CoupledResampling as CoupledResampling,
    SecondOrderTransform as SecondOrderTransform,
    MarginalTransport as MarginalTransport,
    mean_preserving_rotation as mean_preserving_rotation,
    LOCAL_UPDATE_NAMES as LOCAL_UPDATE_NAMES,
    local_update_by_name as local_update_by_name,
)
from .localisation import BlockLocalisation as BlockLocalisation
from . import metrics as metrics
from .metrics import latitude_weights as latitude_weights
from .observations import (
    AbstractObservationNoise as AbstractObservationNoise,
    Absolute as Absolute,
    AbstractObservationOperator as AbstractObservationOperator,
    BlockMean as BlockMean,
    DenseGaussianNoise as DenseGaussianNoise,
    DiagonalGaussianNoise as DiagonalGaussianNoise,
    FunctionOperator as FunctionOperator,
    Interpolation as Interpolation,
    MatrixOperator as MatrixOperator,
    Normalised as Normalised,
    ObservationModel as ObservationModel,
    Selection as Selection,
    Stack as Stack,
)
from .results import describe as describe, scores as scores, to_dataset as to_dataset
from .resampling import (
    AbstractResampler as AbstractResampler,
    Multinomial as Multinomial,
    Residual as Residual,
    Stratified as Stratified,
    Systematic as Systematic,
    effective_sample_size as effective_sample_size,
)
from .sampling import (
    Churn as Churn,
    DenoiserCalls as DenoiserCalls,
    LangevinCorrector as LangevinCorrector,
    Sampler as Sampler,
    SwitchedDenoiser as SwitchedDenoiser,
)
from .schedules import (
    AbstractSchedule as AbstractSchedule,
    CosineSchedule as CosineSchedule,
    EDMSchedule as EDMSchedule,
)
from .solvers import (
    SOLVER_NAMES as SOLVER_NAMES,
    AdamsBashforth3 as AdamsBashforth3,
    DPMSolverPP2S as DPMSolverPP2S,
    DPMSolverPP3M as DPMSolverPP3M,
    solver_by_name as solver_by_name,
)
from .tempering import (
    AbstractTempering as AbstractTempering,
    ESSBandTempering as ESSBandTempering,
    NoTempering as NoTempering,
)
from .transitions import sample_transition as sample_transition
from .weighting import (
    AbstractWeighting as AbstractWeighting,
    DiagonalPredictiveWeights as DiagonalPredictiveWeights,
    DiracWeights as DiracWeights,
    GaussianPredictiveWeights as GaussianPredictiveWeights,
)

from ._version import __version__ as __version__
