"""What every picture shares: resolution, colour maps, cell axes, saving."""

import os

import numpy as np

__all__ = [
    "DPI",
    "FIGSIZE_ARVIZ",
    "REWARD_CMAP",
    "SAVE_FORMATS",
    "SD_CMAP",
    "VISIT_CMAP",
    "cell_axes",
    "check_save_path",
    "finish",
    "finish_collection",
    "save_collection",
]

DPI = 100
SAVE_FORMATS = (".png", ".svg")
REWARD_CMAP = "RdYlGn"
VISIT_CMAP = "magma"
SD_CMAP = "Purples"
FIGSIZE_ARVIZ = (8.0, 3.5)


def cell_axes(ax, shape):
    height, width = shape
    ax.set_xticks(np.arange(width))
    ax.set_yticks(np.arange(height))
    ax.set_xticks(np.arange(-0.5, width), minor=True)
    ax.set_yticks(np.arange(-0.5, height), minor=True)
    ax.grid(which="minor", color="white", lw=1.0)
    ax.tick_params(which="minor", length=0)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_xlabel("column")
    ax.set_ylabel("row")


def finish(fig, save):
    if save is not None:
        fig.savefig(check_save_path(save), dpi=DPI)
    return fig


def finish_collection(pc, title, xlabel, save):
    fig = pc.get_viz("figure")
    ax = fig.axes[0]
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    fig.set_layout_engine("constrained")
    save_collection(pc, save)
    return pc


def save_collection(pc, save):
    if save is not None:
        pc.get_viz("figure").savefig(check_save_path(save), dpi=DPI)


def check_save_path(path):
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() not in SAVE_FORMATS:
        raise ValueError(f"save must be a .png or .svg file name, got {path!r}")
    return path
