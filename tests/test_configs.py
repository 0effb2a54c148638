"""base_config declares every key the library reads; experiments only set values.

The library reads config attributes and never restates a default with
`.get(key, default)`, so a key missing from a config is an error where it is
read, and a default lives in one place (wat_jax/configs.py).
"""

import importlib
import pathlib
import re

import pytest

from wat_jax.configs import base_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENTS = {
    "toy": ("smoke", "demo"),
    "babel60": ("smoke", "demo", "paper"),
    "densegait": ("smoke", "demo", "paper"),
}
# A read of a config block with a fallback: config.eval.get("x", 1), cfg.get(...), ev.get(...).
CONFIG_GET = re.compile(r"\b(config|cfg|\w+_cfg|ev)(\.\w+)*\.get\(")


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if hasattr(v, "items"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _variants():
    for name, variants in EXPERIMENTS.items():
        for variant in variants:
            yield name, variant


@pytest.mark.parametrize("name,variant", list(_variants()))
def test_experiments_set_only_keys_base_config_declares(name, variant):
    config = importlib.import_module(f"experiments.{name}").get_config(variant)
    base, have = _flat(base_config()), _flat(config)
    assert set(base) <= set(have), f"{name}:{variant} drops {sorted(set(base) - set(have))}"
    # Only the data block is the experiment's own: every other key is declared once, in base.
    extra = sorted(k for k in set(have) - set(base) if not k.startswith("data."))
    assert not extra, f"{name}:{variant} sets keys base_config does not declare: {extra}"


def test_library_reads_config_attributes_not_get_with_defaults():
    offenders = []
    for path in sorted((ROOT / "wat_jax").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if CONFIG_GET.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_an_older_config_json_reads_back_as_it_trained(tmp_path):
    """Keys added since a run was written are filled with the values it trained with."""
    import json

    from experiments import babel60
    from wat_jax import run_config

    old = run_config.to_json(babel60.get_config("demo"))
    for block, key in (("model", "norm_eps"), ("optim", "decay")):
        del old[block][key]
    for key in ("rot6d", "feature_joints", "translation", "body_model", "partial_chunks"):
        del old["data"][key]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    config = run_config.load(str(tmp_path))
    assert config.model.norm_eps == 1e-6 and config.optim.decay == "matrices"
    assert config.data.rot6d == "columns" and tuple(config.data.feature_joints) == tuple(range(24))
    assert config.data.translation == "root" and config.data.partial_chunks is True
    # Every key a legacy default names exists in today's configs, under the same task.
    for task, keys in run_config.LEGACY_DEFAULTS.items():
        for name, variant in _variants():
            config = importlib.import_module(f"experiments.{name}").get_config(variant)
            if task in ("", config.task):
                assert set(keys) <= set(_flat(config.to_dict())), (name, variant)
    # A config.json that has the keys keeps its own values.
    current = run_config.to_json(babel60.get_config("paper"))
    path.write_text(json.dumps(current))
    config = run_config.load(str(tmp_path))
    assert config.data.rot6d == "rows" and config.model.norm_eps == 1e-5
