"""Dai et al. (2017), App. B.2, Table 2: the paper's pairwise KL divergences, copied as printed.

Keys: data set (this package's names) -> model (``--loss`` names) -> ``"p||q"`` (the
:data:`ppl_ebm.metrics.grid_kl.PAIRS` order); ``DATA_EMP`` holds each set's
KL(p_data || p_emp) and KL(p_emp || p_data) from the table captions.
"""

from __future__ import annotations

from ppl_ebm.metrics.grid_kl import PAIRS

__all__ = ["DATA_EMP", "PAPER_TABLE"]

_COLUMNS = [f"{p}||{q}" for p, q in PAIRS]


def _rows(values: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {model: dict(zip(_COLUMNS, row, strict=True)) for model, row in values.items()}


PAPER_TABLE: dict[str, dict[str, dict[str, float]]] = {
    "4gaussians": _rows({
        "gan": [0.3034, 0.5024, 0.2498, 0.4807, 6.7587, 2.0648, 6.2020, 2.0553, 2.4596, 7.0895],
        "egan-const": [0.2711, 0.4888, 0.2239, 0.4735, 6.7916, 2.1243, 6.2159, 2.1149, 2.5062, 7.0553],
        "egan-ent-vi": [0.1422, 0.1367, 0.0896, 0.1214, 0.8866, 0.6532, 0.7215, 0.6442, 0.7711, 1.0638],
        "egan-ent-nn": [0.1131, 0.1006, 0.0621, 0.0862, 0.0993, 0.1356, 0.0901, 0.1187, 0.1905, 0.1208],
    }),
    "biased2gaussians": _rows({
        "gan": [0.0788, 0.0705, 0.0413, 0.0547, 7.1539, 2.5230, 6.4927, 2.5018, 2.5205, 7.1140],
        "egan-const": [0.1545, 0.1649, 0.1211, 0.1519, 7.1568, 2.5269, 6.4969, 2.5057, 2.5860, 7.1995],
        "egan-ent-vi": [0.0576, 0.0668, 0.0303, 0.0518, 3.9151, 1.3574, 2.9894, 1.3365, 1.4052, 4.0632],
        "egan-ent-nn": [0.0784, 0.0574, 0.0334, 0.0422, 0.8505, 0.3480, 0.5199, 0.3299, 0.3250, 0.7835],
    }),
    "twospirals": _rows({
        "gan": [0.5297, 0.2701, 0.3758, 0.7240, 6.3507, 1.7180, 4.3818, 1.0866, 1.6519, 5.7694],
        "egan-const": [0.7473, 1.0325, 0.7152, 1.6703, 5.9930, 1.5732, 3.9749, 0.9703, 1.8380, 6.0471],
        "egan-ent-vi": [0.2014, 0.1260, 0.4283, 0.8399, 1.1099, 0.3508, 0.3061, 0.4037, 0.4324, 0.9917],
        "egan-ent-nn": [0.1246, 0.1147, 0.4475, 1.2435, 0.1036, 0.0857, 0.4086, 0.7917, 0.1365, 0.1686],
    }),
}

DATA_EMP: dict[str, dict[str, float]] = {
    "4gaussians": {"data||emp": 0.0291, "emp||data": 0.0159},
    "biased2gaussians": {"data||emp": 0.0273, "emp||data": 0.0144},
    "twospirals": {"data||emp": 0.3892, "emp||data": 1.2349},
}
