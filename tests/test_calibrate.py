"""Time estimates: the probe-based run estimate, parallel wall time, and the refinement as steps finish,
checked on recorded timings and on tiny real probes."""

from __future__ import annotations

import pytest
import torch

from clusters import gaussian_clusters
from mlplab.mnist.config import resolve_config
from mlplab.pipeline.calibrate import Probe, Refiner, parallel_wall, probe_run, run_estimate


def test_run_estimate_from_a_recorded_probe():
    # Recorded on the 2-core development machine (batch 64, [512, 256, 128], one thread): 2.6 ms per batch,
    # 0.11 s per evaluation. 100 epochs of 938 batches:
    probe = Probe(step_s=0.0026, eval_s=0.11, diverged=False)
    assert run_estimate(probe, 100, 60000, 64, 3.0) == pytest.approx(3.0 + 100 * (938 * 0.0026 + 0.11))
    assert run_estimate(Probe(0.0026, 0.11, True), 100, 60000, 64, 3.0) == pytest.approx(3.11)
    # batch 6 has ten times the batches of batch 64 per epoch
    small = run_estimate(Probe(0.0003, 0.11, False), 1, 60000, 6, 0.0)
    assert small == pytest.approx(10000 * 0.0003 + 0.11)


def test_parallel_wall_is_bounded_by_the_longest_run_and_the_average():
    costs = [600.0, 590.0, 580.0, 40.0, 40.0, 30.0, 580.0, 5.0]
    wall = parallel_wall(costs, 2)
    assert max(costs) <= wall <= sum(costs) / 2 + max(costs)
    assert parallel_wall(costs, 1) == pytest.approx(sum(costs))
    assert parallel_wall(costs, 100) == max(costs)


def test_refiner_on_recorded_step_times():
    """MNIST runs that took half their probed estimate make the MNIST runs left half as long; a section that
    beat its constant changes nothing for them; before any step, the estimates stand."""
    r = Refiner()
    left = [("mnist", 900.0), ("mnist", 60.0), ("report", 8.0)]
    assert r.left(left) == pytest.approx(968.0)
    r.finished("section1", estimate_s=8.0, actual_s=2.0)  # a short step 4x faster than its constant
    assert r.left(left) == pytest.approx(968.0)
    r.finished("mnist", estimate_s=300.0, actual_s=150.0)
    r.finished("mnist", estimate_s=100.0, actual_s=50.0)
    assert r.ratio("mnist") == pytest.approx(0.5) and r.ratio("report") == 1.0
    assert r.left(left) == pytest.approx(0.5 * 960.0 + 8.0)
    r.finished("mnist", estimate_s=0.0, actual_s=3.0)  # an unestimated step does not skew the ratio
    assert r.ratio("mnist") == pytest.approx(0.5)


@pytest.mark.usefixtures("restore_threads")
def test_probe_times_real_batches_and_sees_divergence():
    train = gaussian_clusters(1024, 784, seed=0, centre_seed=1)
    test = gaussian_clusters(256, 784, seed=2, centre_seed=1)
    quiet = resolve_config(overrides=["model.hidden_sizes=[16]", "training.batch_size=32"])
    state = torch.get_rng_state()
    probe = probe_run(quiet, train, test, threads=1, budget_s=0.05)
    assert not probe.diverged and probe.step_s > 0 and probe.eval_s > 0
    assert torch.equal(torch.get_rng_state(), state), "the probe must leave the global RNG as it found it"
    wild = resolve_config(overrides=["training.learning_rate=1e6", "training.batch_size=32"])
    assert probe_run(wild, train, test, threads=1, budget_s=0.05).diverged


@pytest.mark.usefixtures("restore_threads")
def test_plan_estimates_mnist_runs_from_probes(monkeypatch, tmp_path):
    """With MNIST at hand, each pending run is estimated from its own probe: a run that diverges at once is
    estimated in seconds, and the parallel steps share the wall time of the batch they run in."""
    from mlplab.pipeline import steps
    from mlplab.pipeline.steps import Settings, build_steps

    train = gaussian_clusters(2048, 784, seed=0, centre_seed=1)
    test = gaussian_clusters(256, 784, seed=2, centre_seed=1)
    monkeypatch.setattr(steps, "_mnist_ready", lambda _d: True)
    monkeypatch.setattr("mlplab.mnist.data.load_mnist", lambda data_dir=None: (train, test))
    settings = Settings(profile="tiny", results_dir=tmp_path, report_dir=tmp_path / "r", jobs=1,
                        overrides={"experiments": ("baseline", "lr1"), "mnist_epochs": 3})
    plan = {s.name: s for s in build_steps(settings, lambda _m: None, lambda: steps.StepOutput())}
    base, lr1 = plan["mnist-baseline"].estimate_s, plan["mnist-lr1"].estimate_s
    overhead = steps.PROBED_OVERHEAD_S
    # lr = 1 diverges within its probe: one evaluation beyond the overhead, against three epochs of 32 batches
    # and three evaluations for the baseline
    assert 0 < lr1 - overhead < (base - overhead) / 2, (lr1, base)


def test_run_plan_refines_what_is_left_and_counts_a_batch_once(tmp_path):
    """The leader of side-by-side runs is judged against the batch's wall time; once it is done, the runs it
    trained (batched steps) no longer count as work left."""
    import time

    from mlplab.pipeline.plan import PlanState, Step, StepOutput, run_plan

    def sleep(seconds: float):
        def run() -> StepOutput:
            time.sleep(seconds)
            return StepOutput()
        return run

    steps = [Step("data", "instant, and estimated at 1 s", 1.0, sleep(0.0)),
             Step("mnist-leader", "batch", 0.01, sleep(0.2), tick_s=0.1, group="run"),
             Step("mnist-follower", "trained by the leader", 100.0, sleep(0.0), batched=True, group="run"),
             Step("mnist-last", "after", 1.0, sleep(0.0), group="run")]
    lines: list[str] = []
    run_plan(steps, PlanState(tmp_path), progress=False, log=lines.append)
    done = [line for line in lines if ": done in" in line]
    assert len(done) == 4
    # a step of another kind that beat its estimate leaves the runs' estimates as they are: 0.01 + 100 + 1 s
    assert "about 1 min 41 s left" in done[0], done[0]
    done = done[1:]
    # after the leader: about 2 x 1 s left (it took about twice its batch estimate), not 2 x 101 s
    import re

    for line in done[:2]:
        left = re.search(r"about (\d+) s left", line)
        assert left is not None and 1 <= int(left.group(1)) <= 9, done
    assert "left" not in done[2]
