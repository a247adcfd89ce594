"""ovo's benchmark, one module per measure (``bench/run.py`` is the entry point).

- :mod:`.fixture`: what every measure of one setting shares, built once (supernet, static timm
  models of the bench archs, inputs, autocast context) and the training steps built on it.
- :mod:`.timing`: paired (interleaved) medians; :mod:`.report`: the rows, table and JSON.
- :mod:`.costs`, :mod:`.speed`, :mod:`.memory`, :mod:`.proxy`, :mod:`.compile`, :mod:`.anchor`,
  :mod:`.ddp`, :mod:`.profile`: the measures.
- :mod:`.child`: a part of the bench run in a fresh Python process (memory, DDP).
"""

MEASURES = ("speed", "memory", "compile", "anchor", "ddp", "proxy")
# the speed measure's parts, each selectable alone (``--measures fwd_bwd ovo_step``)
SPEED_PARTS = ("fwd_bwd", "inference", "ovo_step", "search")
