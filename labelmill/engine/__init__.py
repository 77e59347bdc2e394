"""The async annotation pipeline. Never imports torch, transformers or the trainer."""
