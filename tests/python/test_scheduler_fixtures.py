"""The committed scheduler fixtures (tests/data/scheduler) still equal a fresh diffusers run.

`tests/scheduler_parity.rs` checks the Rust schedulers against these files;
this suite checks the files against the installed diffusers, so a diffusers
(or torch) upgrade that changes the sampling shows up here rather than as a
silent drift. The files must be byte-identical: the generator is
deterministic (seeded numpy, single-threaded torch on the CPU).

To refresh them after an intended change:
    cd models/train && python -m fchm_train.scheduler_ref --out ../../tests/data/scheduler
"""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models" / "train"))
COMMITTED = ROOT / "tests" / "data" / "scheduler"
REFRESH = "cd models/train && python -m fchm_train.scheduler_ref --out ../../tests/data/scheduler"

try:
    import diffusers  # noqa: F401
except ImportError as e:  # CI installs it; a bare checkout may not have it
    pytest.skip(f"diffusers is not importable ({e}); the fixtures cannot be regenerated", allow_module_level=True)

from fchm_train import scheduler_ref  # noqa: E402


def first_difference(a, b, path="$"):
    """Where two parsed fixtures first differ, for a readable failure."""
    if type(a) is not type(b):
        return f"{path}: {a!r} vs {b!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}.{k}: only in {'committed' if k in a else 'fresh'}"
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} vs {b!r}"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scheduler")
    scheduler_ref.write_all(out)
    return out


def test_the_same_cases_are_committed(fresh):
    committed = sorted(p.name for p in COMMITTED.glob("*.json"))
    assert committed, f"no fixtures in {COMMITTED}: {REFRESH}"
    assert committed == sorted(p.name for p in fresh.glob("*.json")), REFRESH


@pytest.mark.parametrize("name", sorted(scheduler_ref.CASES))
def test_fixture_equals_a_fresh_run(fresh, name):
    committed = COMMITTED / f"{name}.json"
    new = fresh / f"{name}.json"
    assert committed.exists(), f"{committed} is missing: {REFRESH}"
    if committed.read_bytes() != new.read_bytes():
        old, cur = json.loads(committed.read_text()), json.loads(new.read_text())
        where = first_difference(old, cur) or "formatting only"
        pytest.fail(
            f"{name}: committed fixture differs from diffusers {diffusers.__version__} "
            f"(committed vs fresh) at {where}. If the change is intended: {REFRESH}"
        )


def test_fixtures_are_small():
    for path in COMMITTED.glob("*.json"):
        assert path.stat().st_size < 100_000, path
