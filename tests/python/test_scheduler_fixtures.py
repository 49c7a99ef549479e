"""The committed scheduler fixtures (tests/data/scheduler) still equal a fresh diffusers run.

`tests/scheduler_parity.rs` checks the Rust schedulers against these files;
this suite checks the files against the installed diffusers, so a diffusers
(or torch) upgrade that changes the sampling shows up here rather than as a
silent drift. Everything must be equal except the samples diffusers computes
(`prev_sample`): torch's float32 kernels round differently across versions and
CPUs (torch 2.15 on an x86 machine moved them by up to 3e-6 of max(1, |x|)
against the committed files), so those are compared with the Rust parity
test's tolerance, 1e-5 of max(1, |x|), which a real change to the update
still exceeds (tests/scheduler_parity.rs).

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


SAMPLE_TOLERANCE = 1e-5  # on |committed - fresh| / max(1, |committed|), as in tests/scheduler_parity.rs


def first_difference(a, b, path="$"):
    """Where two parsed fixtures first differ, for a readable failure."""
    if path.endswith(".prev_sample") and isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if not abs(x - y) <= SAMPLE_TOLERANCE * max(1.0, abs(x)):
                return f"{path}[{i}]: {x!r} vs {y!r} (beyond {SAMPLE_TOLERANCE:g} of max(1, |x|))"
        return None
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
    old, cur = json.loads(committed.read_text()), json.loads(new.read_text())
    where = first_difference(old, cur)
    if where:
        pytest.fail(
            f"{name}: committed fixture differs from diffusers {diffusers.__version__} "
            f"(committed vs fresh) at {where}. If the change is intended: {REFRESH}"
        )


def test_fixtures_are_small():
    for path in COMMITTED.glob("*.json"):
        assert path.stat().st_size < 100_000, path
