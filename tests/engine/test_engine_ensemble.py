"""Ensembles: hand-checked values in the wave domain, identities in the FFT domain."""

import numpy as np
import pytest

from openmvsep.engine.ensemble import ALGORITHMS, ensemble


def test_wave_algorithms_by_hand():
    a = np.array([[1.0, -3.0, 2.0]], np.float32)
    b = np.array([[3.0, 1.0, -2.0]], np.float32)
    c = np.array([[2.0, -1.0, 5.0]], np.float32)
    np.testing.assert_allclose(ensemble([a, b], "avg_wave"), [[2.0, -1.0, 0.0]])
    np.testing.assert_allclose(ensemble([a, b], "avg_wave", [3, 1]), [[1.5, -2.0, 1.0]])
    np.testing.assert_allclose(ensemble([a, b, c], "median_wave"), [[2.0, -1.0, 2.0]])
    np.testing.assert_allclose(ensemble([a, b, c], "min_wave"), [[1.0, 1.0, 2.0]])  # tie |2|=|-2|: first model
    np.testing.assert_allclose(ensemble([a, b, c], "max_wave"), [[3.0, -3.0, 5.0]])


@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a.endswith("fft")])
def test_fft_of_identical_inputs_is_the_input(algorithm):
    x = np.random.default_rng(0).standard_normal((2, 10_000)).astype(np.float32) * 0.3
    np.testing.assert_allclose(ensemble([x, x, x], algorithm), x, atol=1e-5)


def test_avg_fft_equals_avg_wave():
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((2, 8000)).astype(np.float32) for _ in range(3)]
    np.testing.assert_allclose(ensemble(xs, "avg_fft", [1, 2, 3]), ensemble(xs, "avg_wave", [1, 2, 3]), atol=1e-5)


def test_max_fft_keeps_the_louder_bins():
    rng = np.random.default_rng(2)
    quiet = rng.standard_normal((1, 8000)).astype(np.float32) * 0.01
    loud = rng.standard_normal((1, 8000)).astype(np.float32)

    def error_db(estimate, reference):
        return 10 * np.log10(np.sum((estimate - reference) ** 2) / np.sum(reference**2))

    # Per bin the louder model almost always wins; the rare exceptions cost little energy.
    assert error_db(ensemble([quiet, loud], "max_fft"), loud) < -30
    assert error_db(ensemble([quiet, loud], "min_fft"), quiet) < -10


def test_bad_inputs():
    x = np.zeros((2, 10), np.float32)
    with pytest.raises(ValueError):
        ensemble([x, np.zeros((2, 11), np.float32)])
    with pytest.raises(ValueError):
        ensemble([x], "loudest_wave")
    with pytest.raises(ValueError):
        ensemble([x, x], weights=[0, 0])
