"""End-to-end experiments (data -> model -> training -> evaluation -> report) behind the CLI."""

from pdeml.experiments.diffusion_sorption import (
    METHODS,
    ExperimentConfig,
    TrainingWindow,
    config_dict,
    parse_experts,
    build_model,
    evaluate,
    load_data,
    load_run,
    make_optimizer,
    plot_predictions,
    run_experiment,
)

__all__ = ["METHODS", "ExperimentConfig", "TrainingWindow", "config_dict", "parse_experts",
           "build_model", "evaluate", "load_data", "load_run", "make_optimizer",
           "plot_predictions", "run_experiment"]
