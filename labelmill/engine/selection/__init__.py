"""Which examples get a rationale: one small object per policy (fixed rate, budget plan, uncertainty).

Imports `engine.money` and `engine.tasks`, nothing above it.
"""

from labelmill.engine.selection._policies import BudgetPlan, FixedRate, Selection, Uncertainty
from labelmill.engine.selection._score import selection_score, wants_rationale

__all__ = ["BudgetPlan", "FixedRate", "Selection", "Uncertainty", "selection_score", "wants_rationale"]
