"""Face search: the evaluator that trains and scores trials, facerec-search's task (task.py) and options
(settings.py), the ranking study's job and rankings (study.py, rankings.py) and the cost estimate (ARCHITECTURE §2)."""
