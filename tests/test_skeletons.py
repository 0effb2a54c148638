"""data/skeletons.py: ids agree with names, trees and sides are sound, users share it,
and the modules around it import alone (the import graph: tests/test_imports.py); only
the tasks branch on the task."""

import ast
import os
import subprocess
import sys

import numpy as np
import pytest

from wat_jax.reporting import pictures
from wat_jax.data import densegait, synthetic_babel
from wat_jax.data.skeletons import SMPL, OpenPose18

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYOUTS = (OpenPose18, SMPL)


def _ids(layout):
    """The layout's joint-id attributes: upper-case names that are joint names."""
    names = {name.upper() for name in layout.JOINTS}
    return {k: v for k, v in vars(layout).items() if k in names}


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.__name__)
def test_every_joint_has_an_id_that_names_it(layout):
    ids = _ids(layout)
    assert len(ids) == len(layout.JOINTS) == len(set(layout.JOINTS))
    for name, j in ids.items():
        assert type(j) is int and layout.JOINTS[j] == name.lower(), name


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.__name__)
def test_left_and_right_mirror_each_other(layout):
    left = [layout.JOINTS[j] for j in layout.LEFT]
    right = [layout.JOINTS[j] for j in layout.RIGHT]
    assert all(n.startswith("l_") for n in left) and all(n.startswith("r_") for n in right)
    assert [n[2:] for n in left] == [n[2:] for n in right]
    # Every sided joint is listed: the rest are on the midline.
    sided = {j for j, n in enumerate(layout.JOINTS) if n[:2] in ("l_", "r_")}
    assert sided == set(layout.LEFT) | set(layout.RIGHT)


def test_openpose_bones_form_one_tree_over_18_joints():
    assert len(OpenPose18.JOINTS) == 18
    bones = OpenPose18.BONES
    assert len(bones) == len(OpenPose18.JOINTS) - 1
    reached, frontier = {OpenPose18.NECK}, [OpenPose18.NECK]
    while frontier:
        j = frontier.pop()
        for a, b in bones:
            for near, far in ((a, b), (b, a)):
                if near == j and far not in reached:
                    reached.add(far)
                    frontier.append(far)
    assert reached == set(range(18))
    # OpenPose's own pairs (COCO-18 order), as pictures.py drew them before.
    assert bones[:3] == ((1, 2), (2, 3), (3, 4)) and bones[-2:] == ((0, 15), (15, 17))
    assert OpenPose18.FACE == (0, 14, 15)


def test_openpose_limbs_are_consecutive_ids():
    # synthetic_densegait poses a limb as root, root + 1, root + 2.
    op = OpenPose18
    for root, mid, end in (
        (op.R_SHOULDER, op.R_ELBOW, op.R_WRIST),
        (op.L_SHOULDER, op.L_ELBOW, op.L_WRIST),
        (op.R_HIP, op.R_KNEE, op.R_ANKLE),
        (op.L_HIP, op.L_KNEE, op.L_ANKLE),
    ):
        assert (mid, end) == (root + 1, root + 2)


def test_smpl_tree_offsets_and_feature_rows():
    parents = SMPL.PARENTS
    assert len(parents) == len(SMPL.JOINTS) == 24 and parents[SMPL.PELVIS] == -1
    assert all(0 <= p < j for j, p in enumerate(parents) if j)
    assert parents[SMPL.L_KNEE] == SMPL.L_HIP and parents[SMPL.HEAD] == SMPL.NECK
    assert parents[SMPL.L_HAND] == SMPL.L_WRIST and parents[SMPL.R_HAND] == SMPL.R_WRIST
    assert SMPL.OFFSETS.shape == (24, 3) and not SMPL.OFFSETS.flags.writeable
    # Left offsets are the right ones with x (the body's left) negated.
    np.testing.assert_array_equal(
        SMPL.OFFSETS[list(SMPL.LEFT)], SMPL.OFFSETS[list(SMPL.RIGHT)] * [-1, 1, 1]
    )
    assert SMPL.BODY_JOINTS == 22 and SMPL.JOINTS[SMPL.BODY_JOINTS - 1] == "r_wrist"
    assert (SMPL.FEATURE_ROWS, SMPL.TRANSLATION_ROW) == (25, 24)


def test_loaders_generators_and_pictures_use_the_one_layout():
    assert densegait.JOINTS is OpenPose18.JOINTS
    assert (densegait.NOSE, densegait.NECK, densegait.R_HIP, densegait.L_HIP) == (0, 1, 8, 11)
    assert pictures.SMPL is SMPL and pictures.OpenPose18 is OpenPose18
    assert synthetic_babel.NUM_BODY == SMPL.BODY_JOINTS
    for name in ("PELVIS", "L_HIP", "R_KNEE", "SPINE2", "NECK", "HEAD", "L_SHOULDER", "R_ELBOW"):
        assert getattr(synthetic_babel, name) == getattr(SMPL, name), name


# Modules this layout and the one-form losses touch.
MODULES = (
    "wat_jax.losses",
    "wat_jax.objectives",
    "wat_jax.reporting.pictures",
    "wat_jax.data.skeletons",
    "wat_jax.data.densegait",
    "wat_jax.data.synthetic_densegait",
    "wat_jax.data.synthetic_babel",
)


def test_each_module_imports_alone_in_a_fresh_interpreter():
    # One interpreter per module: a circle of top-level imports fails in some order.
    for module in MODULES:
        run = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, (module, run.stderr[-2000:])


def task_branches(source: str) -> list[int]:
    """Lines of `source` that compare a config's task name (`X.task ==`, `!=`, `in`, or
    `X.get("task")` compared): a branch on the task outside the task's own code."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        for side in [node.left, *node.comparators]:
            is_attr = isinstance(side, ast.Attribute) and side.attr == "task"
            is_get = (
                isinstance(side, ast.Call)
                and isinstance(side.func, ast.Attribute)
                and side.func.attr == "get"
                and side.args
                and isinstance(side.args[0], ast.Constant)
                and side.args[0].value == "task"
            )
            if is_attr or is_get:
                found.append(node.lineno)
                break
    return found


def test_task_branch_finder_sees_the_forms():
    source = (
        'if config.task == "toy": pass\n'
        'if config.get("task") != "babel60": pass\n'
        "x = config.task\n"
        'if self.config.task in ("a", "b"): pass\n'
        "if name not in TASKS: pass\n"
    )
    assert task_branches(source) == [1, 2, 4]


def test_only_the_tasks_branch_on_the_task():
    # What differs by experiment is asked of the run's Task (wat_jax/tasks/base.py).
    from tests.test_imports import library_sources

    offenders = []
    for rel, source in library_sources("tasks"):
        offenders += [f"{rel}:{line}" for line in task_branches(source)]
    assert offenders == []
