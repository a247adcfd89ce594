"""ovo."""

import ovo.export.hub  # noqa: F401  (registers `ovo_vit` with timm: timm.create_model("local-dir:..."))
