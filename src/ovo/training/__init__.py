"""Training the supernet: the LightningModule (:mod:`~ovo.training.module`), online distillation
(:mod:`~ovo.training.distill`: which subnets each step trains, and the loss), the optimizer and
scheduler factories (:mod:`~ovo.training.optim`), the validation panel
(:mod:`~ovo.training.panel`), usage counters (:mod:`~ovo.training.usage`), the DDP strategy
(:mod:`~ovo.training.ddp`), Hydra multirun + DDP glue (:mod:`~ovo.training.hydra_ddp`), the
sweep summary (:mod:`~ovo.training.sweep`) and fault injection for tests
(:mod:`~ovo.training.faults`)."""
