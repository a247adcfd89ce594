"""The runtime a latency table's parts are timed in: PyTorch eager (``runtime=torch``) or ONNX
Runtime (``runtime=onnxruntime``).

For ONNX Runtime each part is exported as it is deployed (``torch.export`` with a dynamic batch,
then ``torch.onnx.export(..., dynamo=True)``: :mod:`ovo.export.formats`) and run in an
``InferenceSession`` with every graph optimization on, ``threads`` intra-op threads and one
inter-op thread (sequential execution). A part is exported once and its session made anew for
each round; the ONNX files are batch-independent, so a caller timing several batch sizes can
keep them in one ``export_dir``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ovo.errors import ConfigError
from ovo.export import formats
from ovo.latency.timing import Conditions, time_ms

RUNTIMES = ("torch", "onnxruntime")
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
GPU_PROVIDERS = (CUDA, "TensorrtExecutionProvider")  # providers that run on device=cuda only


# ---- which runtime ------------------------------------------------------------------------------
def _import_ort() -> Any:
    try:
        import onnxruntime  # optional (the onnx extra): a ConfigError without it
    except ImportError:
        raise ConfigError(
            "runtime=onnxruntime needs the onnxruntime package: uv sync --extra onnx (or pip "
            "install onnxruntime onnx onnxscript)"
        ) from None
    return onnxruntime


def runtime_problem(runtime: str, provider: str | None, device: torch.device) -> str | None:
    """Why ``runtime`` (with ``provider``) cannot time on ``device`` here, or ``None``."""
    if runtime == "torch":
        return None if provider is None else "provider= is for runtime=onnxruntime"
    if runtime not in RUNTIMES:
        return (
            f"runtime={runtime} is not a runtime ovo can time in: use one of {', '.join(RUNTIMES)}"
        )
    try:
        ort = _import_ort()
        for package in ("onnx", "onnxscript"):  # torch's dynamo ONNX exporter needs both
            __import__(package)
    except ConfigError as err:
        return str(err)
    except ImportError as err:
        return (
            f"runtime=onnxruntime exports through torch.onnx, which needs the {err.name} "
            "package: uv sync --extra onnx"
        )
    available = ort.get_available_providers()
    if provider not in available:
        return (
            f"provider={provider} is not in this onnxruntime ({ort.__version__}), which has "
            f"{', '.join(available)}"
            + (" (pip install onnxruntime-gpu)" if provider == CUDA else "")
        )
    if device.type == "cuda" and provider == CPU:
        return f"provider={CPU} runs on the CPU: set device=cpu (or provider={CUDA})"
    if device.type == "cpu" and provider in GPU_PROVIDERS:
        return f"provider={provider} runs on a GPU: set device=cuda"
    return None


def resolve_runtime(
    runtime: str, provider: str | None, device: torch.device, dtype: torch.dtype
) -> tuple[str, str | None]:
    """``(runtime, provider)`` checked, with the default provider filled in (CUDA's on a GPU,
    the CPU's otherwise); one :class:`ConfigError` if they cannot time here."""
    runtime = str(runtime).strip().lower()
    if runtime == "onnxruntime":
        if dtype != torch.float32:
            raise ConfigError(
                f"dtype={str(dtype).removeprefix('torch.')}: runtime=onnxruntime times the float32 "
                "ONNX export (autocast is torch's); use dtype=float32"
            )
        if provider is None:
            provider = CUDA if device.type == "cuda" else CPU
    problem = runtime_problem(runtime, provider, device)
    if problem:
        raise ConfigError(problem)
    return runtime, provider


# ---- the parts of a timm ViT as modules -------------------------------------------------------
class Stem(nn.Module):
    """A timm ``VisionTransformer``'s patch embedding, class token and position embedding."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit  # exporting keeps only the weights this forward uses

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit._pos_embed(self.vit.patch_embed(x))


class Head(nn.Module):
    """A timm ``VisionTransformer``'s final norm, pooling and classifier."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_head(self.vit.norm(tokens))


# ---- timers -----------------------------------------------------------------------------------
class Timer(Protocol):
    def time(self, key: str, module: Callable[[], nn.Module], x: torch.Tensor) -> float:
        """Median milliseconds of ``module()(x)``; ``key`` names the module among those timed."""
        ...

    def conditions(self) -> dict[str, Any]:
        """The table keys that say where it timed."""
        ...

    def close(self) -> None: ...


class TorchTimer:
    """PyTorch eager, under the conditions' dtype (autocast) on their device."""

    def __init__(self, cond: Conditions) -> None:
        self.cond = cond

    def time(self, key: str, module: Callable[[], nn.Module], x: torch.Tensor) -> float:
        m = module()
        return time_ms(lambda: m(x), self.cond)

    def conditions(self) -> dict[str, Any]:
        return {"runtime": "torch", "provider": None}

    def close(self) -> None:
        pass


class OrtTimer:
    """ONNX Runtime: each module exported once (to ``export_dir``, or a temporary folder) and
    timed in a fresh ``InferenceSession`` per call."""

    def __init__(self, cond: Conditions, export_dir: Path | None = None) -> None:
        self.cond, self.ort = cond, _import_ort()
        self.threads = int(cond.threads or torch.get_num_threads())
        self._tmp = None if export_dir else tempfile.TemporaryDirectory(prefix="ovo-latency-")
        self.dir = Path(export_dir or self._tmp.name)  # type: ignore[union-attr]
        self.dir.mkdir(parents=True, exist_ok=True)

    def export(self, key: str, module: Callable[[], nn.Module], x: torch.Tensor) -> Path:
        """``module()`` as ONNX (written once per key)."""
        path = self.dir / f"{key}.onnx"
        if not path.is_file():
            formats.write_onnx(formats.export_program(module().eval(), x), x, path)
        return path

    def session(self, path: Path) -> Any:
        ort, cond = self.ort, self.cond
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # no warnings about initializers and fallbacks
        providers: list[Any] = [cond.provider]
        if cond.device.type == "cuda":
            providers = [(cond.provider, {"device_id": cond.device.index or 0}), CPU]
        return ort.InferenceSession(str(path), opts, providers=providers)

    def runner(self, session: Any, x: torch.Tensor) -> Callable[[], Any]:
        """One inference call; on a GPU with input and output bound in device memory (no copies
        timed) and synchronised."""
        name = session.get_inputs()[0].name
        array = x.detach().cpu().numpy()
        if self.cond.device.type != "cuda":
            return lambda: session.run(None, {name: array})
        index = self.cond.device.index or 0
        binding = session.io_binding()
        binding.bind_ortvalue_input(
            name, self.ort.OrtValue.ortvalue_from_numpy(array, "cuda", index)
        )
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda", index)

        def run() -> None:
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        return run

    def time(self, key: str, module: Callable[[], nn.Module], x: torch.Tensor) -> float:
        session = self.session(self.export(key, module, x))
        return time_ms(self.runner(session, x), self.cond)

    def conditions(self) -> dict[str, Any]:
        return {
            "runtime": "onnxruntime",
            "provider": self.cond.provider,
            "onnxruntime": self.ort.__version__,
            "graph_optimization": "all",
            "inter_op_threads": 1,
        }

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def timer_for(cond: Conditions, export_dir: Path | None = None) -> Timer:
    """The timer of ``cond.runtime`` (ONNX files kept in ``export_dir`` when given)."""
    if cond.runtime == "onnxruntime":
        return OrtTimer(cond, export_dir)
    if cond.runtime != "torch":
        raise ConfigError(f"runtime={cond.runtime}: use one of {', '.join(RUNTIMES)}")
    return TorchTimer(cond)
