"""Draw the two-layer network of a problem: inputs, hidden units and output, every weight and bias labelled.

Edges carry their weight (W1[k,j] from input k to hidden unit j, w2[j] from hidden unit j to the output),
each neuron its bias. Weight labels are placed greedily along their edge at the first position whose box
overlaps no label and no neuron already drawn, so the labels stay readable for the assignment's 3-2-1 network
and for other small networks. Returns a matplotlib `Figure` (no pyplot state); save it with
`mlplab.fsio.save_figure`.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from mlplab.errors import MlplabError
from mlplab.twolayer.problem import Problem

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not with `import mlplab` (about 1 s)
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure
    from matplotlib.path import Path
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

MAX_UNITS = 12  # per layer; beyond this the edge labels cannot be read in a printable figure
_RADIUS = 0.3
_SPACING = 1.5
_LAYER_X = (0.0, 3.2, 6.0)
_ALONG = (0.5, 0.36, 0.64, 0.26, 0.74, 0.44, 0.56, 0.3, 0.7, 0.2, 0.8)  # candidate label positions on an edge
_POS_COLOR, _NEG_COLOR, _ZERO_COLOR = "#1f5fa8", "#c0392b", "#999999"
_Point = tuple[float, float]
_Edge = tuple[_Point, _Point, Fraction, str]  # from, to, weight, name
_Neuron = tuple[float, float, str]  # x, y, label


def number_label(q: Fraction) -> str:
    """A weight as the assignment writes it: a short decimal when exact, else the fraction.

    >>> number_label(Fraction(-5, 2)), number_label(Fraction(1, 3)), number_label(Fraction(2))
    ('-2.5', '1/3', '2.0')
    """
    for places in range(1, 5):
        if q * 10**places == int(q * 10**places):
            return f"{float(q):.{places}f}"
    return f"{q.numerator}/{q.denominator}"


def _column(count: int) -> list[float]:
    """y positions of `count` neurons, centred on 0, first neuron on top."""
    return [(count - 1) / 2 * _SPACING - k * _SPACING for k in range(count)]


def _padded(box: Bbox, pad: float) -> Bbox:
    from matplotlib.transforms import Bbox

    return Bbox.from_extents(box.x0 - pad, box.y0 - pad, box.x1 + pad, box.y1 + pad)


def draw_network(problem: Problem, activation1: str = "σ1", activation2: str = "σ2",
                 title: str | None = None) -> Figure:
    """The network of `problem` as a figure with one text per weight (gid 'weight ...') and per bias.

    >>> from mlplab.twolayer.problem import load_problem
    >>> fig = draw_network(load_problem())
    >>> sum(1 for t in fig.axes[0].texts if (t.get_gid() or "").startswith("weight"))
    8
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    d, h = problem.d, problem.h
    if d > MAX_UNITS or h > MAX_UNITS:
        raise MlplabError(f"the network has {d} inputs and {h} hidden units; drawing is limited to {MAX_UNITS} each",
                          hint="draw a smaller problem; tables and derivations work for any size")
    rows = max(d, h, 2)
    fig = Figure(figsize=(8.0, 1.0 + 1.15 * rows))
    FigureCanvasAgg(fig)  # gives the figure a renderer, so label boxes can be measured while placing them
    ax = fig.add_subplot()
    ax.set_xlim(-1.1, _LAYER_X[2] + 1.4)
    half = (rows - 1) / 2 * _SPACING + 1.0
    ax.set_ylim(-half + 0.4, half + 0.2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title if title is not None else
                 f"Problem {problem.name!r}: {d}-{h}-1 network\n"
                 "edges: weights (blue > 0, red < 0); above each neuron: its bias", fontsize=10)

    ys_in, ys_hid = _column(d), _column(h)
    x_in, x_hid, x_out = _LAYER_X
    edges = [((x_in, ys_in[k]), (x_hid, ys_hid[j]), problem.W1[k][j], f"W1[{k + 1},{j + 1}]")
             for j in range(h) for k in range(d)]
    edges += [((x_hid, ys_hid[j]), (x_out, 0.0), problem.w2[j], f"w2[{j + 1}]") for j in range(h)]
    for (x0, y0), (x1, y1), w, _ in edges:
        ax.plot([x0, x1], [y0, y1], color=_edge_color(w), lw=1.2, zorder=1)
    neurons = ([(x_in, y, f"$x[{k + 1}]$") for k, y in enumerate(ys_in)]
               + [(x_hid, y, f"$a_1[{j + 1}]$") for j, y in enumerate(ys_hid)] + [(x_out, 0.0, r"$\hat{y}$")])
    _draw_neurons(ax, problem, neurons, half, (activation1, activation2))
    _label_weights(fig, ax, edges, neurons)
    return fig


def _draw_neurons(ax: Axes, problem: Problem, neurons: list[_Neuron], half: float,
                  activations: tuple[str, str]) -> None:
    """The neurons as labelled circles, the biases above them, and a caption over each layer."""
    from matplotlib.patches import Circle

    x_in, x_hid, x_out = _LAYER_X
    for x, y, label in neurons:
        ax.add_patch(Circle((x, y), _RADIUS, facecolor="white", edgecolor="black", lw=1.4, zorder=3))
        ax.text(x, y, label, ha="center", va="center", fontsize=9, zorder=4)
    for j, y in enumerate(_column(problem.h)):
        ax.text(x_hid, y + _RADIUS + 0.08, f"$b_1[{j + 1}]$ = {number_label(problem.b1[j])}", ha="center",
                va="bottom", fontsize=8, color="#333333", zorder=4, gid=f"bias b1[{j + 1}]")
    ax.text(x_out, _RADIUS + 0.08, f"$b_2$ = {number_label(problem.b2)}", ha="center", va="bottom", fontsize=8,
            color="#333333", zorder=4, gid="bias b2")
    ax.text(x_in, half - 0.25, "input", ha="center", fontsize=9, style="italic")
    ax.text(x_hid, half - 0.25, f"hidden ({activations[0]})", ha="center", fontsize=9, style="italic")
    ax.text(x_out, half - 0.25, f"output ({activations[1]})", ha="center", fontsize=9, style="italic")


def _label_weights(fig: Figure, ax: Axes, edges: list[_Edge], neurons: list[_Neuron]) -> None:
    """Each edge's weight, placed where it covers the fewest texts, neurons and other edges."""
    from matplotlib.path import Path
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    taken = [_padded(t.get_window_extent(renderer), 2) for t in ax.texts]
    taken += [ax.transData.transform_bbox(Bbox.from_extents(x - _RADIUS, y - _RADIUS, x + _RADIUS, y + _RADIUS))
              for x, y, _ in neurons]
    # A label sitting on a crossing would be ambiguous, so other edges count as obstacles too.
    segments = [Path(ax.transData.transform([a, b])) for a, b, _, _ in edges]
    for k, ((x0, y0), (x1, y1), w, name) in enumerate(edges):
        others = segments[:k] + segments[k + 1:]
        taken.append(_place_label(ax, renderer, (x0, y0), (x1, y1), number_label(w), f"weight {name}",
                                  _edge_color(w), taken, others))


def _edge_color(w: Fraction) -> str:
    return _POS_COLOR if w > 0 else _NEG_COLOR if w < 0 else _ZERO_COLOR


def _place_label(ax: Axes, renderer: RendererBase, start: tuple[float, float], end: tuple[float, float],
                 text: str, gid: str, color: str, taken: list[Bbox], others: list[Path]) -> Bbox:
    """Put `text` on the segment start-end where its box hits the fewest boxes and other edges."""
    label: Text = ax.text(0, 0, text, ha="center", va="center", fontsize=8, zorder=5, gid=gid, color=color,
                          fontweight="bold",
                          bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"})
    best: tuple[int, float, Bbox] | None = None
    for t in _ALONG:
        label.set_position((start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])))
        box = _padded(label.get_window_extent(renderer), 3)  # the white background pads the text a little
        hits = 2 * sum(box.overlaps(other) for other in taken) + sum(seg.intersects_bbox(box) for seg in others)
        if best is None or hits < best[0]:
            best = (hits, t, box)
        if hits == 0:
            break
    assert best is not None
    label.set_position((start[0] + best[1] * (end[0] - start[0]), start[1] + best[1] * (end[1] - start[1])))
    return best[2]
