"""assimilax: training-free data assimilation with pre-trained diffusion emulators."""

from .denoisers import (
    AbstractDenoiser as AbstractDenoiser,
    EDMPreconditioned as EDMPreconditioned,
    GaussianDenoiser as GaussianDenoiser,
    VPDenoiser as VPDenoiser,
    score as score,
)
from .emulators import (
    AbstractEmulator as AbstractEmulator,
    predictive_mean as predictive_mean,
    push_history as push_history,
)
from .exact_emulators import (
    GaussianTransitionEmulator as GaussianTransitionEmulator,
    LinearGaussianEmulator as LinearGaussianEmulator,
)
from .observations import (
    AbstractObservationNoise as AbstractObservationNoise,
    AbstractObservationOperator as AbstractObservationOperator,
    BlockMean as BlockMean,
    DenseGaussianNoise as DenseGaussianNoise,
    DiagonalGaussianNoise as DiagonalGaussianNoise,
    FunctionOperator as FunctionOperator,
    Interpolation as Interpolation,
    MatrixOperator as MatrixOperator,
    ObservationModel as ObservationModel,
    Selection as Selection,
    Stack as Stack,
)
from .schedules import (
    AbstractSchedule as AbstractSchedule,
    CosineSchedule as CosineSchedule,
    EDMSchedule as EDMSchedule,
)

__version__ = "0.1.0"
