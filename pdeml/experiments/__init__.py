"""End-to-end experiments (data -> model -> training -> evaluation -> report) behind
``pdeml train``.

One runner serves every PDE: an experiment is a configuration class, a subclass of
:class:`ExperimentConfig` holding its own fields and hooks (problem, partition, data,
network), registered in :data:`REGISTRY` under its command-line name. The runner builds,
trains, evaluates and loads any of them: :func:`run_experiment`, :func:`load_run`,
:func:`evaluate`.
"""

from pdeml.experiments.config import (
    METHODS,
    REGISTRY,
    ExperimentConfig,
    config_class,
    config_dict,
    field_info,
    option,
)
from pdeml.experiments.common import make_optimizer
from pdeml.experiments.runner import (
    build_model,
    constraint_layer,
    evaluate,
    evaluate_run,
    load_data,
    load_run,
    model_at_resolution,
    predictions,
    run_experiment,
)
from pdeml.experiments.diffusion_sorption import (
    DiffusionSorptionConfig,
    TrainingWindow,
    parse_experts,
    plot_predictions,
)
from pdeml.experiments.navier_stokes import NavierStokesConfig, NSConfig

__all__ = ["METHODS", "REGISTRY", "DiffusionSorptionConfig", "ExperimentConfig",
           "NavierStokesConfig", "NSConfig", "TrainingWindow", "build_model", "config_class",
           "config_dict", "constraint_layer", "evaluate", "evaluate_run", "field_info",
           "load_data", "load_run", "make_optimizer", "model_at_resolution", "option",
           "parse_experts", "predictions", "plot_predictions", "run_experiment"]
