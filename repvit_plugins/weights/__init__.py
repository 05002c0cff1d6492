"""Weights: the model zoo and its download cache (:mod:`.zoo`), the Hugging Face hub probe (:mod:`.hub`), safe
checkpoint reading (:mod:`.checkpoint_io`) and the check that everything a command needs is here (:mod:`.preflight`).

Nothing else in the project downloads or reads a checkpoint file by itself.
"""
