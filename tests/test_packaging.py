"""The installed project claims one top-level name, ``harness``: a user's own ``tasks`` or ``defenses``
package keeps working beside ours."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_installed_package_lives_under_harness():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(name == "harness" or name.startswith("harness.") for name in config["packages"])
    # the task and defense folders stay at the top of the repository and install under harness
    assert config["package-dir"] == {"harness.tasks": "tasks", "harness.defenses": "defenses"}


def test_a_users_own_tasks_and_defenses_packages_keep_working(tmp_path):
    for name in ("tasks", "defenses"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"OWNER = 'user-{name}'\n")
    code = (
        "import tasks, defenses\n"
        "from harness import registries\n"
        "print(len(registries.tasks().names()), len(registries.defenses().names()))\n"
        "registries.defenses().get('self-reminder'); registries.tasks().get('xstest').loader.load()\n"
        "import tasks as again, defenses as again_d\n"
        "print(again.OWNER, again_d.OWNER)\n"
    )
    # cwd = the user's project, so its folders come first on sys.path; harness comes from the install
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    counts, owners = proc.stdout.strip().splitlines()
    assert int(counts.split()[0]) >= 20 and int(counts.split()[1]) >= 12
    assert owners == "user-tasks user-defenses"
