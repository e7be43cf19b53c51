"""A short Lorenz-96 twin experiment from Python (the `assimilax lorenz96` job, smaller).

    python examples/lorenz96_twin.py

Writes NetCDF, figures and a summary to outputs/lorenz96_example/ in about a minute.
"""

from assimilax_adapters.lorenz96.experiment import TwinExperiment, run, summary_table

config = TwinExperiment(particles=128, cycles=40, spinup=10, filters=("fa-apf", "fa-apf-block", "bootstrap", "enkf", "forecast"))
dataset = run(config, output="outputs/lorenz96_example")
print(summary_table(dataset))
print(dataset)
