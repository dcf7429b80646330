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
