"""The garbage-collector tuning of a serving process (`tune_gc`, `_FreezeSurvivors`)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from quality_gates.gateway import _app as gateway_app
from quality_gates.gateway._app import GC_GEN0_THRESHOLD, _FreezeSurvivors, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    callbacks = list(gc.callbacks)
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    gc.callbacks[:] = callbacks


def test_a_slow_full_collection_freezes_its_survivors(restored_gc: None) -> None:
    gc.unfreeze()
    freeze = _FreezeSurvivors(slow_ms=0.0)
    freeze("start", {"generation": 2})
    freeze("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
    assert freeze.freezes == 1
    assert gc.get_freeze_count() > 0


def test_young_collections_and_quick_full_ones_freeze_nothing(restored_gc: None) -> None:
    gc.unfreeze()
    freeze = _FreezeSurvivors(slow_ms=60_000.0)
    for generation in (0, 1, 2):
        freeze("start", {"generation": generation})
        freeze("stop", {"generation": generation, "collected": 0, "uncollectable": 0})
    assert freeze.freezes == 0
    assert gc.get_freeze_count() == 0


def test_tuning_freezes_start_up_raises_the_young_threshold_and_hooks_once(
    restored_gc: None,
) -> None:
    gc.unfreeze()
    tune_gc()
    tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD
    assert sum(isinstance(cb, _FreezeSurvivors) for cb in gc.callbacks) == 1


def test_a_real_slow_collection_runs_the_hook(restored_gc: None) -> None:
    gc.unfreeze()
    hook = _FreezeSurvivors(slow_ms=0.0)
    gc.callbacks.append(hook)
    gc.collect()
    assert hook.freezes == 1
    assert gc.get_freeze_count() > 0


async def test_what_start_up_loads_after_tuning_is_frozen_once_it_settles(
    restored_gc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_app, "GC_SETTLE_S", 0.01)
    gc.unfreeze()
    tune_gc()
    frozen = gc.get_freeze_count()
    late = [[] for _ in range(1000)]  # loaded after the tuning: a module, a model
    assert gc.get_freeze_count() == frozen
    await asyncio.sleep(0.1)
    assert gc.get_freeze_count() >= frozen + len(late)
