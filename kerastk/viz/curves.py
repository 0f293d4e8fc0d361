"""Training curves of several runs on one axis, and saving a figure: what the comparison recipes share."""
from __future__ import annotations

from pathlib import Path


def compare_curves(ax, histories: dict, key: str = "val_accuracy", title: str = "", ylabel: str | None = None,
                   show_last: bool = False, first_colour: int = 0):
    """One line per run: ``histories`` maps a label to a run's history (``{column: [value per epoch]}``).

    ``show_last`` puts each run's final value in its legend entry; ``first_colour`` offsets the colour cycle
    (to match another panel's colours).
    """
    for i, (label, history) in enumerate(histories.items()):
        values = history[key]
        ax.plot(range(1, len(values) + 1), values, marker=".", color=f"C{i + first_colour}",
                label=f"{label} ({values[-1]:.3f})" if show_last else label)
    ax.set(xlabel="epoch", ylabel=ylabel or key.replace("_", " "), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def save_figure(fig, path, dpi: int = 100) -> Path:
    """Tight layout, save as PNG, close (figures are not kept open across a recipe's runs)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)
