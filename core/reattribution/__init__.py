"""Reattribution batches: settings changes and recalculation, in chunks with progress (ATT-51, ATT-54)."""
