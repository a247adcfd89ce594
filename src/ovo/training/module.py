"""The LightningModule: online-distillation training of the supernet, validated on a panel of
subnets (:mod:`ovo.training.panel`)."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.strategies import ParallelStrategy
from timm.data import Mixup
from torch import Tensor

from ovo.atomic import atomic_write_json
from ovo.errors import ConfigError, UserError, one_line
from ovo.settings import CompileOptions, check_compile_mode
from ovo.space import Arch, SearchSpace
from ovo.supernet import SuperViT, ViTConfig
from ovo.supernet.grads import SliceGrads
from ovo.training.ddp import reduces_slice_grads
from ovo.training.distill import (
    DistillConfig,
    StepArchs,
    arch_rng,
    layer_uses_per_step,
    sample_step_archs,
    step_losses,
)
from ovo.training.optim import build_optimizer, build_scheduler, check_layer_lr_scale
from ovo.training.panel import PanelMetrics, build_panel
from ovo.training.usage import UsageCounter


class NonFiniteLossError(UserError):
    """The loss became NaN/inf: training stops before the optimizer step writes bad weights."""


def _mixup(cfg: Mapping[str, Any] | None, num_classes: int) -> Mixup | None:
    cfg = dict(cfg or {})
    if (
        cfg.get("mixup_alpha", 0) <= 0
        and cfg.get("cutmix_alpha", 0) <= 0
        and not cfg.get("cutmix_minmax")
    ):
        return None
    return Mixup(num_classes=num_classes, **cfg)


class OVOModule(L.LightningModule):
    """Trains a :class:`SuperViT` with online distillation (see :mod:`ovo.training.distill`).

    Every argument is plain data (dicts from Hydra), so the checkpoint describes itself: the
    search, evaluation and export rebuild the supernet from ``hparams`` alone.

    Args:
        space: the search space (``SearchSpace.from_dict``).
        model: model settings (``ViTConfig``): image/patch size, classes, pooling, drop path.
        distill: online-distillation switches (``DistillConfig``).
        optimizer: ``timm.optim.create_optimizer_v2`` arguments; ``lr`` is the LR at
            ``lr_base_batch_size`` and scales linearly with the global batch.
        scheduler: ``timm.scheduler.create_scheduler_v2`` arguments, stepped per optimizer step.
        mixup: ``timm.data.Mixup`` arguments (one mix per batch, shared by teacher and student);
            with zero mixup and cutmix alphas, labels stay hard and ``label_smoothing`` applies.
        panel: ``build_panel`` arguments for validation.
        seed: seeds the per-step arch RNG and the per-step global RNG reseed.
        reseed_every_step: reseed torch/numpy/random from (seed, step, rank) before each step so
            drop-path and Mixup draws are a function of the step: resuming is exact.
        arch_trace_path: if set, each rank appends the archs it samples to ``<path>.rank<r>.jsonl``.
        usage_path: if set, count per epoch how many subnets ran each layer and weight slice
            (:mod:`ovo.training.usage`); rank 0 rewrites this JSON file after every epoch. The counts
            are not module state: they are not in the checkpoint, and a resumed epoch counts
            only the steps after the resume.
        compile: ``none`` or ``blocks``: run the supernet's blocks compiled once per block shape
            (:mod:`ovo.supernet.compile`); ``compile_options`` are its backend, mode, warm-up.
        fixed_arch: train this one subnet only, on the labels (a standalone model trained from
            scratch, e.g. the reference for a searched arch); needs ``distill.teacher=none``. The
            panel is then that arch alone, named ``fixed``.

    What else a checkpoint records (the data config, the training recipe) is
    :mod:`ovo.checkpoint`'s business, not this module's.
    """

    def __init__(
        self,
        space: Mapping[str, Any],
        model: Mapping[str, Any],
        distill: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        mixup: Mapping[str, Any] | None = None,
        panel: Mapping[str, Any] | None = None,
        label_smoothing: float = 0.0,
        lr_base_batch_size: int | None = 512,
        seed: int = 0,
        reseed_every_step: bool = True,
        arch_trace_path: str | None = None,
        usage_path: str | None = None,
        fixed_arch: Mapping[str, Any] | None = None,
        compile: str = "none",
        compile_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.space = SearchSpace.from_dict(space)
        self.vit_cfg = ViTConfig.from_dict(model)
        self.distill_cfg = DistillConfig.from_dict(distill)
        self.net = SuperViT(self.space, self.vit_cfg)
        self.mixup = _mixup(mixup, self.vit_cfg.num_classes)
        self.compile_mode = check_compile_mode(compile)
        self.compile_options = CompileOptions.from_dict(compile_options)
        self.slice_grads: SliceGrads | None = None
        self.fixed_arch = None
        if fixed_arch is not None:
            if self.distill_cfg.teacher != "none":
                raise ConfigError(
                    "fixed_arch trains one subnet on the labels: set distill=none "
                    f"(got distill.teacher={self.distill_cfg.teacher})"
                )
            self.fixed_arch = self.space.validate(Arch.from_dict(fixed_arch))
            self.panel = {"fixed": self.fixed_arch}
        else:
            self.panel = build_panel(self.space, **(panel or {}))
        self.val_metrics = PanelMetrics(self.panel, self.vit_cfg.num_classes)
        # checked here, so a bad value is one line before anything is built
        check_layer_lr_scale(
            (optimizer or {}).get("layer_lr_scale", "none"), fixed_arch is not None
        )
        self.usage = UsageCounter(self.space) if usage_path else None
        self.usage_epochs: list[dict[str, Any]] = []
        self._step_start: float | None = None
        self._nonfinite: str | None = None  # this rank's non-finite loss, reported at the sync

    def load_inherited_weights(self, source: Any) -> None:
        """Start from a trained supernet's weights (``init_from``; ``source`` is a
        :class:`~ovo.checkpoint.LoadedSupernet`). With ``fixed_arch`` the subnet then starts from
        exactly the weights ``ovo.export`` writes for it: a finetune of the inherited subnet."""
        src_space, src_cfg = source.space, source.cfg
        if self.fixed_arch is not None and self.fixed_arch not in src_space:
            raise ConfigError(
                f"fixed_arch {self.fixed_arch.short()} is not in the space '{src_space.name}' of "
                f"init_from={source.path}, so that supernet holds no weights for it"
            )
        if src_space != self.space:
            raise ConfigError(
                f"init_from={source.path} was trained on space '{src_space.name}' "
                f"{src_space.to_dict()}, this run on space '{self.space.name}' "
                f"{self.space.to_dict()}; train with the checkpoint's space (e.g. "
                f"space={src_space.name})"
            )
        shape_keys = (
            "img_size",
            "patch_size",
            "in_chans",
            "num_classes",
            "global_pool",
            "per_depth_norm",
        )
        diffs = [
            f"model.{k}: {getattr(src_cfg, k)} there, {getattr(self.vit_cfg, k)} here"
            for k in shape_keys
            if getattr(src_cfg, k) != getattr(self.vit_cfg, k)
        ]
        if diffs:
            raise ConfigError(
                f"init_from={source.path} has other model settings ({'; '.join(diffs)}); "
                "set them as the checkpoint has them"
            )
        self.net.load_state_dict(source.net.state_dict())

    # ---- forward -------------------------------------------------------------------------
    def forward(self, x: Tensor, arch: Arch) -> Tensor:
        return self.net(x, arch)

    # ---- gradients and compilation ---------------------------------------------------------
    def on_fit_start(self) -> None:
        # Gradients go straight into one buffer (ovo.supernet.grads), which SupernetDDPStrategy
        # all-reduces in one collective, except under torch's own DDP/FSDP: they learn that a
        # gradient is ready from autograd's accumulation, so the supernet keeps autograd's path
        # (no SliceGrads attached).
        strategy = self.trainer.strategy
        wrapped = isinstance(strategy, ParallelStrategy) and not reduces_slice_grads(strategy)
        if self.slice_grads is not None:
            self.slice_grads.detach()
        fp16 = str(self.trainer.precision).startswith("16")  # GradScaler: skipped overflow steps
        self.slice_grads = None if wrapped else SliceGrads(self.net.parameters(), zero_whole=fp16)
        self._nonfinite = None
        if self.compile_mode == "blocks" and self.net.compiled is None:
            opts = self.compile_options
            compiled = self.net.compile_blocks(opts.backend, opts.mode)
            if opts.warmup:
                batch = int(getattr(self.trainer.datamodule, "batch_size", 2))
                plugin, rank0 = self.trainer.precision_plugin, self.global_rank == 0
                compiled.warm_up(self.net, batch, True, rank0, plugin.train_step_context)
                compiled.warm_up(self.net, batch, False, rank0, plugin.val_step_context)

    def on_fit_end(self) -> None:
        if self.slice_grads is not None:
            self.slice_grads.detach()
            self.slice_grads = None

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any) -> None:
        if self.slice_grads is not None:
            self.slice_grads.zero_()  # re-zeroes only what the step wrote
        else:
            optimizer.zero_grad()

    def on_train_epoch_start(self) -> None:
        if self.usage is not None:
            self.usage.reset()

    def on_train_epoch_end(self) -> None:
        if self.net.compiled is not None:
            self.log("train/compiled_graphs", float(self.net.compiled.graphs))
        if self.usage is not None:
            counts = self.usage.as_dict()
            for i, n in enumerate(counts["layers"]):
                self.log(f"usage/layer{i}", float(n), rank_zero_only=True)
            self.usage_epochs.append({"epoch": self.current_epoch, **counts})
            if self.global_rank == 0:
                atomic_write_json(Path(self.hparams.usage_path), {"epochs": self.usage_epochs})

    # ---- training ------------------------------------------------------------------------
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._step_start = time.perf_counter()
        if self.hparams.reseed_every_step:
            s = random.Random(
                f"ovo-step/{self.hparams.seed}/{self.global_step}/{batch_idx}/{self.global_rank}"
            ).getrandbits(63)
            torch.manual_seed(s)
            np.random.seed(s % 2**32)
            random.seed(s)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        if self.mixup is not None:
            x, y = self.mixup(x, y)  # one mix per batch, shared by teacher and student
        accumulate = self.trainer.accumulate_grad_batches if self._trainer else 1
        if self.fixed_arch is not None:
            archs = StepArchs(None, (self.fixed_arch,))
        else:
            archs = sample_step_archs(
                self.space,
                self.distill_cfg,
                arch_rng(self.hparams.seed, self.global_step, batch_idx % accumulate),
            )
        self._trace(archs)
        if self.usage is not None:
            self.usage.add_step([*([archs.teacher] if archs.teacher else []), *archs.students])
        kd_on = self.current_epoch >= self.distill_cfg.kd_start_epoch
        total, logs = self.step_losses(x, y, archs, kd_on)
        self._check_finite(total, logs)
        self.log("train/loss", total, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in logs.items()})
        return total

    def step_losses(
        self, x: Tensor, y: Tensor, archs: StepArchs, kd_on: bool = True
    ) -> tuple[Tensor, dict[str, Tensor | float]]:
        """The summed loss of one step (one backward) and its parts for logging.

        teacher: CE on the labels; each student: ``alpha * KD + (1 - alpha) * CE`` (labels only
        when there is no teacher or ``kd_on`` is false).
        """
        total, parts = step_losses(
            self.net, x, y, archs, self.distill_cfg, self.hparams.label_smoothing, kd_on
        )
        logs: dict[str, Tensor | float] = dict(parts)
        if archs.teacher is not None:
            logs["teacher_mparams"] = self.net.num_params(archs.teacher) / 1e6
            logs["teacher_gmacs"] = self.net.num_macs(archs.teacher) / 1e9
        logs["student_mparams"] = (
            float(np.mean([self.net.num_params(a) for a in archs.students])) / 1e6
        )
        logs["student_gmacs"] = float(np.mean([self.net.num_macs(a) for a in archs.students])) / 1e9
        return total, logs

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._step_start is not None:
            seconds = time.perf_counter() - self._step_start
            images = batch[0].shape[0] * self.trainer.world_size
            self.log("train/throughput_img_s", images / max(seconds, 1e-9))

    def _check_finite(self, total: Tensor | float, logs: Mapping[str, Any]) -> None:
        if not isinstance(total, Tensor) or torch.isfinite(total.detach()).all():
            return
        values = ", ".join(
            f"{k}={float(v):.4g}"
            for k, v in logs.items()
            if "loss" in k or k.startswith("student_")
        )
        message = (
            f"non-finite loss at step {self.global_step} (epoch {self.current_epoch}): {values}"
        )
        strategy = self.trainer.strategy if self._trainer else None
        if reduces_slice_grads(strategy) and strategy.world_size > 1:
            # the other ranks are on their way to the gradient all-reduce: the flag travels with
            # it and every rank stops there, before the optimizer step (ovo.training.ddp)
            assert self.slice_grads is not None
            self.slice_grads.nonfinite = True
            self._nonfinite = message
            return
        raise self.nonfinite_error(message)

    def nonfinite_error(self, message: str | None = None) -> NonFiniteLossError:
        """The error that stops training on a non-finite loss: ``message`` says what this rank
        saw (``None``: another rank's loss, as :class:`SupernetDDPStrategy` reports it)."""
        message = message or self._nonfinite
        if message is None:
            message = (
                f"non-finite loss on another rank at step {self.global_step} "
                f"(epoch {self.current_epoch})"
            )
        self._nonfinite = None
        return NonFiniteLossError(
            f"{message}. No optimizer step was taken and no checkpoint with these weights was "
            "written; lower optimizer.lr, raise scheduler.warmup_epochs or add "
            "trainer.gradient_clip_val, then resume from the last checkpoint (ckpt_path=...)."
        )

    def _trace(self, archs: Any) -> None:
        path = self.hparams.arch_trace_path
        if not path:
            return
        record = {
            "step": self.global_step,
            "rank": self.global_rank,
            "distill": dict(self.hparams.distill or {}),
            "teacher": archs.teacher.to_dict() if archs.teacher else None,
            "students": [a.to_dict() for a in archs.students],
        }
        with Path(f"{path}.rank{self.global_rank}.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")

    # ---- validation ----------------------------------------------------------------------
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_metrics.score(self.net, x, y)

    def on_validation_epoch_end(self) -> None:
        results = {}
        for name, values in self.val_metrics.compute_reset().items():
            results[name] = {k: float(v) for k, v in values.items()}
            for key, value in values.items():
                self.log(f"val/{name}/{key}", value)
        for key in ("acc1", "acc5"):
            self.log(
                f"val/mean/{key}",
                float(np.mean([r[key] for r in results.values()])),
                prog_bar=key == "acc1",
            )
        self.panel_results = results

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self.on_validation_epoch_end()

    # ---- optimisation --------------------------------------------------------------------
    def global_batch_size(self) -> int:
        dm = self.trainer.datamodule
        per_device = getattr(dm, "batch_size", None)
        if per_device is None:
            raise ConfigError("the data module has no batch_size; cannot scale the learning rate")
        return int(per_device) * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def build_optimizer(self, global_batch_size: int) -> torch.optim.Optimizer:
        """timm's optimizer over the supernet, its LR scaled to ``global_batch_size``."""
        uses = (
            None
            if self.fixed_arch is not None
            else layer_uses_per_step(self.space, self.distill_cfg)
        )
        return build_optimizer(
            self.net,
            self.hparams.optimizer,
            global_batch_size,
            self.hparams.lr_base_batch_size,
            uses,
        )

    def build_scheduler(
        self, optimizer: torch.optim.Optimizer, epochs: int, updates_per_epoch: int
    ) -> Any | None:
        return build_scheduler(optimizer, self.hparams.scheduler, epochs, updates_per_epoch)

    def check_optimization(self, global_batch_size: int, epochs: int) -> None:
        """Build the optimizer and scheduler once, before fitting, so that a value they refuse
        (a negative LR, an unknown optimizer or schedule...) is a one-line config error instead
        of a traceback from inside the fit."""
        try:
            optimizer = self.build_optimizer(global_batch_size)
        except (ValueError, TypeError, KeyError, AssertionError) as err:
            raise ConfigError(f"optimizer: {one_line(err)}; fix the optimizer.* settings") from err
        try:
            self.build_scheduler(optimizer, max(epochs, 1), 1)
        except (ValueError, TypeError, KeyError, AssertionError) as err:
            raise ConfigError(f"scheduler: {one_line(err)}; fix the scheduler.* settings") from err

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.build_optimizer(self.global_batch_size())
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        updates_per_epoch = max(math.ceil(self.trainer.estimated_stepping_batches / epochs), 1)
        scheduler = self.build_scheduler(optimizer, epochs, updates_per_epoch)
        if scheduler is None:
            for group in optimizer.param_groups:  # timm's schedulers apply lr_scale themselves
                group["lr"] *= group.get("lr_scale", 1.0)
            return {"optimizer": optimizer}
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        # timm schedulers are stepped by update count (Lightning's default expects torch's API)
        scheduler.step_update(num_updates=self.global_step)
