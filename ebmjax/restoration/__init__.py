"""Restoration and translation with a trained energy: pure functions of ``(energy_fn, arrays, key)``
and their batched versions over a device mesh.

- :mod:`ebmjax.restoration.restore`: masks, corruption, PSNR, ``inpaint`` and ``denoise`` (MDSM
  paper Sec. 4.3; CF-EBM), ``inpaint_batches`` and ``denoise_batches``.
- :mod:`ebmjax.restoration.translate`: ``translate`` (CF-EBM's image-to-image translation: a chain
  of the target domain's energy started at the source image), ``translate_batches``, stroke-weight
  figures.

Layer 3. The CLI modes that write a workdir are :mod:`ebmjax.apps.restore` and
:mod:`ebmjax.apps.translate`.
"""

from ebmjax.restoration import restore, translate

__all__ = ["restore", "translate"]
