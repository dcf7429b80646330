import numpy as np
import pytest

from ebmjax import schedules
from ebmjax.errors import ConfigError


def test_exp_schedule_matches_paper():
    t = np.asarray(schedules.annealing_schedule("exp"))
    assert t.shape == (2700,)
    np.testing.assert_allclose(t[:500], 100.0)
    np.testing.assert_allclose(t[500], 100.0)
    # k = 1999 of 2000: 100 * exp(-1999 ln 100 / 2000) = 100^(1/2000)
    np.testing.assert_allclose(t[2499], 100.0 ** (1 / 2000), rtol=1e-5)
    np.testing.assert_allclose(t[2500], 1.0)
    assert t[-1] == 0.0
    assert np.all(np.diff(t) <= 1e-6)
    # Exponential: equal ratios between successive annealing steps.
    r = t[501:2500] / t[500:2499]
    np.testing.assert_allclose(r, 100.0 ** (-1 / 2000), rtol=1e-5)


def test_lin_schedule():
    t = np.asarray(schedules.annealing_schedule("lin", t_max=50.0, n_hot=10, n_anneal=100, n_cool=20))
    assert t.shape == (130,)
    np.testing.assert_allclose(t[10:110], np.linspace(50.0, 1.0, 100), rtol=1e-6)
    np.testing.assert_allclose(t[110:], np.linspace(1.0, 0.0, 20), atol=1e-7)


def test_schedule_errors():
    with pytest.raises(ConfigError, match="kind"):
        schedules.annealing_schedule("cosine")
    with pytest.raises(ConfigError, match="t_max"):
        schedules.annealing_schedule("exp", t_max=0.5)
