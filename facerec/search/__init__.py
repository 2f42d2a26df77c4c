"""Face search: the evaluator that trains and scores trials, the ranking study's rankings and the cost estimate (ARCHITECTURE §2)."""
