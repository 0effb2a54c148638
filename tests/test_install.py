"""The package: pyproject.toml against requirements.txt, its console scripts, and an
installed copy working from another folder.

How "works from another directory" is proven, offline and in seconds: a throwaway
virtual environment (`python -m venv --without-pip`) whose only view of the
dependencies is a .pth file naming the folders on this interpreter's path but the
checkout (so nothing is downloaded or copied); pip, run by that environment's python, installs the package
into it, built by the setuptools already installed (--no-build-isolation --no-index
--no-deps) from a copy of the sources, so the repository gets no build/ or .egg-info.
It is a regular, not an editable, install: the package must then carry everything it
reads at run time (the prompts, the search page), which an editable install into the
checkout would hide. Then, from an empty folder with PYTHONPATH unset, `import
wat_jax` must come from that environment, and every `python -m wat_jax...` command
README documents, and every console script, must answer --helpshort."""

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the installed package needs beside wat_jax/ (pyproject's readme and license-files).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "wat_jax", "experiments")
# Tools with a main() but no zero-argument function to point a console script at (flags
# defined under `if __name__ == "__main__":`). Each needs a `run()` (define the flags, then
# app.run(main)) and a [project.scripts] line; today every tool has both.
WITHOUT_ENTRY_FUNCTION: set[str] = set()
# Commands of ours that README does not (yet) show, run from outside the checkout too.
ALSO_RUN = ("wat_jax.tools.report", "wat_jax.tools.app")


def pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirement(text: str) -> tuple[str, str]:
    """("name", "specifier") of a requirement string, markers and comments dropped."""
    text = text.split("#", 1)[0].split(";", 1)[0].strip()
    match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)", text)
    assert match, f"not a requirement: {text!r}"
    return normalise(match.group(1)), match.group(3).strip()


def pinned() -> list[tuple[str, str, str]]:
    """requirements.txt as (name, version, the whole line), one per pin."""
    pins = []
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        for line in f:
            if not line.split("#", 1)[0].strip():
                continue
            name, spec = split_requirement(line)
            assert spec.startswith("=="), f"requirements.txt pins exact versions: {line!r}"
            pins.append((name, spec[2:].strip(), line.strip()))
    return pins


def test_pyproject_is_pep621_with_python_311():
    meta = pyproject()
    project = meta["project"]
    assert project["name"] == "wat-jax"
    assert project["requires-python"] == ">=3.11"
    assert project["license"] == "Apache-2.0"
    for path in [project["readme"], *project["license-files"]]:
        assert os.path.isfile(os.path.join(ROOT, path)), path
    assert meta["build-system"]["build-backend"] == "setuptools.build_meta"
    with open(os.path.join(ROOT, "LICENSE")) as f:
        assert "Apache License" in f.readline() + f.readline()
    assert set(project["optional-dependencies"]) == {"test", "bench"}


def test_dependencies_name_the_packages_requirements_pins():
    meta = pyproject()
    project = meta["project"]
    runtime = {split_requirement(r)[0] for r in project["dependencies"]}
    test = {split_requirement(r)[0] for r in project["optional-dependencies"]["test"]}
    build = {split_requirement(r)[0] for r in meta["build-system"]["requires"]}
    assert not runtime & test, "a package is both a dependency and a test extra"
    # requirements.txt = what runs + what tests + what builds (nothing of the bench extra)
    assert {name for name, _, _ in pinned()} - build == runtime | test
    bench = {split_requirement(r)[0] for r in project["optional-dependencies"]["bench"]}
    assert bench == {"torch", "sentence-transformers"}


def test_every_pin_lies_in_its_range():
    from packaging.specifiers import SpecifierSet

    meta = pyproject()
    ranges = dict(
        split_requirement(r)
        for r in meta["project"]["dependencies"]
        + meta["project"]["optional-dependencies"]["test"]
        + meta["build-system"]["requires"]
    )
    outside = [
        line
        for name, version, line in pinned()
        if not SpecifierSet(ranges[name]).contains(version, prereleases=True)
    ]
    assert not outside, f"pins outside pyproject.toml's ranges: {outside}"


def test_console_scripts_import_and_take_no_arguments():
    scripts = pyproject()["project"]["scripts"]
    assert all(name.startswith("wat-jax") for name in scripts)
    # In a fresh interpreter: importing wat_jax.main here would define its flags in
    # this process's absl registry.
    probe = (
        "import importlib, inspect, json, sys\n"
        "out = {}\n"
        "for name, target in json.loads(sys.argv[1]).items():\n"
        "    module, _, attr = target.partition(':')\n"
        "    fn = importlib.import_module(module)\n"
        "    for part in attr.split('.'):\n"
        "        fn = getattr(fn, part)\n"
        "    inspect.signature(fn).bind()\n"
        "    out[name] = callable(fn)\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(scripts)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout) == {name: True for name in scripts}


def test_every_command_line_has_a_console_script_or_is_listed():
    scripts = {t.partition(":")[0] for t in pyproject()["project"]["scripts"].values()}
    tools = os.path.join(ROOT, "wat_jax", "tools")
    with_main = {"wat_jax.main"}
    for name in sorted(os.listdir(tools)):
        if name.endswith(".py") and name != "__init__.py":
            with open(os.path.join(tools, name)) as f:
                if re.search(r"^def main\(", f.read(), re.MULTILINE):
                    with_main.add(f"wat_jax.tools.{name[:-3]}")
    missing = with_main - scripts - WITHOUT_ENTRY_FUNCTION
    assert not missing, f"command lines without a console script: {sorted(missing)}"
    stale = WITHOUT_ENTRY_FUNCTION & scripts
    assert not stale, (
        f"these have console scripts now: take them off WITHOUT_ENTRY_FUNCTION: {stale}"
    )
    for module in WITHOUT_ENTRY_FUNCTION & with_main:  # gained a run(): add its script
        path = os.path.join(ROOT, *module.split(".")) + ".py"
        with open(path) as f:
            assert not re.search(r"^def run\(\)", f.read(), re.MULTILINE), (
                f"{module} has a run() now: add its console script to pyproject.toml and "
                "take it off WITHOUT_ENTRY_FUNCTION"
            )


def documented_modules() -> list[str]:
    """The modules of README's `python -m wat_jax...` commands, and ALSO_RUN."""
    with open(os.path.join(ROOT, "README.md")) as f:
        found = re.findall(r"python -m (wat_jax(?:\.\w+)*)", f.read())
    return sorted(set(found) | set(ALSO_RUN))


def _build_setuptools_ok() -> str | None:
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return "setuptools is not installed"
    if int(version.split(".")[0]) < 77:
        return f"setuptools {version} is older than 77 (pyproject's license string)"
    return None


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A throwaway environment with the package installed (see the module docstring)."""
    problem = _build_setuptools_ok()
    assert problem is None, (
        f"{problem}: building offline needs the setuptools that requirements.txt pins "
        "(pip install -r requirements.txt)"
    )
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    for name in SOURCES:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy(path, src / name)
    env_dir = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = str(env_dir / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # This interpreter's path holds the dependencies (and pip, setuptools), including
    # folders its own .pth files add; a .pth in the new environment appends them after
    # its own site-packages. The checkout itself stays off: wat_jax must come from the
    # install.
    deps = [
        p
        for p in dict.fromkeys(sys.path)
        if p
        and os.path.isdir(p)
        and os.path.realpath(p) != ROOT
        and not os.path.realpath(p).startswith(os.path.join(ROOT, "tests"))
    ]
    with open(os.path.join(purelib, "_wat_jax_test_deps.pth"), "w") as f:
        f.write("\n".join(deps) + "\n")
    proc = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--disable-pip-version-check", "--quiet", str(src)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=str(base),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(JAX_PLATFORMS="cpu", VIRTUAL_ENV=str(env_dir))
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return {"python": python, "bin": str(env_dir / "bin"), "cwd": str(elsewhere), "env": env}


def run_there(installed, args, timeout=300):
    return subprocess.run(
        args,
        check=False,
        cwd=installed["cwd"],
        env=installed["env"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_installed_package_imports_from_another_folder_with_its_data(installed):
    probe = (
        "import json, os, wat_jax\n"
        "from wat_jax.text import prompts\n"
        "from wat_jax.tools import app\n"
        "print(json.dumps([wat_jax.__file__, sorted(os.listdir(prompts.prompts_dir())),"
        " sorted(os.listdir(app.STATIC_DIR))]))\n"
    )
    proc = run_there(installed, [installed["python"], "-c", probe])
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, prompt_files, static_files = json.loads(proc.stdout)
    env_dir = os.path.dirname(installed["bin"])
    assert where.startswith(env_dir), f"wat_jax imported from {where}, not the install"
    want = sorted(os.listdir(os.path.join(ROOT, "experiments", "prompts")))
    assert prompt_files == want
    assert {"index.html", "app.js", "app.css"} <= set(static_files)


def test_documented_commands_answer_from_another_folder(installed):
    modules = documented_modules()
    assert "wat_jax.main" in modules and "wat_jax.tools.search" in modules
    for module in modules:
        proc = run_there(installed, [installed["python"], "-m", module, "--helpshort"])
        output = proc.stdout + proc.stderr
        # absl's --helpshort prints the usage and exits 1
        assert proc.returncode in (0, 1), (module, output[-3000:])
        assert "Traceback" not in output and "No module named" not in output, (module, output)
        assert "--" in proc.stdout, (module, output[-2000:])


def test_console_scripts_run_from_another_folder(installed):
    for name in pyproject()["project"]["scripts"]:
        script = os.path.join(installed["bin"], name)
        assert os.access(script, os.X_OK), f"{name} was not installed"
        with open(script) as f:
            assert f.readline().strip() == f"#!{installed['python']}", name
        proc = run_there(installed, [script, "--helpshort"])
        output = proc.stdout + proc.stderr
        assert proc.returncode in (0, 1) and "Traceback" not in output, (name, output[-3000:])
        assert "--" in proc.stdout, (name, output[-2000:])
