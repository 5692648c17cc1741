"""Data-driven fits: the training corpus from the database, storage, staleness and the fit job (ATT-23..ATT-31)."""
