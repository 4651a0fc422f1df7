"""scripts/store_bench.py, quoted in the benchmark analysis, still runs and measures."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "store_bench.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("store_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_it_times_the_writer_per_commit_after_a_warm_up_round() -> None:
    rounds = await load_script().measure(batch_size=10, commits=5, rounds=2)
    assert len(rounds) == 2
    for cpu, wall in rounds:
        # Each commit appends ten messages and fsyncs: never free, never minutes.
        assert 0 < cpu < 5 and 0 < wall < 5
