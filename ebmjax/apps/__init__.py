"""Layer 4, the applications: what reads a config, picks a mode and writes a workdir. Nothing below
this layer imports it.

- :mod:`ebmjax.apps.main`: the command line, ``python -m ebmjax.main`` (train, sample, inpaint,
  denoise, translate, eval, compose), dispatching to the modules below and to the training loop.
- :mod:`ebmjax.apps.sample`: ``--mode sample``, the workdir writer around the chain engine (shards,
  resuming, pictures, summary).
- :mod:`ebmjax.apps.restore` and :mod:`ebmjax.apps.translate`: ``--mode inpaint|denoise|translate``
  over the pure functions of :mod:`ebmjax.restoration`.
- :mod:`ebmjax.apps.evaluate`: ``--mode eval``, the evaluation report and the checkpoint scan.
- :mod:`ebmjax.apps.compose`: ``--mode compose``, samples of a product of trained models.
- :mod:`ebmjax.apps.compare`: ``python -m ebmjax.compare``, several configs into one table.
- :mod:`ebmjax.apps.bench` (with its PyTorch twin, :mod:`ebmjax.apps.bench_torch`):
  ``python -m ebmjax.bench``.

``ebmjax/main.py``, ``ebmjax/compare.py`` and ``ebmjax/bench.py`` are the commands' entry points and
hold nothing else.
"""
