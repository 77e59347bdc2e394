"""Student training and evaluation (imports torch/transformers; nothing else does)."""
