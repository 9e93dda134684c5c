"""What the trainers share: mixed precision where it pays, the learning-rate schedule,
and what a checkpoint records of the machine."""

import itertools

import pytest
import torch

from pipeline.core.errors import VidgraphError
from pipeline.kit import training
from pipeline.kit.training import autocast, mixed_precision, run_facts, schedule

CPU = torch.device("cpu")


def test_cpu_bfloat16_only_when_asked_and_native(monkeypatch):
    monkeypatch.setattr(training, "native_bf16", lambda: True)
    assert mixed_precision(CPU, cpu=True) and not mixed_precision(CPU)
    with autocast(CPU, cpu=True):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(CPU):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert run_facts(CPU, cpu_mixed=True)["precision"] == "bfloat16 mixed"
    monkeypatch.setattr(training, "native_bf16", lambda: False)
    assert not mixed_precision(CPU, cpu=True)
    with autocast(CPU, cpu=True):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert run_facts(CPU, cpu_mixed=True)["precision"] == "float32"


def rates_of(kind: str, total: int = 100, warmup: int = 10) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = schedule(optimizer, total_steps=total, warmup_steps=warmup, kind=kind)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_schedule_warms_up_then_decays_to_zero():
    rates = rates_of("cosine")
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(rates[9:]))
    assert rates[-1] < 0.01


def test_step_schedule_drops_tenfold_at_half_and_three_quarters_after_warm_up():
    rates = rates_of("step")
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    # 90 steps after the warm-up: halfway at step 55, three quarters at 77.5
    assert rates[54] == pytest.approx(1.0) and rates[55] == pytest.approx(0.1)
    assert rates[77] == pytest.approx(0.1) and rates[78] == pytest.approx(0.01)
    assert rates[-1] == pytest.approx(0.01)


def test_constant_schedule_keeps_the_rate_and_unknown_kinds_are_refused():
    rates = rates_of("constant")
    assert rates[0] == pytest.approx(0.1) and set(rates[9:]) == {1.0}
    with pytest.raises(VidgraphError, match="schedule 'linear'"):
        rates_of("linear")


def test_a_signal_makes_a_run_due_once_and_the_handlers_come_back(tmp_path):
    """SIGTERM (as a scheduler sends) inside ``stopping_on_signals`` ends the run at its
    next step boundary, with the shell's status for it; outside, signals are handled as
    before."""
    import argparse
    import os
    import signal

    from pipeline.kit.training import Resumable

    args = argparse.Namespace(state=None, time_budget=None, chunk=None, resume=None)
    run = Resumable(args, tmp_path / "out.pt")
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with run.stopping_on_signals():
        assert not run.due()
        os.kill(os.getpid(), signal.SIGTERM)
        assert run.due() and run.exit_status() == 128 + signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) == before[0]  # a second one: as before
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
