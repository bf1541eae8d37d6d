"""The drift statistics of collector/sketches.py against scipy on known distributions."""

import math

import numpy as np
import pytest
from scipy import stats

from collector.sketches import (
    BINS,
    CATEGORICAL,
    MAX_CATEGORIES,
    NUMERIC,
    OTHER,
    chi_square,
    counts_of,
    feature_reference,
    ks,
    merged,
    psi,
)

rng = np.random.default_rng(7)
REFERENCE = rng.normal(0.0, 1.0, 20_000).tolist()
SAME = rng.normal(0.0, 1.0, 20_000).tolist()
SHIFTED = rng.normal(0.5, 1.0, 20_000).tolist()


def binned(reference: list[float], current: list[float]) -> tuple[list[int], list[int]]:
    spec = feature_reference(reference)
    return spec["counts"], counts_of(spec, current)


def exact_psi(reference: list[float], current: list[float]) -> float:
    """PSI by hand over the reference's decile bins, with numpy's histogram."""
    edges = np.quantile(reference, np.linspace(0, 1, BINS + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    p = np.histogram(reference, edges)[0] / len(reference)
    q = np.histogram(current, edges)[0] / len(current)
    return float(np.sum((q - p) * np.log(q / p)))


def test_a_numeric_reference_has_decile_bins_with_a_tenth_each() -> None:
    spec = feature_reference(REFERENCE)

    assert spec["kind"] == NUMERIC
    assert len(spec["edges"]) == BINS - 1
    assert spec["counts"] == pytest.approx([len(REFERENCE) / BINS] * BINS, abs=2)


def test_psi_of_a_shifted_normal_matches_a_numpy_recomputation_and_crosses_0_2() -> None:
    value = psi(*binned(REFERENCE, SHIFTED))

    assert value == pytest.approx(exact_psi(REFERENCE, SHIFTED), rel=1e-6)
    assert value > 0.2


def test_psi_of_a_sample_from_the_same_normal_is_near_zero() -> None:
    assert psi(*binned(REFERENCE, SAME)) < 0.01
    assert psi(*binned(REFERENCE, REFERENCE)) == pytest.approx(0.0, abs=1e-12)


def test_psi_counts_an_empty_bin_as_epsilon_instead_of_dividing_by_zero() -> None:
    value = psi([50, 50], [100, 0])

    assert math.isfinite(value) and value > 1


@pytest.mark.parametrize("current", [SAME, SHIFTED, rng.normal(0.0, 2.0, 5000).tolist()])
def test_binned_ks_is_within_the_bin_resolution_of_scipy_ks_2samp(current: list[float]) -> None:
    exact = stats.ks_2samp(REFERENCE, current)

    statistic, p_value = ks(*binned(REFERENCE, current))

    # The binned statistic looks at the bin edges only: never above the exact one, short by less than a bin.
    assert statistic <= exact.statistic + 1e-12
    assert exact.statistic - statistic < 1 / BINS
    assert (p_value < 0.01) == (exact.pvalue < 0.01)


def test_binned_ks_p_value_is_scipys_asymptotic_one_for_the_same_statistic() -> None:
    reference, current = binned(REFERENCE, SHIFTED)
    statistic, p_value = ks(reference, current)
    n, m = sum(reference), sum(current)

    assert p_value == pytest.approx(stats.kstwo.sf(statistic, round(n * m / (n + m))))


def test_identical_samples_give_no_ks_gap_and_p_value_one() -> None:
    assert ks(*binned(REFERENCE, REFERENCE)) == (0.0, 1.0)


def categories(weights: dict[str, float], size: int, seed: int) -> list[str]:
    generator = np.random.default_rng(seed)
    return generator.choice(list(weights), size=size, p=list(weights.values())).tolist()


def test_chi_square_matches_scipy_on_the_contingency_table_of_the_raw_samples() -> None:
    reference = categories({"basic": 0.6, "pro": 0.3, "team": 0.1}, 5000, seed=1)
    current = categories({"basic": 0.4, "pro": 0.3, "team": 0.3}, 3000, seed=2)
    table = [
        [reference.count(name) for name in ("basic", "pro", "team")],
        [current.count(n) for n in ("basic", "pro", "team")],
    ]
    expected = stats.chi2_contingency(table, correction=False)

    spec = feature_reference(reference)
    statistic, p_value = chi_square(spec["counts"], counts_of(spec, current))

    assert spec["kind"] == CATEGORICAL
    assert statistic == pytest.approx(expected.statistic)
    assert p_value == pytest.approx(expected.pvalue)
    assert p_value < 1e-10
    assert psi(spec["counts"], counts_of(spec, current)) > 0.2


def test_chi_square_finds_nothing_in_a_sample_of_the_same_categories() -> None:
    weights = {"basic": 0.6, "pro": 0.3, "team": 0.1}
    spec = feature_reference(categories(weights, 5000, seed=3))

    _, p_value = chi_square(spec["counts"], counts_of(spec, categories(weights, 5000, seed=4)))

    assert p_value > 0.01


def test_a_new_category_counts_as_other_and_moves_the_statistics() -> None:
    spec = feature_reference(["a"] * 50 + ["b"] * 50)

    current = counts_of(spec, ["a"] * 30 + ["b"] * 30 + ["never-seen"] * 40)

    assert spec["categories"] == ["a", "b"]
    assert current == [30, 30, 40]
    assert chi_square(spec["counts"], current)[1] < 1e-6


def test_a_categorical_reference_keeps_the_most_frequent_categories_and_other() -> None:
    values = [f"c{n}" for n in range(500) for _ in range(500 - n)]

    spec = feature_reference(values)

    assert len(spec["categories"]) == MAX_CATEGORIES
    assert spec["categories"][:3] == ["c0", "c1", "c2"]
    assert OTHER not in spec["categories"]
    assert sum(spec["counts"]) == len(values)


def test_windows_merge_by_adding_counts() -> None:
    spec = feature_reference(REFERENCE)
    first, second = SHIFTED[:7000], SHIFTED[7000:]

    total = merged(merged({}, {"x": counts_of(spec, first)}), {"x": counts_of(spec, second)})

    assert total["x"] == counts_of(spec, SHIFTED)
