"""``twinnn run``: N local processes, their environment, output forwarding and failures.

The scripts import no framework (each process starts in a fraction of a second); every
subprocess call is bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from twinnn import backends as registry
from twinnn.cli import main
from twinnn.distributed.launch import TIMEOUT_ENV, free_ports, launch, rank_env

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX process groups")


def _script(tmp_path: Path, body: str, name: str = "script.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "twinnn", "run", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a non-reaping init counts as gone)."""
    if Path("/proc/self/stat").exists():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone(pids: list[int], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(_alive(pid) for pid in pids)


def _lines(text: str, rank: int) -> list[str]:
    prefix = f"[rank {rank}] "
    return [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]


# --- the environment ------------------------------------------------------------------------------
ENV_SCRIPT = """
    import json, os, sys
    keys = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
            "MASTER_ADDR", "MASTER_PORT", "TF_CONFIG", "TWINNN_DIST_TIMEOUT", "TWINNN_BACKEND",
            "INHERITED"]
    env = {k: os.environ.get(k) for k in keys}
    env["cwd"] = os.getcwd()
    env["argv"] = sys.argv[1:]
    print(json.dumps(env))
    print(f"to stderr from {env['RANK']}", file=sys.stderr)
    sys.stdout.write("no newline at the end")
"""


def test_every_rank_gets_torchrun_and_tf_config_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _script(tmp_path, ENV_SCRIPT)
    monkeypatch.setenv("INHERITED", "yes")
    proc = _run(tmp_path, "-n", "3", script.name, "-n", "5", "--backend", "x")
    assert proc.returncode == 0, proc.stderr
    envs = []
    for rank in range(3):
        out = _lines(proc.stdout, rank)
        assert len(out) == 2 and out[1] == "no newline at the end", proc.stdout
        envs.append(json.loads(out[0]))
        assert _lines(proc.stderr, rank) == [f"to stderr from {rank}"]
    assert not [line for line in proc.stdout.splitlines() if not line.startswith("[rank ")]
    ports = set()
    for rank, env in enumerate(envs):
        assert env["RANK"] == env["LOCAL_RANK"] == env["ROLE_RANK"] == str(rank)
        assert env["WORLD_SIZE"] == env["LOCAL_WORLD_SIZE"] == "3"
        assert env["GROUP_RANK"] == "0" and env["MASTER_ADDR"] == "127.0.0.1"
        assert env["MASTER_PORT"] == envs[0]["MASTER_PORT"]
        assert env["TWINNN_DIST_TIMEOUT"] == "300" and env["INHERITED"] == "yes"
        assert env["argv"] == ["-n", "5", "--backend", "x"]  # after SCRIPT: the script's
        assert Path(env["cwd"]).resolve() == tmp_path.resolve()
        tf_config = json.loads(env["TF_CONFIG"])
        assert tf_config["task"] == {"type": "worker", "index": rank}
        assert tf_config["cluster"] == json.loads(envs[0]["TF_CONFIG"])["cluster"]
        ports = {int(w.split(":")[1]) for w in tf_config["cluster"]["worker"]}
        assert all(w.startswith("127.0.0.1:") for w in tf_config["cluster"]["worker"])
    assert len(ports) == 3 and int(envs[0]["MASTER_PORT"]) not in ports


def test_one_process_backend_and_timeout(tmp_path: Path) -> None:
    if not registry.installed_frameworks():
        pytest.skip("no backend installed")
    name = registry.installed_frameworks()[-1]
    alias = {"torch": "pytorch", "tensorflow": "tf"}[name]
    script = _script(tmp_path, ENV_SCRIPT)
    proc = _run(tmp_path, "-n", "1", "--backend", alias, "--timeout", "2.5", script.name)
    assert proc.returncode == 0, proc.stderr
    env = json.loads(_lines(proc.stdout, 0)[0])
    assert env["RANK"] == "0" and env["WORLD_SIZE"] == "1"
    assert env["TWINNN_BACKEND"] == name and env["TWINNN_DIST_TIMEOUT"] == "2.5"
    assert json.loads(env["TF_CONFIG"])["task"]["index"] == 0
    assert len(json.loads(env["TF_CONFIG"])["cluster"]["worker"]) == 1


def test_free_ports_and_rank_env() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8 and all(0 < p < 65536 for p in ports)
    env = rank_env(1, 2, master_port=ports[0], tf_ports=ports[1:3], timeout=300.0)
    assert env[TIMEOUT_ENV] == "300" and "TWINNN_BACKEND" not in env
    assert json.loads(env["TF_CONFIG"]) == {
        "cluster": {"worker": [f"127.0.0.1:{ports[1]}", f"127.0.0.1:{ports[2]}"]},
        "task": {"type": "worker", "index": 1},
    }


def test_large_output_is_forwarded_completely_and_in_order(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        import os, sys
        r = os.environ["RANK"]
        for i in range(20000):
            print(f"{r}:{i}:" + "x" * 50)
            if i % 1000 == 0:
                print(f"{r}:e{i}", file=sys.stderr)
        """,
    )
    proc = _run(tmp_path, "-n", "2", script.name)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for rank in range(2):
        assert _lines(proc.stdout, rank) == [f"{rank}:{i}:" + "x" * 50 for i in range(20000)]
        assert _lines(proc.stderr, rank) == [f"{rank}:e{i}" for i in range(0, 20000, 1000)]


# --- failures -------------------------------------------------------------------------------------
# rank 0 starts a grandchild, writes both pids, then sleeps; rank 1 waits for that file and fails
FAILING = """
    import os, signal, subprocess, sys, time
    from pathlib import Path
    {setup}
    rank = int(os.environ["RANK"])
    if rank != 1:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        Path(f"pids{rank}.tmp").write_text(f"{os.getpid()} {child.pid}")
        os.replace(f"pids{rank}.tmp", f"pids{rank}")
        print("rank", rank, "sleeping", flush=True)
        time.sleep(600)
    deadline = time.monotonic() + 30
    while not Path("pids0").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    print("rank 1 fails now", file=sys.stderr)
    {failure}
"""


def _failing(failure: str, setup: str = "pass") -> str:
    return FAILING.replace("{failure}", failure).replace("{setup}", setup)


@pytest.mark.parametrize(
    ("failure", "code", "how"),
    [
        ("sys.exit(3)", 3, "exit code 3"),
        ("os.kill(os.getpid(), signal.SIGKILL)", 1, "killed by SIGKILL"),
    ],
)
def test_a_failing_rank_stops_the_others(tmp_path: Path, failure: str, code: int, how: str) -> None:
    script = _script(tmp_path, _failing(failure))
    started = time.monotonic()
    proc = _run(tmp_path, "-n", "3", script.name)
    elapsed = time.monotonic() - started
    assert proc.returncode == code, proc.stderr
    assert elapsed < 20
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"twinnn run: rank 1 failed first ({how}); stopped ranks 0, 2"
    assert "[rank 1] rank 1 fails now" in proc.stderr
    assert "[rank 0] rank 0 sleeping" in proc.stdout
    pids = [int(p) for rank in (0, 2) for p in (tmp_path / f"pids{rank}").read_text().split()]
    assert _gone(pids), [pid for pid in pids if _alive(pid)]


def test_a_rank_that_ignores_sigterm_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # rank 0 and its child ignore SIGTERM (SIG_IGN survives exec): SIGKILL must follow
    script = _script(
        tmp_path, _failing("sys.exit(4)", "signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    )
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    assert launch(3, script.name, grace=0.2, kill_after=0.5) == 4
    assert time.monotonic() - started < 15
    err = capsys.readouterr().err
    assert (
        err.splitlines()[-1] == "twinnn run: rank 1 failed first (exit code 4); stopped ranks 0, 2"
    )
    pids = [int(p) for rank in (0, 2) for p in (tmp_path / f"pids{rank}").read_text().split()]
    assert _gone(pids), [pid for pid in pids if _alive(pid)]


def test_interrupting_the_launcher_stops_every_rank(tmp_path: Path) -> None:
    script = _script(tmp_path, _failing("time.sleep(600)"))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    launcher = subprocess.Popen(
        [sys.executable, "-m", "twinnn", "run", "-n", "3", script.name],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"pids{r}").exists() for r in (0, 2)):
            assert time.monotonic() < deadline, "the ranks did not start"
            time.sleep(0.05)
        launcher.send_signal(signal.SIGINT)
        _, err = launcher.communicate(timeout=TIMEOUT)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode == 128 + signal.SIGINT, err
    assert (
        err.strip().splitlines()[-1] == "twinnn run: interrupted by SIGINT; stopped ranks 0, 1, 2"
    )
    assert "KeyboardInterrupt" in err  # the ranks got the SIGINT
    pids = [int(p) for rank in (0, 2) for p in (tmp_path / f"pids{rank}").read_text().split()]
    assert _gone(pids), [pid for pid in pids if _alive(pid)]


def test_a_rank_that_exits_zero_early_is_not_a_failure(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        import os, time
        time.sleep(0.5 * int(os.environ["RANK"]))
        print("done")
        """,
    )
    proc = _run(tmp_path, "-n", "2", script.name)
    assert proc.returncode == 0 and proc.stderr == ""
    assert _lines(proc.stdout, 0) == _lines(proc.stdout, 1) == ["done"]


# --- usage ----------------------------------------------------------------------------------------
def test_bad_usage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = _script(tmp_path, "print('ran')\n")
    cases = [
        (["run", "-n", "0", str(script)], "expected an int >= 1, got '0'"),
        (["run", "-n", "two", str(script)], "expected an int >= 1, got 'two'"),
        (["run", str(script)], "required: -n"),
        (["run", "-n", "2", str(tmp_path / "missing.py")], "is not a file"),
        (["run", "-n", "2", "--backend", "jax", str(script)], "got 'jax'"),
        (["run", "-n", "2", "--timeout", "0", str(script)], "seconds > 0, got '0'"),
        (["run", "-n", "2", "--timeout", "nan", str(script)], "seconds > 0, got 'nan'"),
        (["run", "-n", "2", "--bogus", str(script)], "unrecognized arguments: --bogus"),
        (["run", "-n", "2"], "required: SCRIPT"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert message in captured.err, (argv, captured.err)
        assert "ran" not in captured.out


def test_a_backend_that_is_not_installed_is_bad_usage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _script(tmp_path, "print('ran')\n")
    monkeypatch.setattr(registry, "installed_frameworks", lambda: ["torch"])
    assert main(["run", "-n", "1", "--backend", "tf", str(script)]) == 2
    assert re.search(r"--backend tensorflow: not installed", capsys.readouterr().err)


def test_in_process_run_prefixes_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = _script(tmp_path, "import os; print('hello', os.environ['RANK'])\n")
    assert main(["run", "-n", "2", str(script)]) == 0
    out = capsys.readouterr().out
    assert sorted(out.splitlines()) == ["[rank 0] hello 0", "[rank 1] hello 1"]


def test_the_rank_that_caused_a_failure_is_named_not_the_one_that_lost_its_peer(
    tmp_path: Path,
) -> None:
    """Rank 0 ends first with PEER_LOST_EXIT (what an uncaught DistributedError exits with
    under ``init()``), rank 1 a moment later with its own error: rank 1 is named."""
    from twinnn.distributed.world import PEER_LOST_EXIT

    script = _script(
        tmp_path,
        f"""
        import os, sys, time
        if os.environ["RANK"] == "0":
            sys.exit({PEER_LOST_EXIT})
        time.sleep(1.0)
        sys.exit(3)
        """,
    )
    done = _run(tmp_path, "-n", "2", str(script))
    assert done.returncode == 3
    assert "twinnn run: rank 1 failed first (exit code 3)" in done.stderr
