"""The contact sheet: frames laid out under their prompts."""

import numpy as np
import pytest

from sorax.contact_sheet import contact_sheet
from sorax.data import world


def test_sheet_holds_the_frames_pixel_for_pixel():
  rng = np.random.default_rng(0)
  videos = [world.render(world.random_spec(rng, 16, 24, 5), 16, 24, 5) for _ in range(3)]
  sheet = contact_sheet(videos, ["a", "b", "c"], notes=["ok", "x shape", "ok"], frames=5,
                        scale=2)
  assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[-1] == 3
  # Every frame appears, enlarged 2x by nearest neighbour, somewhere on the sheet.
  big = np.repeat(np.repeat(videos[1][4], 2, axis=0), 2, axis=1)
  hits = [(y, x) for y in range(sheet.shape[0] - 31) for x in range(sheet.shape[1] - 47)
          if np.array_equal(sheet[y:y + 32, x:x + 48], big)]
  assert hits
  # Text is drawn: the rows above the first frame are not all white.
  assert (sheet[:10] != 255).any()


def test_sheet_refuses_mismatched_input():
  v = np.zeros((3, 8, 8, 3), np.uint8)
  with pytest.raises(ValueError, match="2 videos, 1 prompts"):
    contact_sheet([v, v], ["a"])
  with pytest.raises(ValueError, match="one shape"):
    contact_sheet([v, np.zeros((3, 8, 9, 3), np.uint8)], ["a", "b"])
  with pytest.raises(ValueError, match="at least one"):
    contact_sheet([], [])
