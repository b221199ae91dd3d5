"""SE3 rigid transforms, as a thin wrapper over pypose.

The wrapper mirrors the interface of princeton-vl's lietorch (``SE3.exp``, ``log``, ``inv``,
``*``, ``act``, ``adj``, ``retr``, ``matrix``, ``data``), so that lietorch can replace pypose
behind it where a user has it installed, with no change elsewhere in the project.

Conventions:
- Storage: ``data`` is a (..., 7) tensor ``[tx, ty, tz, qx, qy, qz, qw]``: translation, then a unit
  quaternion with the scalar last. This is exactly the TUM trajectory order.
- Tangent vectors are (..., 6) ``[tau, phi]``: translational part first, rotation (axis-angle) last.
- ``X * Y`` composes: ``(X * Y).act(p) == X.act(Y.act(p))``.
- Perturbations are on the left: ``X.retr(xi) == SE3.exp(xi) * X``. The adjoint satisfies
  ``X * SE3.exp(xi) == SE3.exp(X.adj(xi)) * X``.
- Which frames a transform maps between is the caller's to say: write ``T_ab`` for the transform
  taking points in frame b to frame a (so a camera-to-world pose is ``T_wc``).

All operations are batched over leading dimensions, differentiable, and device/dtype agnostic.
Where no gradient is recorded (the SLAM system runs under ``torch.no_grad``), composition,
inversion, ``exp`` and ``matrix()`` use the plain quaternion formulas below instead of pypose's operators:
the same values at a fraction of the per-call overhead, which dominates for the small batches of
tracking. Differentiate through ``matrix()``, ``act()`` or ``log()``: the gradient pypose reports
for the raw ``data`` (the quaternion) follows its tangent-space convention, not the ambient derivative of the 7 numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import pypose as pp
import torch


class SE3:
    """A batch of rigid transforms with shape ``self.shape`` (the data's leading dimensions)."""

    __slots__ = ("data",)

    def __init__(self, data: torch.Tensor):
        if data.shape[-1] != 7:
            raise ValueError(f"SE3 data must end in 7 values [t, q], got shape {tuple(data.shape)}")
        self.data = data

    # ------------------------------------------------------------------ constructors
    @classmethod
    def identity(cls, *shape: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> SE3:
        data = torch.zeros(*shape, 7, dtype=dtype, device=device)
        data[..., 6] = 1.0
        return cls(data)

    @classmethod
    def exp(cls, xi: torch.Tensor) -> SE3:
        """Exponential map of (..., 6) tangent vectors ``[tau, phi]``."""
        if _recording(xi):
            return cls(pp.se3(xi).Exp().tensor())
        return cls(_exp(xi))

    @classmethod
    def from_matrix(cls, matrix: torch.Tensor) -> SE3:
        """From (..., 4, 4) homogeneous matrices (the rotation block must be orthonormal)."""
        return cls(_normalised(pp.mat2SE3(matrix, check=False).tensor()))

    @classmethod
    def from_tum(cls, values: torch.Tensor) -> SE3:
        """From (..., 7) TUM values ``tx ty tz qx qy qz qw``; the quaternion is normalised."""
        q = values[..., 3:] / values[..., 3:].norm(dim=-1, keepdim=True)
        return cls(torch.cat([values[..., :3], q], dim=-1))

    # ------------------------------------------------------------------ group operations
    @property
    def _lie(self) -> pp.LieTensor:
        return pp.SE3(self.data)

    def log(self) -> torch.Tensor:
        """Logarithm map: (..., 6) tangent vectors ``[tau, phi]``."""
        return self._lie.Log().tensor()

    def inv(self) -> SE3:
        if _recording(self.data):
            return SE3(self._lie.Inv().tensor())
        conjugate = self.data[..., 3:] * self.data.new_tensor([-1.0, -1.0, -1.0, 1.0])
        return SE3(torch.cat([-_rotate(conjugate, self.data[..., :3]), conjugate], dim=-1))

    def __mul__(self, other: SE3) -> SE3:
        if not isinstance(other, SE3):
            return NotImplemented
        if _recording(self.data, other.data):
            return SE3(_normalised((self._lie * pp.SE3(other.data)).tensor()))
        q1, q2 = self.data[..., 3:], other.data[..., 3:]
        translation = self.data[..., :3] + _rotate(q1, other.data[..., :3])
        quaternion = _quaternion_product(q1, q2)
        quaternion = quaternion / quaternion.norm(dim=-1, keepdim=True)
        return SE3(torch.cat([translation.expand(*quaternion.shape[:-1], 3), quaternion], dim=-1))

    def matrix(self) -> torch.Tensor:
        """(..., 4, 4) homogeneous matrices."""
        if _recording(self.data):
            return self._lie.matrix()
        x, y, z, w = self.data[..., 3:].unbind(-1)
        tx, ty, tz = self.data[..., :3].unbind(-1)
        one, zero = torch.ones_like(x), torch.zeros_like(x)
        return torch.stack(
            [
                1 - 2 * (y * y + z * z),
                2 * (x * y - z * w),
                2 * (x * z + y * w),
                tx,
                2 * (x * y + z * w),
                1 - 2 * (x * x + z * z),
                2 * (y * z - x * w),
                ty,
                2 * (x * z - y * w),
                2 * (y * z + x * w),
                1 - 2 * (x * x + y * y),
                tz,
                zero,
                zero,
                zero,
                one,
            ],
            dim=-1,
        ).view(*x.shape, 4, 4)

    def rotation(self) -> torch.Tensor:
        """(..., 3, 3) rotation matrices."""
        return self.matrix()[..., :3, :3]

    def translation(self) -> torch.Tensor:
        """(..., 3) translations."""
        return self.data[..., :3]

    def act(self, points: torch.Tensor) -> torch.Tensor:
        """Transform (..., 3) points: ``R p + t``. The transform's shape must broadcast against the
        points' leading dimensions (e.g. poses (B, 1, 1) with points (B, H, W, 3))."""
        matrix = self.matrix()
        R = matrix[..., :3, :3]
        # t + sum_k p_k R[:, k]: three broadcast multiply-adds, several times faster on CPU than a
        # batch of small matrix products (one per point)
        moved = torch.addcmul(matrix[..., :3, 3], points[..., 0:1], R[..., 0])
        moved = torch.addcmul(moved, points[..., 1:2], R[..., 1])
        return torch.addcmul(moved, points[..., 2:3], R[..., 2])

    def adj(self, xi: torch.Tensor) -> torch.Tensor:
        """Adjoint action on (..., 6) tangent vectors: ``X exp(xi) X^-1 = exp(adj(xi))``."""
        return self._lie.Adj(pp.se3(xi)).tensor()

    def adj_matrix(self) -> torch.Tensor:
        """(..., 6, 6) adjoint matrix ``[[R, [t]x R], [0, R]]`` for the ``[tau, phi]`` ordering."""
        matrix = self.matrix()
        R, t = matrix[..., :3, :3], matrix[..., :3, 3]
        out = torch.zeros(*R.shape[:-2], 6, 6, dtype=R.dtype, device=R.device)
        out[..., :3, :3] = R
        out[..., 3:, 3:] = R
        out[..., :3, 3:] = skew(t) @ R
        return out

    def retr(self, xi: torch.Tensor) -> SE3:
        """Left retraction: ``exp(xi) * self``."""
        return SE3.exp(xi) * self

    def tum(self) -> torch.Tensor:
        """(..., 7) TUM values ``tx ty tz qx qy qz qw`` with ``qw >= 0``."""
        sign = torch.where(self.data[..., 6:] < 0, -1.0, 1.0).to(self.data.dtype)
        return torch.cat([self.data[..., :3], self.data[..., 3:] * sign], dim=-1)

    # ------------------------------------------------------------------ tensor-like helpers
    @property
    def shape(self) -> torch.Size:
        return self.data.shape[:-1]

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index) -> SE3:
        if isinstance(index, tuple):
            return SE3(self.data[index + (slice(None),)])
        return SE3(self.data[index])

    def view(self, *shape: int) -> SE3:
        return SE3(self.data.reshape(*shape, 7))

    def to(self, *args, **kwargs) -> SE3:
        return SE3(self.data.to(*args, **kwargs))

    def detach(self) -> SE3:
        return SE3(self.data.detach())

    def clone(self) -> SE3:
        return SE3(self.data.clone())

    @staticmethod
    def stack(transforms: Sequence[SE3], dim: int = 0) -> SE3:
        return SE3(torch.stack([t.data for t in transforms], dim=dim))

    def __repr__(self) -> str:
        return f"SE3(shape={tuple(self.shape)}, data={self.data})"


def _recording(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an operation on ``tensors`` (then pypose's operators run, with
    their gradient conventions)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _quaternion_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of (..., 4) quaternions ``[x, y, z, w]`` (broadcast)."""
    ax, ay, az, aw = a.unbind(-1)
    bx, by, bz, bw = b.unbind(-1)
    return torch.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        dim=-1,
    )


def _rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(..., 3) vectors rotated by (..., 4) unit quaternions ``[x, y, z, w]`` (broadcast):
    ``v + 2 w (u x v) + 2 u x (u x v)`` with ``u = [x, y, z]``."""
    u, w = q[..., :3], q[..., 3:]
    u, v = torch.broadcast_tensors(u, v)
    uv = torch.linalg.cross(u, v)
    return v + 2.0 * (w * uv + torch.linalg.cross(u, uv))


def _exp(xi: torch.Tensor) -> torch.Tensor:
    """(..., 7) ``[t, q]`` of ``exp`` of (..., 6) ``[tau, phi]``, pypose's formulas (a Taylor
    expansion below machine epsilon): ``q = [sin(theta/2) phi / theta, cos(theta/2)]``,
    ``t = J_l(phi) tau = tau + a phi x tau + b phi x (phi x tau)`` with theta = |phi|,
    ``a = (1 - cos theta) / theta^2``, ``b = (theta - sin theta) / theta^3``."""
    tau, phi = xi[..., :3], xi[..., 3:]
    theta = phi.norm(dim=-1, keepdim=True)
    theta2 = theta.square()
    large = theta > torch.finfo(theta.dtype).eps
    safe = torch.where(large, theta, torch.ones_like(theta))  # no division by zero in the unused branch
    imaginary = torch.where(large, torch.sin(0.5 * safe) / safe, 0.5 - theta2 / 48.0 + theta2.square() / 3840.0)
    real = torch.where(large, torch.cos(0.5 * safe), 1.0 - theta2 / 8.0 + theta2.square() / 384.0)
    a = torch.where(large, (1.0 - torch.cos(safe)) / safe.square(), 0.5 - theta2 / 24.0)
    b = torch.where(large, (safe - torch.sin(safe)) / (safe * safe.square()), 1.0 / 6.0 - theta2 / 120.0)
    phi_tau = torch.linalg.cross(phi, tau)
    translation = tau + a * phi_tau + b * torch.linalg.cross(phi, phi_tau)
    return torch.cat([translation, phi * imaginary, real], dim=-1)


def _normalised(data: torch.Tensor) -> torch.Tensor:
    """``[t, q]`` with q scaled to unit norm: products of transforms drift off the group in
    float32 (a 2% norm error after a few hundred compositions skews every rotation by degrees).
    The gradient passes straight through, as pypose's own gradients expect a unit quaternion."""
    quaternion = data[..., 3:]
    unit = quaternion / quaternion.norm(dim=-1, keepdim=True)
    return torch.cat([data[..., :3], quaternion + (unit - quaternion).detach()], dim=-1)


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) vectors to (..., 3, 3) cross-product matrices: ``skew(a) @ b == a x b``."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*v.shape[:-1], 3, 3)
