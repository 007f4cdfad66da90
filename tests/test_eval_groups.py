"""benchmarks/eval_groups.py: per-prompt eval rows joined with their specs into group rates."""

import importlib.util
import pathlib

_PATH = pathlib.Path(__file__).parents[1] / "benchmarks" / "eval_groups.py"
_spec = importlib.util.spec_from_file_location("eval_groups", _PATH)
eval_groups = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eval_groups)

LOG = """\
 #  prompt                                                      color  shape   size motion     bg   wall   perm  extra    ALL
-----------------------------------------------------------------------------------------------------------------------------
 0  large blue circle bouncing on a forest background              ok     ok     ok      x     ok     ok      -     ok      x
 1  small red square on a navy background                          ok     ok     ok     ok     ok     ok      -     ok     ok
{"all_right": 0.5}
"""
SPECS = [
    {"wall": False, "objects": [{"motion": "bouncing"}]},
    {"wall": True, "objects": [{"motion": "static"}, {"motion": "left"}]},
]


def test_parse_rows_reads_index_and_nine_cells():
  rows = eval_groups.parse_rows(LOG)
  assert sorted(rows) == [0, 1]
  assert rows[0] == ["ok", "ok", "ok", "x", "ok", "ok", "-", "ok", "x"]


def test_table_rates_per_group_skip_dashes():
  text = eval_groups.table(eval_groups.parse_rows(LOG), SPECS)
  lines = {l.split("|")[1].strip(): l for l in text.splitlines()[2:]}
  assert set(lines) == {"1 object(s)", "2 object(s)", "no wall", "wall", "any moving",
                        "has bouncing", "has static", "has left"}
  cells = [c.strip() for c in lines["has bouncing"].split("|")[2:-1]]
  assert cells[0] == "1"  # n
  assert cells[4] == "0.00" and cells[7] == "-" and cells[9] == "0.00"  # motion, perm, ALL
  assert [c.strip() for c in lines["wall"].split("|")][-2] == "1.00"
