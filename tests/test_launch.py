"""The launch/ scripts' dry runs: the commands they print, in order, and their argument errors.

Nothing here needs gcloud, xpk or SLURM: stand-ins on PATH record any call (a dry run makes
none), and the remote / per-task command strings are run through bash with a stand-in `sorax`
that prints its arguments, so the quoting is checked end to end.
"""

import os
import pathlib
import shlex
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TPU_VM, XPK, SLURM = (ROOT / "launch" / n for n in ("tpu_vm.sh", "xpk.sh", "slurm.sbatch"))
TRICKY = "--config.data.caption_levels=['terse', \"alt\"] it's"  # spaces and both quotes


def _stub(path: pathlib.Path, body: str, shell: str = "/bin/sh") -> None:
  path.write_text(f"#!{shell}\n" + body)
  path.chmod(0o755)


@pytest.fixture
def env(tmp_path):
  """No SLURM job; gcloud, xpk, srun and scontrol stand-ins that leave a mark if called."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for tool in ("gcloud", "xpk", "srun", "scontrol", "tar"):
    _stub(bin_dir / tool, f'echo {tool} >> "{tmp_path}/called"\n')
  e = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
  e["PATH"] = f"{bin_dir}{os.pathsep}{e['PATH']}"
  e["TMPDIR"] = str(tmp_path)
  return e


def launch(script, *args, env, check=True):
  p = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env,
                     timeout=30)
  if check:
    assert p.returncode == 0, p.stderr
    assert not (pathlib.Path(env["TMPDIR"]) / "called").exists(), "a dry run ran a command"
  return p


def lines(p) -> list[list[str]]:
  return [shlex.split(line) for line in p.stdout.splitlines()]


def option(argv: list[str], name: str) -> str:
  return argv[argv.index(name) + 1]


def run_as_sorax(command: str, tmp_path, **extra_env) -> list[str]:
  """Runs a printed shell command string with `sorax` (and .venv/bin/sorax under ~/sorax) a
  stand-in; returns the arguments the stand-in got."""
  fake = "for a in \"$@\"; do printf '%s\\n' \"$a\"; done\n"
  home = tmp_path / "home"
  (home / "sorax" / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
  _stub(home / "sorax" / ".venv" / "bin" / "sorax", fake)
  (tmp_path / "fakebin").mkdir(exist_ok=True)
  _stub(tmp_path / "fakebin" / "sorax", fake)
  e = {"PATH": f"{tmp_path / 'fakebin'}{os.pathsep}/usr/bin:/bin", "HOME": str(home), **extra_env}
  out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=e, check=True)
  return out.stdout.splitlines()


TPU_ARGS = ["--name", "sorax-v5e", "--zone", "us-west4-a", "--config", "experiments/world.py:small",
            "--workdir", "runs/small"]
XPK_ARGS = ["--cluster", "c1", "--workload", "sorax-small", "--tpu-type", "v5litepod-16",
            "--docker-image", "gcr.io/p/sorax:latest", "--config", "experiments/world.py:small",
            "--workdir", "/data/runs/small"]
SLURM_ARGS = ["--config", "experiments/world.py:small", "--workdir", "/shared/runs/small"]
ALL = [(TPU_VM, TPU_ARGS), (XPK, XPK_ARGS), (SLURM, SLURM_ARGS)]


# ------------------------------------------------------------------------------- tpu_vm.sh


def test_tpu_vm_commands_in_order(env, tmp_path):
  p = launch(TPU_VM, "--dry-run", *TPU_ARGS, "--", "--config.train.steps=5", TRICKY, env=env)
  create, tar, scp, install, train = lines(p)
  assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "sorax-v5e"]
  assert option(create, "--zone") == "us-west4-a"
  assert option(create, "--accelerator-type") == "v5litepod-16"
  assert option(create, "--version") == "v2-alpha-tpuv5-lite"
  # The copy: an archive of the repo without .venv / runs / .git, sent to every worker.
  assert tar[0] == "tar" and option(tar, "-C") == str(ROOT)
  assert {"--exclude=./.venv", "--exclude=./runs", "--exclude=./.git"} <= set(tar)
  archive = option(tar, "-czf")
  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  assert scp[5] == archive and scp[6] == "sorax-v5e:sorax.tar.gz" and "--worker=all" in scp
  for ssh in (install, train):
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "sorax-v5e"]
    assert "--worker=all" in ssh and option(ssh, "--zone") == "us-west4-a"
  assert 'pip install' in option(install, "--command")
  assert '-e ".[tpu]"' in option(install, "--command")
  assert run_as_sorax(option(train, "--command"), tmp_path) == [
      "train", "--config", "experiments/world.py:small", "--workdir", "runs/small",
      "--config.train.steps=5", TRICKY]


def test_tpu_vm_options(env):
  p = launch(TPU_VM, "--dry-run", "--no-create", "--delete-after", "--project=my-proj",
             "--accelerator-type", "v5p-8", "--version", "v2-alpha-tpuv5", *TPU_ARGS,
             "--config.train.steps=5", env=env)
  cmds = lines(p)
  assert [c[4] for c in cmds if c[0] == "gcloud"] == ["scp", "ssh", "ssh", "delete"]
  assert all(option(c, "--project") == "my-proj" for c in cmds if c[0] == "gcloud")
  assert cmds[-1][5:] == ["sorax-v5e", "--zone", "us-west4-a", "--project", "my-proj", "--quiet"]
  assert "--config.train.steps=5" in option(cmds[-2], "--command")  # before `--` works too
  p = launch(TPU_VM, "--dry-run", "--accelerator-type", "v5p-8", "--version", "v2-alpha-tpuv5",
             *TPU_ARGS, env=env)
  create = lines(p)[0]
  assert option(create, "--accelerator-type") == "v5p-8"
  assert option(create, "--version") == "v2-alpha-tpuv5"


# ---------------------------------------------------------------------------------- xpk.sh


def test_xpk_command(env, tmp_path):
  p = launch(XPK, "--dry-run", *XPK_ARGS, "--zone", "us-west4-a", "--",
             "--config.train.steps=5", TRICKY, env=env)
  (cmd,) = lines(p)
  assert cmd[:3] == ["xpk", "workload", "create"]
  for flag, value in [("--cluster", "c1"), ("--workload", "sorax-small"),
                      ("--tpu-type", "v5litepod-16"), ("--num-slices", "1"),
                      ("--docker-image", "gcr.io/p/sorax:latest"), ("--zone", "us-west4-a")]:
    assert option(cmd, flag) == value
  assert "--project" not in cmd
  assert run_as_sorax(option(cmd, "--command"), tmp_path) == [
      "train", "--config", "experiments/world.py:small", "--workdir", "/data/runs/small",
      "--config.train.steps=5", TRICKY]
  (cmd,) = lines(launch(XPK, "--dry-run", *XPK_ARGS, "--num-slices=4", "--project", "pr",
                        env=env))
  assert option(cmd, "--num-slices") == "4" and option(cmd, "--project") == "pr"


# ---------------------------------------------------------------------------- slurm.sbatch


def test_slurm_headers():
  head = SLURM.read_text().splitlines()
  assert head[0].startswith("#!") and "bash" in head[0]
  sbatch = {line.split()[1].split("=")[0] for line in head if line.startswith("#SBATCH")}
  assert {"--nodes", "--ntasks-per-node", "--gpus-per-node", "--time"} <= sbatch
  assert "#SBATCH --ntasks-per-node=1" in head
  assert "sbatch" in SLURM.read_text().split("set -euo")[0]  # the usage names sbatch


def test_slurm_dry_run_outside_slurm(env, tmp_path):
  p = launch(SLURM, "--dry-run", *SLURM_ARGS, "--", "--config.train.steps=5", TRICKY, env=env)
  (cmd,) = lines(p)
  assert cmd[0] == "srun" and cmd[-3:-1] == ["bash", "-c"]
  # Each task's rank comes from its own $SLURM_PROCID, not from the batch script's.
  assert run_as_sorax(cmd[-1], tmp_path, SLURM_PROCID="3") == [
      "train", "--config", "experiments/world.py:small", "--workdir", "/shared/runs/small",
      "--coordinator", "node0:12345", "--num-processes", "2", "--process-id", "3",
      "--config.train.steps=5", TRICKY]


def test_slurm_inside_a_job(env, tmp_path):
  _stub(pathlib.Path(env["PATH"].split(os.pathsep)[0]) / "scontrol",
        'test "$1 $2 $3" = "show hostnames gpu[07-08]" && printf "gpu07\\ngpu08\\n"\n')
  env.update(SLURM_JOB_ID="42", SLURM_JOB_NODELIST="gpu[07-08]", SLURM_NTASKS="2")
  (cmd,) = lines(launch(SLURM, "--dry-run", *SLURM_ARGS, "--port", "2222", env=env))
  got = run_as_sorax(cmd[-1], tmp_path, SLURM_PROCID="1")
  assert option(got, "--coordinator") == "gpu07:2222"
  assert option(got, "--num-processes") == "2" and option(got, "--process-id") == "1"


def test_slurm_from_the_spool_copy(env, tmp_path):
  """sbatch runs a copy of the script from its spool folder: common.sh is found from the
  submit folder."""
  copy = tmp_path / "spool" / "slurm_script"
  copy.parent.mkdir()
  copy.write_text(SLURM.read_text())
  env["SLURM_SUBMIT_DIR"] = str(ROOT)
  (cmd,) = lines(launch(copy, "--dry-run", *SLURM_ARGS, env=env))
  assert cmd[0] == "srun"
  env["SLURM_SUBMIT_DIR"] = str(tmp_path)
  p = launch(copy, "--dry-run", *SLURM_ARGS, env=env, check=False)
  assert p.returncode == 2 and "repo root" in p.stderr


def test_slurm_refuses_to_run_outside_slurm(env):
  p = launch(SLURM, *SLURM_ARGS, env=env, check=False)
  assert p.returncode == 2 and "SLURM" in p.stderr.splitlines()[-1]


# -------------------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("script", [TPU_VM, XPK, SLURM], ids=lambda s: s.name)
def test_help(script, env):
  for flag in ("-h", "--help"):
    p = launch(script, flag, env=env)
    assert "Usage:" in p.stdout and "--dry-run" in p.stdout and "--config" in p.stdout


@pytest.mark.parametrize("script,args", ALL, ids=lambda s: getattr(s, "name", ""))
def test_argument_errors(script, args, env):
  i = args.index("--config")
  cases = {
      "missing required --config": args[:i] + args[i + 2:],
      "--workdir needs a value": args[:-1],  # the last option without its value
      "unknown argument --bogus": ["--bogus", *args],
  }
  for message, argv in cases.items():
    p = launch(script, "--dry-run", *argv, env=env, check=False)
    assert p.returncode == 2, (argv, p.stdout)
    assert p.stdout == ""
    assert p.stderr.splitlines()[-1] == f"{script.name}: error: {message}"
    assert "Usage:" in p.stderr


def test_bad_numbers(env):
  p = launch(XPK, "--dry-run", *XPK_ARGS, "--num-slices", "0", env=env, check=False)
  assert p.returncode == 2 and "--num-slices" in p.stderr.splitlines()[-1]
  p = launch(SLURM, "--dry-run", *SLURM_ARGS, "--port", "http", env=env, check=False)
  assert p.returncode == 2 and "--port" in p.stderr.splitlines()[-1]


def test_tpu_vm_without_dry_run_deletes_after_a_failure(env, tmp_path):
  """Not a dry run (stand-in gcloud and tar): the commands run in the dry run's order, and
  --delete-after deletes the TPU VM even when training fails."""
  log = tmp_path / "log"
  bin_dir = pathlib.Path(env["PATH"].split(os.pathsep)[0])
  record = f'{{ printf %q "${{0##*/}}"; printf " %q" "$@"; echo; }} >> "{log}"\n'
  _stub(bin_dir / "gcloud", record + 'case "$*" in *"sorax train"*) exit 7;; esac\n', "/bin/bash")
  _stub(bin_dir / "tar", record, "/bin/bash")
  dry = lines(launch(TPU_VM, "--dry-run", "--delete-after", *TPU_ARGS, env=env))
  p = launch(TPU_VM, "--delete-after", *TPU_ARGS, env=env, check=False)
  assert p.returncode == 7
  ran = [shlex.split(line) for line in log.read_text().splitlines()]
  assert ran == dry and ran[-1][4] == "delete"
  assert p.stderr.splitlines()[0] == "+ " + shlex.join(dry[0])  # each command echoed first
