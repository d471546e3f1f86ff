"""The network figure: one label per weight and bias, the right numbers, no overlaps, valid PNG and PDF."""

from __future__ import annotations

from fractions import Fraction

import pytest

from mlplab.errors import MlplabError
from mlplab.fsio import save_figure
from mlplab.twolayer.netdraw import draw_network, number_label
from mlplab.twolayer.problem import load_problem, problem_from_dict

SEED = load_problem()
CUSTOM = problem_from_dict({"X": [[1, 2, 0, -1], [0.5, 0, 1, 1]], "y": [1, 0],
                            "W1": [[1, -1, 0.25], [0.5, 2, -3], [1, 1, 1], [-0.75, 0, 2]],
                            "b1": [0, -1, 0.125], "w2": [1, -0.5, 0.3], "b2": -0.2})


def _labels(fig, prefix):
    return {t.get_gid(): t for t in fig.axes[0].texts if (t.get_gid() or "").startswith(prefix)}


@pytest.mark.parametrize("problem", [SEED, CUSTOM], ids=["seed-3-2-1", "custom-4-3-1"])
def test_every_weight_and_bias_is_labelled_with_its_value(problem):
    fig = draw_network(problem)
    weights, biases = _labels(fig, "weight "), _labels(fig, "bias ")
    assert len(weights) == problem.d * problem.h + problem.h
    assert len(biases) == problem.h + 1
    for k in range(problem.d):
        for j in range(problem.h):
            text = weights[f"weight W1[{k + 1},{j + 1}]"].get_text()
            assert Fraction(text) == problem.W1[k][j]
    for j in range(problem.h):
        assert Fraction(weights[f"weight w2[{j + 1}]"].get_text()) == problem.w2[j]
        assert Fraction(biases[f"bias b1[{j + 1}]"].get_text().split("= ")[1]) == problem.b1[j]
    assert Fraction(biases["bias b2"].get_text().split("= ")[1]) == problem.b2


def test_seed_labels_do_not_overlap():
    fig = draw_network(SEED)
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.axes[0].texts if t.get_gid()]
    boxes = [t.get_window_extent(renderer) for t in texts]
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            assert not boxes[a].overlaps(boxes[b]), f"{texts[a].get_gid()} overlaps {texts[b].get_gid()}"
    neurons = [c.get_window_extent(renderer) for c in fig.axes[0].patches]
    assert len(neurons) == SEED.d + SEED.h + 1
    for t, box in zip(texts, boxes):
        assert not any(box.overlaps(n) for n in neurons), f"{t.get_gid()} covers a neuron"


def test_weight_labels_sit_on_their_own_edge():
    fig = draw_network(SEED)
    ax = fig.axes[0]
    lines = {tuple(map(tuple, ln.get_xydata())) for ln in ax.lines}
    for gid, t in _labels(fig, "weight ").items():
        x, y = t.get_position()
        on = [((x0, y0), (x1, y1)) for (x0, y0), (x1, y1) in lines
              if abs((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)) < 1e-9 and min(x0, x1) < x < max(x0, x1)]
        assert on, f"{gid} is not on an edge"


def test_figure_files_are_valid_png_and_pdf(tmp_path):
    paths = save_figure(draw_network(CUSTOM, "relu", "sigmoid"), tmp_path, "network")
    assert [p.name for p in paths] == ["network.png", "network.pdf"]
    png, pdf = (p.read_bytes() for p in paths)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["network.pdf", "network.png"]  # no temp files left


def test_number_label():
    assert [number_label(Fraction(v)) for v in ("1", "-2.5", "0.125", "1/3")] == ["1.0", "-2.5", "0.125", "1/3"]


def test_too_large_network_is_refused():
    big = problem_from_dict({"X": [[0] * 13], "y": [0], "W1": [[1]] * 13, "b1": [0], "w2": [1], "b2": 0})
    with pytest.raises(MlplabError, match="drawing is limited"):
        draw_network(big)
