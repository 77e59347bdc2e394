"""Applications built on the engine: the prompt optimizer (OPRO) and the cost report."""
