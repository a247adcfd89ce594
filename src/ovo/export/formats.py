"""Deployment files of an exported model: ``model.pt2`` (``torch.export``) and ``model.onnx``
(``torch.onnx.export(..., dynamo=True)``), each with a dynamic batch dimension and checked
against the timm model on a batch.

``model.pt2`` loads with torch alone (``torch.export.load(path).module()``); ``model.onnx``
with onnxruntime alone (input ``images``, output ``logits``). The legacy TorchScript ONNX
exporter is not used (deprecated in torch, and slated for removal).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ovo.atomic import atomic_path
from ovo.errors import ConfigError

FORMATS = ("safetensors", "pt2", "onnx")
# max |dlogit| allowed against the timm model, relative to the logit scale (max(|logit|, 1)):
# torch.export runs the same kernels (bit-identical in practice); ONNX Runtime fuses and
# reorders fp32 ops (~1e-6 seen on nano subnets)
TOLERANCE = {"pt2": 1e-5, "onnx": 1e-4}
MAX_BATCH = 4096  # the dynamic batch dimension's upper bound


def check_formats(formats: list[str], onnx: bool) -> list[str]:
    """The formats to write (``safetensors`` always, ``onnx`` added by ``onnx=true``), in
    :data:`FORMATS` order; an unknown one is a ConfigError."""
    wanted = {str(f).strip().lower() for f in formats}
    unknown = sorted(wanted - set(FORMATS))
    if unknown:
        raise ConfigError(
            f"format={unknown[0]} is not an export format: use any of {', '.join(FORMATS)} "
            f"(e.g. format=[safetensors,pt2,onnx])"
        )
    wanted |= {"safetensors"} | ({"onnx"} if onnx else set())
    if "onnx" in wanted:
        for package, why in (("onnx", "to write"), ("onnxscript", "to convert")):
            try:
                __import__(package)
            except ImportError:
                raise ConfigError(
                    f"format onnx needs the {package} package ({why} the graph): uv sync --extra "
                    "onnx (or pip install onnx onnxscript)"
                ) from None
    return [f for f in FORMATS if f in wanted]


@dataclass(frozen=True)
class Check:
    """A deployment file checked against the timm model on the verify batch plus one image (a
    batch size other than the one it was exported with)."""

    fmt: str
    path: Path
    max_abs_diff: float | None  # None: not checked (onnxruntime missing)
    same_top1: bool | None
    tolerance: float

    def line(self) -> str:
        name = f"{self.fmt}:".ljust(7)
        if self.max_abs_diff is None:
            return f"{name} {self.path.name} written (install onnxruntime to check it)"
        return (
            f"{name} {self.path.name} vs timm model: max |dlogit| = {self.max_abs_diff:.1e} "
            f"(tolerance {self.tolerance:.1e}), same top-1 {'yes' if self.same_top1 else 'NO'} OK"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.path.name,
            "max_abs_diff": self.max_abs_diff,
            "same_top1": self.same_top1,
            "tolerance": self.tolerance,
        }


def _compare(fmt: str, path: Path, got: torch.Tensor, expected: torch.Tensor) -> Check:
    diff = float((got - expected).abs().max())
    tol = TOLERANCE[fmt] * max(float(expected.abs().max()), 1.0)
    same_top1 = bool(torch.equal(got.argmax(-1), expected.argmax(-1)))
    if diff > tol or not same_top1:
        raise RuntimeError(
            f"{path.name}: logits differ from the timm model's by {diff:.3g} (tolerance {tol:.3g}"
            f", same top-1: {same_top1}): this is a bug in ovo or torch's exporter, please report it"
        )
    return Check(fmt, path, diff, same_top1, tol)


def other_batch(x: torch.Tensor, expected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The verify batch and its logits grown by one image: a file whose batch size was fixed at
    export fails on it (eval-mode logits are per image)."""
    return torch.cat([x, x[:1]]), torch.cat([expected, expected[:1]])


def _batch_dim() -> object:
    return torch.export.Dim("batch", min=1, max=MAX_BATCH)


def export_program(model: nn.Module, x: torch.Tensor) -> torch.export.ExportedProgram:
    """``model`` captured by ``torch.export`` with a dynamic batch dimension."""
    if x.shape[0] == 1:  # a batch of 1 would be specialised (torch.export's 0/1 rule)
        x = x.expand(2, *x.shape[1:])
    return torch.export.export(model.eval(), (x,), dynamic_shapes=({0: _batch_dim()},))


def write_pt2(program: torch.export.ExportedProgram, path: Path) -> None:
    buffer = io.BytesIO()  # torch wants a name ending in .pt2 or a buffer, not a temp name
    torch.export.save(program, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def check_pt2(path: Path, x: torch.Tensor, expected: torch.Tensor) -> Check:
    """Load ``model.pt2`` back as a user would (torch alone) and compare."""
    loaded = torch.export.load(str(path)).module()
    x, expected = other_batch(x, expected)
    with torch.no_grad():
        got = loaded(x)
    return _compare("pt2", path, got, expected)


def write_onnx(program: torch.export.ExportedProgram, x: torch.Tensor, path: Path) -> None:
    """``model.onnx`` through the dynamo exporter, from the same ``torch.export`` program."""
    if x.shape[0] == 1:
        x = x.expand(2, *x.shape[1:])
    for name in ("onnx_ir", "onnxscript"):  # their passes log each rewrite at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter's progress and deprecation chatter
        onnx_program = torch.onnx.export(
            program,
            (x,),
            dynamo=True,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: _batch_dim()},),
            verbose=False,
        )
    assert onnx_program is not None
    with atomic_path(path) as tmp:
        onnx_program.save(str(tmp))


def check_onnx(path: Path, x: torch.Tensor, expected: torch.Tensor) -> Check:
    """Run ``model.onnx`` in onnxruntime (CPU) and compare; unchecked without onnxruntime."""
    try:
        import onnxruntime as ort  # optional (the onnx extra): unchecked without it
    except ImportError:
        return Check("onnx", path, None, None, TOLERANCE["onnx"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, expected = other_batch(x, expected)
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    return _compare("onnx", path, got, expected)
