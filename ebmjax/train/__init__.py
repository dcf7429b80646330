"""Training: train state and step factories (``state``, ``mdsm``), checkpoints, and the loop."""
