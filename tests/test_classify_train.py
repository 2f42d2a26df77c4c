"""Trainer, classification evaluator, executor and the baseline metrics (hand-computed cases)."""

import math

import numpy as np
import pytest
import torch

from nas_core.baselines import (
    ranking_study,
    relative_improvement,
    sample_genotypes,
    samples_for_budget,
    schedule_candidates,
    spearman,
    summarize_random,
)
from nas_core.classify.datasets import load_dataset
from nas_core.classify.evaluator import ClassificationEvaluator, TrialJob, create_classifier_space, run_trial
from nas_core.errors import NasError
from nas_core.evaluator import TrialResult, trial_seed
from nas_core.executor import create_executor
from nas_core.genotype import Genotype
from nas_core.settings import SearchSettings
from nas_core.train import TrainConfig, cpu_threads, seed_everything, train_classifier


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(autouse=True)
def _one_thread():
    with cpu_threads("cpu"):
        yield


@pytest.mark.parametrize("reference", [False, True])
def test_cosine_schedule_after_epoch_and_reference(digits, reference):
    space = create_classifier_space(digits)
    seed_everything(0)
    epochs = 4
    config = TrainConfig(epochs=epochs, batch_size=256, reference_schedule=reference)
    result = train_classifier(space.build(Genotype.uniform(3, 4)), digits, config, seed=0, device="cpu",
                              eval_splits=("val",))
    # The reference steps first: its first epoch already decays and its last runs at lr 0; ours starts at
    # the base lr and its last epoch still learns.
    t = np.arange(epochs) + (1 if reference else 0)
    np.testing.assert_allclose(result.lrs, 0.5 * 0.025 * (1 + np.cos(np.pi * t / epochs)), rtol=0, atol=1e-12)
    assert (result.lrs[-1] == pytest.approx(0.0, abs=1e-12)) == reference


def test_trainer_learns_digits_above_chance(digits):
    space = create_classifier_space(digits)
    seed_everything(0)
    model = space.build(Genotype.uniform(3, 8))
    result = train_classifier(model, digits, TrainConfig(epochs=4), seed=0, device="cpu")
    assert set(result.accuracies) == {"val", "test"} and len(result.accuracies["test"]) == 4
    assert result.best("val") > 50 and result.last("test") > 50  # chance is 10%
    assert result.train_losses[-1] < result.train_losses[0]


def test_training_resumes_from_checkpoint_to_the_same_result(digits, tmp_path):
    space = create_classifier_space(digits)
    config = TrainConfig(epochs=3)

    def fresh():
        seed_everything(5)
        return space.build(Genotype.uniform(2, 4))

    straight = train_classifier(fresh(), digits, config, seed=5, device="cpu")

    class Killed(Exception):
        pass

    def kill_after_two(epoch, _):
        if epoch == 1:
            raise Killed

    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(Killed):
        train_classifier(fresh(), digits, config, seed=5, device="cpu", checkpoint=ckpt, on_epoch=kill_after_two)
    resumed = train_classifier(fresh(), digits, config, seed=5, device="cpu", checkpoint=ckpt)
    assert resumed.accuracies == straight.accuracies
    with pytest.raises(NasError, match="same training settings"):
        train_classifier(fresh(), digits, TrainConfig(epochs=5), seed=5, device="cpu", checkpoint=ckpt)


def test_evaluator_score_seed_and_determinism(digits):
    evaluator = ClassificationEvaluator(digits, device="cpu", run_seed=3)
    genotype = Genotype.uniform(2, 4)
    first = evaluator.evaluate(genotype, 2)
    again = evaluator.evaluate(genotype, 2)
    assert first.accuracy == again.accuracy and first.epoch_accuracies == again.epoch_accuracies
    assert first.accuracy == max(first.epoch_accuracies) and len(first.epoch_accuracies) == 2
    assert first.seed == trial_seed(3, genotype, 2)
    assert first.params == evaluator.space.count_params(genotype)
    assert first.params == sum(p.numel() for p in evaluator.space.build(genotype).parameters())
    assert first.seconds > 0 and 0 <= first.extra["test_accuracy"] <= 100
    ranked_on_test = ClassificationEvaluator(load_dataset("digits", rank_on="test"), device="cpu")
    assert ranked_on_test.evaluate(genotype, 1).extra["rank_on"] == "test"


def test_inprocess_executor_keeps_order_and_reports():
    seen = []
    executor = create_executor("inprocess", on_result=lambda i, r: seen.append((i, r)))
    assert executor.map(lambda x: x * x, [3, 1, 2]) == [9, 1, 4]
    assert seen == [(0, 9), (1, 1), (2, 4)]
    with pytest.raises(NasError, match="unknown executor"):
        create_executor("slurm")


def test_run_trial_job_through_executor():
    job = TrialJob(dataset="digits", genotype=Genotype.uniform(2, 4).to_dict(), epochs=1, device="cpu")
    (result,) = create_executor("inprocess").map(run_trial, [job])
    assert isinstance(result, TrialResult) and result.seed == trial_seed(0, Genotype.uniform(2, 4), 1)


def test_ray_executor_local_cluster():
    ray = pytest.importorskip("ray")
    executor = create_executor("ray", local_cpus=2, num_gpus=0)
    try:
        assert executor.map(math.sqrt, [4.0, 9.0]) == [2.0, 3.0]
    finally:
        ray.shutdown()


def test_relative_improvement_by_hand():
    # Yang et al. (ICLR 2020): RI = 100 (acc_found - mean_random) / mean_random
    assert relative_improvement(95.0, [90.0, 92.0, 94.0]) == pytest.approx(100 * 3 / 92)
    assert relative_improvement(88.0, [90.0, 90.0]) == pytest.approx(-100 * 2 / 90)
    summary = summarize_random(95.0, [90.0, 92.0, 94.0])
    assert summary["random_mean"] == pytest.approx(92.0) and summary["random_best"] == 94.0
    assert summary["random_std"] == pytest.approx(math.sqrt(8 / 3))
    with pytest.raises(NasError):
        relative_improvement(95.0, [])


def test_random_budget_and_sampling():
    assert samples_for_budget("trials", trials=14, epochs_total=27, epochs_per_sample=3) == 14
    assert samples_for_budget("epochs", trials=14, epochs_total=27, epochs_per_sample=3) == 9
    settings = SearchSettings(d_min=2, d_max=5, w_min=4, w_max=9, w_res=2)
    genotypes = sample_genotypes(settings, 50, seed=1)
    assert genotypes == sample_genotypes(settings, 50, seed=1)
    assert {g.width for g in genotypes} <= {9, 7, 5} and {g.depth for g in genotypes} == {2, 3, 4, 5}
    assert {op for g in genotypes for op in g.ops} == {"sep", "conv"}


def test_schedule_candidates_follow_the_epoch_counter():
    settings = SearchSettings(e_min=10, d_min=10, w_max=64, w_res=2)
    got = [(g.depth, g.width, e) for g, e in schedule_candidates(settings, 3, 2)]
    assert got == [(10, 64, 10), (11, 64, 11), (12, 64, 12), (12, 62, 14), (12, 60, 16)]


def test_spearman_and_ranking_study_by_hand():
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    table = {  # (depth, epochs) -> score: dynamic agrees with the reference, static reverses it
        (2, 1): 10.0, (3, 2): 20.0, (4, 3): 30.0,
        (2, 5): 30.0, (3, 5): 20.0, (4, 5): 10.0,
        (2, 9): 1.0, (3, 9): 2.0, (4, 9): 3.0,
    }

    def run(pairs):
        return [TrialResult(accuracy=table[(g.depth, e)], params=0) for g, e in pairs]

    candidates = [(Genotype.uniform(d, 8), e) for d, e in ((2, 1), (3, 2), (4, 3))]
    report = ranking_study(run, candidates, static_epochs=5, reference_epochs=9)
    assert report["spearman_dynamic"] == pytest.approx(1.0)
    assert report["spearman_static"] == pytest.approx(-1.0)
    assert torch.tensor([c["reference"] for c in report["candidates"]]).tolist() == [1.0, 2.0, 3.0]
