"""One plotting style, image grids, before/after/reference panels and the widget pattern (:func:`explorer`)."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import torch

from .data import check_images


def set_style() -> None:
    """The course's plotting style (seaborn 'whitegrid', readable font sizes)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette="deep")
    plt.rcParams.update({"figure.dpi": 100, "axes.titlesize": 11, "axes.labelsize": 10,
                         "image.cmap": "gray", "figure.autolayout": False})


def to_image(x: torch.Tensor):
    """A (C, H, W) tensor in [0, 1] as an array matplotlib shows (H, W) or (H, W, 3)."""
    x = x.detach().float().cpu().clamp(0, 1)
    if x.ndim == 3 and x.shape[0] == 1:
        return x[0].numpy()
    if x.ndim == 3:
        return x.permute(1, 2, 0).numpy()
    return x.numpy()


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 1, pad_value: float = 1.0) -> torch.Tensor:
    """torchvision's ``make_grid`` on a validated (N, C, H, W) batch in [0, 1]."""
    from torchvision.utils import make_grid

    check_images(images, channels=(1, 3), name="images")
    return make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=padding, pad_value=pad_value)


def show_grid(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None,
              padding: int = 1, scale: float = 0.45):
    """Show a batch of images as one grid; returns the axis."""
    grid = image_grid(images, nrow=nrow, padding=padding)
    if ax is None:
        h, w = grid.shape[-2:]
        ratio = w / max(h, 1)
        _, ax = plt.subplots(figsize=(min(12, scale * nrow * 1.2 + 1), min(12, scale * nrow * 1.2 / ratio + 0.6)))
    ax.imshow(to_image(grid), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def show_panels(rows: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]],
                titles: Mapping[str, str] | None = None, size: float = 2.2, suptitle: str | None = None):
    """Before / after / reference panels.

    ``rows`` maps a column name ("input", "output", "reference"...) to a batch (N, C, H, W); row i shows
    image i of every batch. ``titles`` adds text (a metric, say) under a column name.
    """
    columns = dict(rows) if isinstance(rows, Mapping) else None
    if columns is None:
        raise TypeError("rows must map column names to image batches.")
    names = list(columns)
    n = min(len(v) for v in columns.values())
    for name, batch in columns.items():
        check_images(batch, channels=(1, 3), name=f"panel {name!r}")
    fig, axes = plt.subplots(n, len(names), figsize=(size * len(names), size * n), squeeze=False)
    for j, name in enumerate(names):
        for i in range(n):
            ax = axes[i, j]
            ax.imshow(to_image(columns[name][i]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                label = name if not titles or name not in titles else f"{name}\n{titles[name]}"
                ax.set_title(label, fontsize=10)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def metric_table(rows: Sequence[Mapping] | Mapping[str, Mapping], index: str | None = None, precision: int = 2):
    """A pandas DataFrame of metrics (one row per method), rounded for display."""
    import pandas as pd

    if isinstance(rows, Mapping):
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame.index.name = index or "method"
    else:
        frame = pd.DataFrame(list(rows))
        if index:
            frame = frame.set_index(index)
    return frame.round(precision)


def explorer(draw: Callable[..., None], **controls):
    """The course's one widget pattern: a static default figure, then controls that redraw on change.

    ``draw(**values)`` draws one figure with matplotlib for the controls' current values.

    1. ``draw`` runs once, now, with every control at its initial value, and the figure is shown as
       an ordinary cell output: it is what a static copy of the notebook (HTML export, the course
       report, a repository preview) shows.
    2. Below it, the controls and an ``ipywidgets.Output`` are displayed. The output stays empty
       until a control is moved; then it is cleared and ``draw`` runs again inside it.

    Nothing runs from a widget callback while the notebook is executed headless (papermill,
    nbclient, nbval): callbacks fire only when a person moves a control. ``ipywidgets.interact`` and
    ``interactive`` call their function from inside the widget machinery at display time, which
    can deadlock a headless kernel; this pattern never does. Returns an :class:`Explorer` handle
    (its ``redraw()`` does what moving a control does; it displays nothing more when it is a cell's
    last expression).
    """
    import ipywidgets as widgets
    from IPython.display import display

    if not controls:
        raise TypeError("explorer() needs at least one control, e.g. gamma=widgets.FloatSlider(...).")
    bad = [name for name, c in controls.items() if not isinstance(c, widgets.ValueWidget)]
    if bad:
        raise TypeError(f"explorer() controls must be ipywidgets value widgets (sliders, dropdowns...); "
                        f"not: {', '.join(bad)}.")
    for name, control in controls.items():
        if not control.description:
            control.description = name
    handle = Explorer(draw, controls, widgets.Output())
    draw(**handle.values())
    plt.show()
    for control in controls.values():
        control.observe(handle.redraw, names="value")
    handle.box = widgets.VBox([widgets.HBox(list(controls.values())), handle.out])
    display(handle.box)
    return handle


class Explorer:
    """What :func:`explorer` displayed: the controls, their ``Output`` and ``redraw()``."""

    def __init__(self, draw: Callable[..., None], controls: Mapping, out):
        self.draw, self.controls, self.out, self.box = draw, dict(controls), out, None

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self, _change=None) -> None:
        """Clear the output and draw the controls' current values into it."""
        with self.out:
            self.out.clear_output(wait=True)
            self.draw(**self.values())
            plt.show()

    def _ipython_display_(self) -> None:  # already displayed by explorer()
        pass


def departures_table(rows: Sequence[Sequence[str]]):
    """The departures from the paper, as one table: (setting, the paper and its code where public, ours, why).

    Every method notebook shows one, so that a reader knows which of its numbers may differ from
    the paper's, and why. Returns a pandas Styler (left-aligned, wrapped text) that a cell displays.
    """
    import pandas as pd

    columns = ["setting", "paper (and its code, where public)", "this notebook", "why"]
    bad = [i for i, row in enumerate(rows) if len(row) != len(columns) or not all(isinstance(c, str) for c in row)]
    if not rows or bad:
        raise TypeError(f"departures_table needs rows of {len(columns)} strings ({', '.join(columns)}); "
                        f"bad rows: {bad or 'none given'}.")
    frame = pd.DataFrame([list(r) for r in rows], columns=columns)
    frame.index = range(1, len(frame) + 1)
    return frame.style.set_properties(**{"text-align": "left", "white-space": "pre-wrap"}).set_table_styles(
        [{"selector": "th", "props": [("text-align", "left")]}])
