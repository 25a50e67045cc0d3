"""The timeline's idle release: a quiet market releases what is held, a busy worker does not."""
import time

from flows import live
from flows.pipeline import PipelineConfig, _TimelineLogic
from tests.conftest import events


def released(logic: _TimelineLogic) -> int:
    out, _ = logic.on_notify()
    return sum(t.num_rows for tag, (_, t) in out if tag == "ordered")


def test_idle_release_waits_until_every_input_has_come_back_empty():
    live.forget_polls()
    logic = _TimelineLogic(PipelineConfig(max_lateness_ms=60_000, idle_release_ms=30), None)
    live.polled("kafka:0-t", True)  # the source delivered ...
    logic.on_batch([events(ts=[1.0, 2.0], kind=["trade"] * 2, venue=["X"] * 2, instrument=["I"] * 2)])
    assert logic.tl.held == 2  # (a minute of lateness: nothing is released by the watermark)
    time.sleep(0.05)  # ... then the worker was busy past the idle time, and has not polled it since
    assert released(logic) == 0 and logic.notify_at() > logic.last_input
    live.polled("kafka:0-t", False)  # polled: nothing there, the market is quiet
    assert released(logic) == 2
    live.forget_polls()


def test_without_live_inputs_in_the_process_idle_is_wall_time_alone():
    live.forget_polls()  # e.g. a cluster process whose partitions are all in other processes
    logic = _TimelineLogic(PipelineConfig(max_lateness_ms=60_000, idle_release_ms=30), None)
    logic.on_batch([events(ts=[1.0], kind=["trade"], venue=["X"], instrument=["I"])])
    assert released(logic) == 0  # not idle yet
    time.sleep(0.05)
    assert released(logic) == 1
