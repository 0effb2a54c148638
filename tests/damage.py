"""Damages a checkpoint the way a half-copied one is damaged, for the fault tests."""

import os


def damage_checkpoint(workdir, step) -> list[str]:
    """Truncates every array-data file of checkpoints/<step>/state to 64 bytes.

    Orbax's OCDBT store may spread the arrays over several data files (`d/` folders),
    and which file holds the params varies from run to run; cutting only the largest
    could leave the params readable, so a params-only reader would rightly succeed.
    Every data file is cut, so params and optimizer state alike are damaged; the
    metadata files stay, as in a copy that stopped part-way.

    Returns:
      The truncated files.
    """
    root = os.path.join(os.fspath(workdir), "checkpoints", str(step), "state")
    cut = []
    for base, _, names in os.walk(root):
        if os.path.basename(base) != "d":
            continue
        for name in names:
            path = os.path.join(base, name)
            with open(path, "r+b") as f:
                f.truncate(64)
            cut.append(path)
    if not cut:
        raise AssertionError(f"{root}: no array data files to damage")
    return cut
