"""Baking models into ``SDWORKER_MODELS_DIR``: the tiny test model, hub ids, folders, checkpoints."""
