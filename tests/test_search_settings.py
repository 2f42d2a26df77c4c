"""Search settings as data: the search and study commands' flags come from dataclass fields in dependency-free
modules (their --help imports no torch), and the ranking-study driver both studies run on trains each training
once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nas_core.evaluator import TrialResult
from nas_core.genotype import Genotype
from nas_core.rank_fidelity import RankingStudy, StudyPlan

REPO = Path(__file__).resolve().parents[1]
# facerec/__init__.py registers the facenas_* timm models on import: what it costs is its own matter; here a bare
# package stands in for it, so that only the command modules' own imports are measured.
_BARE_FACEREC = ("import sys, types; facerec = types.ModuleType('facerec'); facerec.__path__ = ['facerec']; "
                 "sys.modules['facerec'] = facerec; ")


@pytest.mark.parametrize("module", ["nas_core.cli.search", "nas_core.cli.study", "facerec.cli.search",
                                    "facerec.cli.study"])
def test_help_imports_no_torch(module):
    code = (_BARE_FACEREC + f"import importlib; cli = importlib.import_module({module!r}); "
            "cli.build_parser().format_help(); "
            "heavy = sorted(m for m in ('torch', 'numpy', 'timm', 'cv2') if m in sys.modules); print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_every_search_option_has_help():
    from facerec.cli.search import build_parser as face_parser
    from nas_core.cli.search import build_parser

    for parser in (build_parser(), face_parser()):
        for action in parser._actions:
            assert action.help, action.option_strings


def test_the_dataset_names_in_the_help_are_the_registered_ones():
    from nas_core.classify.datasets import list_datasets
    from nas_core.classify.settings import DATASET_NAMES

    assert sorted(DATASET_NAMES) == sorted(list_datasets())


def test_a_ranking_study_trains_each_training_once_and_continues_where_it_stopped(tmp_path):
    a, b = Genotype.uniform(2, 8), Genotype.uniform(3, 8)
    # a's dynamic trial (1 epoch) is its static one; b's (3 epochs) is its full training at run seed 5.
    plan = StudyPlan([(a, 1), (b, 3)], static=[1], reference=3, seeds=2, seed=5)
    assert [(s, g.key(), e) for s, g, e in plan.trainings()] == [
        (5, a.key(), 3), (6, a.key(), 3), (5, a.key(), 1), (5, b.key(), 3), (6, b.key(), 3), (5, b.key(), 1)]
    trained = []

    def train(todo, on_result):
        for i, (seed, genotype, epochs) in enumerate(todo):
            trained.append((seed, genotype.key(), epochs))
            on_result(i, TrialResult(accuracy=float(10 * genotype.depth + epochs + seed), params=1))

    first = RankingStudy(tmp_path, plan)
    first.run(train, limit=4)
    assert first.progress() == (4, 6) and first.trained == 4
    second = RankingStudy(tmp_path, plan)  # a rerun reads the journals
    second.run(train)
    assert second.trained == 2 and second.progress() == (6, 6)
    assert trained == [(s, g.key(), e) for s, g, e in plan.trainings()]  # each once, in plan order
    table = second.table()
    assert [r.accuracy for r in table["reference"][b.key()]] == [38.0, 39.0]
    assert table["dynamic"][b.key()].accuracy == 38.0 and table["static"][a.key()][1].accuracy == 26.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal-seed6.jsonl", "journal.jsonl"]
    second.run(train)
    assert second.trained == 2 and len(trained) == 6  # nothing left to train
