"""The training run: the loop, the one compiled step, its state, the workdir, checkpoints,
preemption and metrics."""
