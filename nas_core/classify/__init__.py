"""Image classification: the paper's FCN search space (network.py, the "fcn" space, registered when imported and
found through its entry point), the datasets it is benchmarked on, its evaluator, and the search and study tasks
of nas-search and nas-study. Importing the package imports none of them: a command's ``--help`` reads only
settings.py."""
