"""A wheel install works (issue 11, point 7): build the wheel, install it into a fresh virtual
environment, and run the main commands from outside the checkout.

The wheel must carry the package data the code reads beside itself (the DeepSpeed configs of
phase 2, the estimator's measured.json). The environment sees the system's packages
(``--system-site-packages``: torch & co. are not downloaded again), which may include an editable
install of this checkout; the test asserts that the wheel's copy is the one imported.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DATA = ["wandata/train/configs/zero3.json", "wandata/train/configs/zero2_offload.json",
                "wandata/train/measured.json"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools")
    # Built from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for pkg in ("wandata", "tools"):   # tools/ is copied so that the test sees it is left out
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = root / "dist"
    # No build isolation: the build backend (setuptools, a dev dependency) is already here, and
    # nothing needs to be fetched to build a pure-Python wheel.
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = dist.glob("wandata-*.whl")
    return whl


def test_the_wheel_carries_the_package_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [n for n in names if n.startswith("tools/")], "development tools must stay out of the wheel"
    for data in PACKAGE_DATA:
        assert data in names
        assert zipfile.ZipFile(wheel).read(data) == (REPO / data).read_bytes()


def test_the_main_commands_run_from_the_installed_wheel(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    py = env_dir / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                        "--no-index", "--force-reinstall", str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    exe = env_dir / "bin" / "wandata"
    work = tmp_path / "elsewhere"  # not the checkout, whose folders would shadow the installed package
    work.mkdir()
    # The venv shares the system's packages (so that no multi-GB torch is fetched), and those
    # include the dev extras. Shadow each dev-only package with one that refuses to import, so
    # that the main commands are shown to run without them, as after `pip install wandata[train]`.
    blocked = tmp_path / "no-dev-extras"
    for name in ("skimage", "pytest", "tools", "toml", "ray"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError('{name} is a development-only package, not installed here')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(blocked)

    def run(*args, ok=(0,)):
        res = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=work, env=env,
                             timeout=600)
        assert res.returncode in ok, (args, res.stdout[-2000:], res.stderr[-3000:])
        return res

    where = run(py, "-c", "import wandata, wandata.train.launch, wandata.train.estimate; print(wandata.__file__); "
                          "print(wandata.train.launch.__file__); print(wandata.train.estimate.MEASURED)")
    site = (env_dir / "lib").resolve()
    for line in where.stdout.split():
        assert Path(line).resolve().is_relative_to(site), f"{line} is not the wheel's copy"

    assert run(exe, "--version").stdout.strip().startswith("wandata, version")
    assert "ingest" in run(exe, "--help").stdout
    assert run(py, "-c", "import skimage", ok=(1,)).returncode == 1   # the shadows are in force
    ds = work / "ds"
    # Small settings so that the whole test stays short; the sample data, the real chain.
    run(exe, "ingest", REPO / "sample_data", "-o", ds, "--quiet", "--frames", "17", "--detector", "adaptive",
        "--preset", "ultrafast")
    run(exe, "export", "-d", ds, "--fallback-caption", "a clip")
    p1 = json.loads(run(exe, "train", "-d", ds, "--phase", "1", "--dry-run", "--json").stdout)
    assert p1["estimate"] is not None  # read from the wheel's measured.json
    assert Path(p1["measured_file"]).resolve().is_relative_to(site)
    pytest.importorskip("deepspeed")  # phase 2 checks for it before it prints a launch
    p2 = json.loads(run(exe, "train", "-d", ds, "--phase", "2", "--gpus", "2", "--dry-run", "--json").stdout)
    cmd = p2["command"]
    ds_config = Path(cmd[cmd.index("--deepspeed_config_file") + 1])
    assert ds_config.resolve().is_relative_to(site) and json.loads(ds_config.read_text())["zero_optimization"]
    assert cmd[-4:-2] == ["--module", "wandata.train.run"]   # the installed package's, by module name
