"""The training-domain test of galdust.ml.domain on known answers: ranges, and the nearest-neighbour
test that catches a row whose every feature is usual but whose combination is not."""

import numpy as np

from galdust.ml.domain import fit_neighbours, fit_ranges, neighbour_distance, outside_mask, outside_notes


def test_ranges_are_the_padded_percentiles_and_nan_is_never_outside():
    X = np.column_stack([np.linspace(0, 10, 1001), np.full(1001, np.nan)])
    dom = fit_ranges(X, ["a", "b"], q=0.0, pad=0.1)
    assert dom["lo"] == [-1.0, None] and dom["hi"] == [11.0, None]  # 0..10 widened by a tenth of 10
    rows = np.array([[5.0, 3.0], [11.5, np.nan], [np.nan, 1e9], [-2.0, 0.0]])
    assert outside_mask(dom, rows).tolist() == [False, True, False, True]
    notes = outside_notes(dom, rows)
    assert notes[0] == "" and notes[1] == "outside the training domain: a 11.50 > 11.00" and "a -2.00 < -1.00" in notes[3]


def test_neighbours_catch_an_unusual_combination_of_usual_features():
    rng = np.random.default_rng(0)
    t = rng.normal(size=2000)
    X = np.column_stack([t, t + 0.05 * rng.normal(size=2000)])  # training rows lie on the line y = x
    dom = dict(fit_ranges(X, ["x", "y"]), neighbours=fit_neighbours(X, k=5, quantile=0.99))
    # the leave-one-out threshold flags about 1 % of rows like the training ones
    fresh = rng.normal(size=2000)
    same = np.column_stack([fresh, fresh + 0.05 * rng.normal(size=2000)])
    assert 0.003 < outside_mask(dom, same).mean() < 0.03
    odd = np.array([[1.0, -1.0], [-0.5, 0.5]])  # each coordinate well inside its range; off the line
    assert not (outside_mask(dict(dom, neighbours=None), odd)).any()  # ranges alone miss them
    assert outside_mask(dom, odd).all() and all("far from every training row" in n for n in outside_notes(dom, odd))
    # a missing feature: the distance uses the features both rows have
    d = neighbour_distance(dom, np.array([[0.3, np.nan], [np.nan, np.nan]]))
    assert d[0] < dom["neighbours"]["threshold"] and np.isnan(d[1]) and not outside_mask(dom, [[np.nan] * 2])[0]
