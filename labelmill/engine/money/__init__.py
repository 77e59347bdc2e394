"""Money: prices, the ledger that keeps `spent + reserved <= budget`, the planner, the estimate.

Imports `engine.tasks` (the estimate renders prompts), nothing above it.
"""

from labelmill._exceptions import BudgetExhausted
from labelmill.engine.money._estimate import FEW_SHOT, Estimate, VariantTotals, estimate_corpus
from labelmill.engine.money._ledger import Ledger, Reservation
from labelmill.engine.money._prices import (
    Prices,
    cached_prompt_tokens,
    format_usd,
    price_table,
    resolve_prices,
    token_upper_bound,
)
from labelmill.engine.money._spending import (
    PRIOR_LABEL_COMPLETION,
    PRIOR_RATIONALE_COMPLETION,
    Commitment,
    Planner,
    Spending,
)
from labelmill.engine.money._summary import Money, VariantSpend

__all__ = [
    "FEW_SHOT",
    "PRIOR_LABEL_COMPLETION",
    "PRIOR_RATIONALE_COMPLETION",
    "BudgetExhausted",
    "Commitment",
    "Estimate",
    "Ledger",
    "Money",
    "Planner",
    "Prices",
    "Reservation",
    "Spending",
    "VariantSpend",
    "VariantTotals",
    "cached_prompt_tokens",
    "estimate_corpus",
    "format_usd",
    "price_table",
    "resolve_prices",
    "token_upper_bound",
]
