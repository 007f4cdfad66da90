"""benchmarks/verbs_eval.py: the joins it measures are where `verbs.extend`'s windows meet."""

import importlib.util
import pathlib

import numpy as np
import pytest

from sorax import verbs

_PATH = pathlib.Path(__file__).parents[1] / "benchmarks" / "verbs_eval.py"
_spec = importlib.util.spec_from_file_location("verbs_eval", _PATH)
verbs_eval = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(verbs_eval)

F = 17
GROUPS = [[0]] + [[2 * i + 1, 2 * i + 2] for i in range(8)]  # the causal pixel codec's at 17


@pytest.mark.parametrize("back", [False, True])
@pytest.mark.parametrize("context", [None, 2, 6])
def test_extend_joins_are_where_windows_meet(monkeypatch, back, context):
  calls = []

  def fake_window(pipe, prompt, pixels, known, **kw):
    calls.append(1)  # each window's made frames hold its number: a join is a change of value
    out = pixels.copy()
    out[~np.asarray(known)] = 10 * len(calls)
    return out

  monkeypatch.setattr(verbs, "window", fake_window)
  monkeypatch.setattr(verbs, "_clip_frames", lambda pipe: F)
  monkeypatch.setattr(verbs.cond, "frame_groups", lambda codec, frames: GROUPS)
  video = np.zeros((F, 2, 2, 3), np.uint8)
  out = verbs.extend(type("P", (), {"codec": None})(), video, 2.0,
                     "backward" if back else "forward", context=context)
  value = out[:, 0, 0, 0].astype(int)
  changes = [k for k in range(1, len(out)) if value[k] != value[k - 1]]
  assert verbs_eval.extend_joins(GROUPS, F, len(out), context, back) == changes
  assert len(changes) == len(calls)


def test_seam_ratio_sees_a_jump():
  still = np.zeros((8, 4, 4, 3), np.uint8)
  moving = np.stack([np.full((4, 4, 3), 10 * k, np.uint8) for k in range(8)])
  assert verbs_eval.seam_ratio(moving, [4]) == pytest.approx(1.0)
  jump = moving.copy()
  jump[4:] += 30
  assert verbs_eval.seam_ratio(jump, [4]) == pytest.approx(4.0)
  assert verbs_eval.seam_ratio(still, [4]) == 0.0
