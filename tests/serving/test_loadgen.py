"""The traffic generator's drift schedule (what the demo's drift alert follows)."""

from types import SimpleNamespace

from serving.loadgen import LoadGenerator


def drifting(elapsed, **args):
    options = {"drift_after": 90, "drift_for": 120, "drift_every": 0, **args}
    return LoadGenerator.drifting(SimpleNamespace(args=SimpleNamespace(**options)), elapsed)


def test_the_drift_phase_runs_once_by_default():
    assert [drifting(t) for t in (0, 89, 90, 209, 210, 700)] == [False, False, True, True, False, False]
    assert not drifting(1000, drift_after=None)


def test_the_drift_phase_repeats_when_asked():
    assert [drifting(t, drift_every=600) for t in (89, 90, 209, 210, 689, 690, 809, 810)] == [
        False,
        True,
        True,
        False,
        False,
        True,
        True,
        False,
    ]
