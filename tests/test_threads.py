"""Engine threads for small machines (issue 19, item 4): the free cores, shared."""

from __future__ import annotations

from tandem.workers.backends._threads import ThreadBudget, available_cores


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.cpu = 0.0


def _budget(load: float, cores: int = 2, clock: Clock | None = None) -> ThreadBudget:
    c = clock or Clock()
    return ThreadBudget(cores, load=lambda: load, cpu=lambda: c.cpu, clock=lambda: c.now)


def test_an_idle_machine_gets_every_core() -> None:
    b = _budget(load=0.1)
    with b.running():
        assert b.share() == 2


def test_a_core_another_process_keeps_busy_is_not_used() -> None:
    for load in (0.8, 1.0, 1.4, 3.0, 9.0):
        b = _budget(load=load)
        with b.running():
            assert b.share() == 1, load


def test_two_models_at_once_split_the_free_cores() -> None:
    b = _budget(load=0.0, cores=4)
    with b.running():
        assert b.share() == 4
        with b.running():
            assert b.share() == 2  # each of the two calls
    with b.running(), b.running(), b.running():
        assert b.share() == 1  # never below one thread


def test_this_process_own_work_is_not_counted_as_someone_elses() -> None:
    clock = Clock()
    b = _budget(load=2.0, clock=clock)  # the load is our own two threads
    for _ in range(60):  # a minute of this process using two cores
        clock.now += 5.0
        clock.cpu += 10.0
        b.others()
    with b.running():
        assert b.share() == 2


def test_available_cores_is_the_affinity_mask() -> None:
    assert available_cores() >= 1
