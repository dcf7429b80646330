"""Pictures: the panels of restoration, translation and composition keep every image's pixels square."""

import numpy as np
from PIL import Image

from ebmjax import visualize


def _run(line: np.ndarray) -> int:
    """The length of the leading run of True in ``line``."""
    return int(np.argmin(line)) if not line.all() else len(line)


def test_panels_with_long_titles_keep_the_images_square(tmp_path):
    # Black 8x8 images under titles far wider than a tile: each tile must stay a black square (the
    # panels once stretched the grid to the titles' width, drawing 8x8 digits 2.6 times as wide).
    images = np.zeros((6, 8, 8, 1), np.float32)
    path = tmp_path / "panels.png"
    visualize.save_panels([("a title much wider than an 8x8 tile", images), ("another long column title", images)],
                          path, groups=1)
    pic = np.asarray(Image.open(path).convert("L"))
    side = visualize.image_grid(images[:1]).shape[0] - 4  # a tile's side in pixels (2-pixel grey lines)
    black = pic == 0
    black[:visualize.FONT_SIZE + 10] = False  # the column titles' letters
    r, c = np.argwhere(black)[0]  # the top-left corner of the first tile
    assert _run(black[r, c:]) == _run(black[r:, c]) == side, (_run(black[r, c:]), _run(black[r:, c]), side)
    # Every tile of both columns is there, side by side.
    assert len(np.unique(np.argwhere(black[r])[:, 0] // (side + 2))) >= 2


def test_training_curves_switch_to_a_log_axis_when_one_spike_would_flatten_the_rest(tmp_path):
    assert visualize.curve_scale([30.0, 29.5, 31.0, 28.7]) == "linear"
    assert visualize.curve_scale([30.0, 200.0, 31.0, 28.7]) == "linear"  # under ten times the median: kept
    assert visualize.curve_scale([30.0, 2150.0, 31.0, 28.7]) == "log"
    assert visualize.curve_scale([30.0, 5.5e6, 31.0, 28.7]) == "log"
    assert visualize.curve_scale([-4.0, 3.0e4, 2.0, -3.0, np.nan]) == "symlog"  # energies of either sign
    assert visualize.curve_scale([0.0, 0.0, 0.0]) == "linear"
    assert visualize.curve_scale([0.3, -0.2, 1e-4, -0.1, 0.4]) == "linear"  # a loss about 0: no symlog
    assert visualize.curve_scale([1e4, 3e3, 300.0, 40.0, 35.0, 33.0, 31.0]) == "log"  # a fall of decades too
    # Written to a picture: the gradient-norm panel with a spike is titled with its log axis.
    records = [{"step": s, "loss": 30.0 + s % 3, "grad_norm": 5.5e6 if s == 550 else 35.0, "lr": 1e-3}
               for s in range(50, 3001, 50)]
    path = tmp_path / "curves.png"
    visualize.save_curves(records, path, title="mdsm on mnist5k")
    assert Image.open(path).size[0] > 0
