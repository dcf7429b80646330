"""ebmjax: energy-based models of images in JAX.

Layer 1 (pure functions of ``energy_fn`` and arrays): ``ebmjax.losses``, ``ebmjax.samplers``,
``ebmjax.schedules``. Layer 2: ``ebmjax.models``, ``ebmjax.data``. Layer 3: ``ebmjax.train``.
Command line: ``python -m ebmjax.main``.
"""

__version__ = "0.1.0"
