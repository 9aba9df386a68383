"""The training loop's parts: pure jitted steps, stages (what trains, at which rates), and hooks.

`jaxcxr.train.train_and_evaluate` composes them: `steps` holds the `TrainState` pytree and the
pure step functions, `stages` turns `config.stages` into per-stage optax transforms and masks, and
`hooks` holds the periodic actions the loop calls (train-metric means, evaluation, early stopping,
plateau, checkpoints, halting). Evaluations are plug-ins of `jaxcxr.evaluators`.
"""
