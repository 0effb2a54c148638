"""Rotation conversions in pure numpy: axis-angle, matrices, quaternions, 6-D.

Conventions:
  axis-angle: [..., 3], the rotation axis scaled by the angle in radians (SMPL).
  quaternion: [..., 4] as (w, x, y, z), unit norm.
  matrix:     [..., 3, 3], acting on column vectors (x' = R @ x).
  6-D:        [..., 6], two of the matrix's three rows or columns, Gram-Schmidt
              inverts it (`rot6d_to_matrix`). "rows" (the default): row 0 then
              row 1, pytorch3d's matrix_to_rotation_6d, which the reference
              (WalkAndText) used; "columns": column 0 then column 1, as Zhou et
              al. 2019 write it (wat_jax's features before the reference audit).

All functions work in float64 internally and keep leading dimensions.
"""

import numpy as np

# Below this angle the closed forms divide by ~0; their Taylor series are exact
# to float64 precision there.
_SMALL = 1e-4


def _skew(v: np.ndarray) -> np.ndarray:
    """[..., 3] -> [..., 3, 3] cross-product matrix."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    o = np.zeros_like(x)
    return np.stack(
        [np.stack([o, -z, y], -1), np.stack([z, o, -x], -1), np.stack([-y, x, o], -1)], -2
    )


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: R = I + A(t) S + B(t) S^2 with S = skew(axis_angle).

    Args:
      axis_angle: [..., 3] rotation vectors.

    Returns:
      [..., 3, 3] rotation matrices.
    """
    aa = np.asarray(axis_angle, np.float64)
    theta2 = np.sum(aa * aa, -1)
    theta = np.sqrt(theta2)
    small = theta < _SMALL
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta2 / 6.0, np.sin(safe) / safe)  # sin(t)/t
    b = np.where(small, 0.5 - theta2 / 24.0, (1.0 - np.cos(safe)) / (safe * safe))
    s = _skew(aa)
    eye = np.broadcast_to(np.eye(3), s.shape)
    return eye + a[..., None, None] * s + b[..., None, None] * (s @ s)


def axis_angle_to_quaternion(axis_angle: np.ndarray) -> np.ndarray:
    """[..., 3] rotation vectors -> [..., 4] unit quaternions (w, x, y, z)."""
    aa = np.asarray(axis_angle, np.float64)
    theta2 = np.sum(aa * aa, -1)
    theta = np.sqrt(theta2)
    small = theta < _SMALL
    safe = np.where(small, 1.0, theta)
    k = np.where(small, 0.5 - theta2 / 48.0, np.sin(0.5 * safe) / safe)  # sin(t/2)/t
    return np.concatenate([np.cos(0.5 * theta)[..., None], aa * k[..., None]], -1)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """[..., 4] quaternions (w, x, y, z), normalised here -> [..., 3, 3]."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, -1) for r in rows], -2)


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotations -> [..., 4] unit quaternions with w >= 0.

    Picks, per matrix, the largest of (w, x, y, z) to divide by, so no branch
    loses precision near 180 degrees.
    """
    m = np.asarray(matrix, np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # 4 * square of each component, from the diagonal.
    sq = np.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
    )
    sq = np.sqrt(np.maximum(sq, 0.0))
    # Candidate quaternions scaled by 2 * (chosen component); row i divides by component i.
    d21, d02, d10 = (
        m[..., 2, 1] - m[..., 1, 2],
        m[..., 0, 2] - m[..., 2, 0],
        m[..., 1, 0] - m[..., 0, 1],
    )
    s10, s02, s21 = (
        m[..., 1, 0] + m[..., 0, 1],
        m[..., 0, 2] + m[..., 2, 0],
        m[..., 2, 1] + m[..., 1, 2],
    )
    cands = np.stack(
        [
            np.stack([sq[..., 0] ** 2, d21, d02, d10], -1),
            np.stack([d21, sq[..., 1] ** 2, s10, s02], -1),
            np.stack([d02, s10, sq[..., 2] ** 2, s21], -1),
            np.stack([d10, s02, s21, sq[..., 3] ** 2], -1),
        ],
        -2,
    ) / (2.0 * np.maximum(sq, 1e-12)[..., None])
    best = np.argmax(sq, -1)
    q = np.take_along_axis(cands, best[..., None, None], -2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quaternion_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """[..., 4] unit quaternions -> [..., 3] rotation vectors, angle in [0, pi]."""
    q = np.asarray(q, np.float64)
    q = np.where(q[..., :1] < 0, -q, q)  # the short way round
    xyz = q[..., 1:]
    s = np.linalg.norm(xyz, axis=-1)
    theta = 2.0 * np.arctan2(s, q[..., 0])
    small = s < _SMALL
    # theta / sin(theta/2), which tends to 2 / w as theta -> 0.
    k = np.where(small, 2.0 / np.maximum(q[..., 0], 1e-12), theta / np.where(small, 1.0, s))
    return xyz * k[..., None]


def matrix_to_axis_angle(matrix: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotations -> [..., 3] rotation vectors."""
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def quaternion_slerp(q0: np.ndarray, q1: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Spherical interpolation from q0 (frac=0) to q1 (frac=1) along the short arc.

    Args:
      q0, q1: [..., 4] unit quaternions.
      frac: interpolation weights, broadcastable to [...].

    Returns:
      [..., 4] unit quaternions.
    """
    q0 = np.asarray(q0, np.float64)
    q1 = np.asarray(q1, np.float64)
    frac = np.asarray(frac, np.float64)[..., None]
    dot = np.sum(q0 * q1, -1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)  # q and -q are the same rotation
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    omega = np.arccos(dot)
    sin_omega = np.sin(omega)
    near = sin_omega < _SMALL  # nearly equal: lerp is exact enough and stable
    safe = np.where(near, 1.0, sin_omega)
    w0 = np.where(near, 1.0 - frac, np.sin((1.0 - frac) * omega) / safe)
    w1 = np.where(near, frac, np.sin(frac * omega) / safe)
    q = w0 * q0 + w1 * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of [..., 4] quaternions: the rotation b, then a."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, np.float64), -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def euler_xyz_to_quaternion(euler: np.ndarray) -> np.ndarray:
    """[..., 3] angles (x, y, z) -> [..., 4] quaternion of Rx(x) @ Ry(y) @ Rz(z)."""
    half = 0.5 * np.asarray(euler, np.float64)
    c, s = np.cos(half), np.sin(half)
    zero = np.zeros_like(c[..., 0])
    qx = np.stack([c[..., 0], s[..., 0], zero, zero], -1)
    qy = np.stack([c[..., 1], zero, s[..., 1], zero], -1)
    qz = np.stack([c[..., 2], zero, zero, s[..., 2]], -1)
    return quaternion_multiply(quaternion_multiply(qx, qy), qz)


ROT6D_CONVENTIONS = ("rows", "columns")


def _check_convention(convention: str) -> None:
    if convention not in ROT6D_CONVENTIONS:
        raise ValueError(f"6-D convention must be one of {ROT6D_CONVENTIONS}, got {convention!r}")


def matrix_to_rot6d(matrix: np.ndarray, convention: str = "rows") -> np.ndarray:
    """[..., 3, 3] -> [..., 6]: rows 0 and 1 of each matrix ("rows") or columns 0 and 1."""
    _check_convention(convention)
    m = np.asarray(matrix)
    if convention == "rows":
        return np.concatenate([m[..., 0, :], m[..., 1, :]], -1)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], -1)


def rot6d_to_matrix(rot6d: np.ndarray, convention: str = "rows") -> np.ndarray:
    """[..., 6] -> [..., 3, 3] by Gram-Schmidt on the two rows (or columns) it holds."""
    _check_convention(convention)
    matrix = _gram_schmidt(rot6d)  # the two vectors as columns
    return np.swapaxes(matrix, -1, -2) if convention == "rows" else matrix


def _gram_schmidt(rot6d: np.ndarray) -> np.ndarray:
    """[..., 6] -> [..., 3, 3] whose columns 0 and 1 span the two 3-vectors, right-handed."""
    d = np.asarray(rot6d, np.float64)
    a, b = d[..., :3], d[..., 3:]
    c0 = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b - np.sum(c0 * b, -1, keepdims=True) * c0
    c1 = b / np.linalg.norm(b, axis=-1, keepdims=True)
    c2 = np.cross(c0, c1)
    return np.stack([c0, c1, c2], -1)
