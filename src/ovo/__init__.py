"""ovo."""

import ovo.threads  # noqa: F401  # isort: skip  (first: OpenMP defaults before torch loads)
import ovo.export.hub  # noqa: F401  (registers `ovo_vit` with timm: timm.create_model("local-dir:..."))
