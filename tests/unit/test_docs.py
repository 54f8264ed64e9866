"""The docs stay true: the configuration reference matches the settings models, the site builds with
--strict (every link and anchor resolves), and the README stays a front page whose links resolve."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backend.config import ProjectPolicy, Settings
from backend.configdoc import COMMAND, TARGET, render, settings_env_names

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_configuration_reference_is_current() -> None:
    assert TARGET == ROOT / "docs" / "configuration.md"
    assert TARGET.read_text() == render(), (
        f"docs/configuration.md is out of date with backend/config.py; regenerate it: {COMMAND}")


def test_every_knob_has_a_variable_and_a_description() -> None:
    env = settings_env_names()
    missing_env = [name for name in Settings.model_fields if name != "policy" and name not in env]
    assert not missing_env, f"Settings fields Settings.from_env does not read: {missing_env}"
    undescribed = [f"{model.__name__}.{name}" for model in (ProjectPolicy, Settings)
                   for name, info in model.model_fields.items() if not (info.description or "").strip()]
    assert not undescribed, f"give these fields description=... in backend/config.py: {undescribed}"


def test_settings_variables_are_the_ones_from_env_reads() -> None:
    env = settings_env_names()
    assert env["label_studio_url"] == "LABEL_STUDIO_URL"
    assert env["push_limit"] == "LABELLOOP_PUSH_LIMIT"
    assert env["image_allow"] == "LABELLOOP_IMAGE_ALLOW"
    assert Settings.from_env({env["push_limit"]: "7"}).push_limit == 7


def test_every_variable_config_py_names_is_documented() -> None:
    """A variable spelled in backend/config.py that the generator did not map would be missing from the docs."""
    source = (ROOT / "backend" / "config.py").read_text()
    spelled = set(re.findall(r'"((?:LABELLOOP|LABEL_STUDIO|BASIC_AUTH|DATABASE|MODEL)_[A-Z0-9_]+)"', source))
    documented = set(re.findall(r"^### `([A-Z0-9_]+)`$", TARGET.read_text(), flags=re.MULTILINE))
    assert spelled, "the pattern found no variable names in backend/config.py"
    assert not spelled - documented, f"read by config.py but not in docs/configuration.md: {spelled - documented}"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
                    reason="mkdocs / mkdocs-material not installed (pip install -e '.[dev]' installs them)")
def test_site_builds_strict(tmp_path: Path) -> None:
    """--strict fails on a link to a missing page or anchor and on a page left out of the nav (mkdocs.yml)."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "configuration" / "index.html").exists()
    assert (tmp_path / "assets" / "digits_curve.png").exists()


def test_readme_is_a_front_page() -> None:
    text = README.read_text()
    size = len(README.read_bytes())
    assert size < 20_000, f"README.md is {size} bytes; move detail into docs/ (the front page stays under 20 KB)"
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line for line in first_block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    assert commands[0].startswith("python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 ")
    assert commands[0].endswith("labelloop serve --port 9090")
    assert commands[1] == "bash .ci/run"
    assert "docker compose -f docker/compose.yaml up" in text
    assert "ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false" in text


def _github_slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _mkdocs_slugs(path: Path) -> set[str]:
    from markdown.extensions.toc import slugify

    headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.MULTILINE)
    return {slugify(h.replace("`", ""), "-") for h in headings}


def test_readme_links_resolve() -> None:
    text = README.read_text()
    own = {_github_slug(h.replace("`", "")) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        if not path:
            if anchor not in own:
                broken.append(target)
            continue
        file = ROOT / path
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _mkdocs_slugs(file):
            broken.append(target)
    assert not broken, f"README.md links that do not resolve: {broken}"


def test_docs_plot_is_the_benchmark_plot() -> None:
    """mkdocs serves only docs/, so the digits plot is copied there; the copy must be the benchmark's own."""
    source, copy = ROOT / "benchmarks" / "digits_curve.png", ROOT / "docs" / "assets" / "digits_curve.png"
    assert copy.read_bytes() == source.read_bytes(), f"refresh the copy: cp {source} {copy}"
