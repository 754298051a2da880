"""Warp kernels of the co-rotational tetrahedral FEM and its implicit solve (CPU and CUDA).

Every kernel here compiles into one Warp module, once per device (cached in ~/.cache/warp), so
the kernel count is kept small. Precision is float64 throughout: the force/energy consistency
test needs it, and on the CPU float64 costs about the same as float32 (Warp CPU code is scalar).
"""

# Warp's kernel language uses array constructors as annotations (wp.array(dtype=...)), which
# are not Python types; mypy cannot check this DSL (Warp checks it when it compiles).
# mypy: ignore-errors

from __future__ import annotations

import warp as wp

from medverse.sim.blocks import row_product

# No gradients are taken through these kernels: no adjoint code to compile; -O3 for the CPU.
wp.set_module_options({"enable_backward": False, "optimization_level": 3})

# The inverse Jacobi diagonal is clipped here so an isolated node never divides by zero.
_TINY = wp.constant(wp.float64(1.0e-30))
# Newton's turn is taken where det H > this * tr(B)^3 (H safely positive definite).
_PD_MARGIN = wp.constant(wp.float64(1.0e-3))


@wp.func
def column(m: wp.mat33d, j: int) -> wp.vec3d:
    """Column ``j`` of a 3x3 matrix."""
    return wp.vec3d(m[0, j], m[1, j], m[2, j])


@wp.func
def rotation_turn(f: wp.mat33d, r: wp.mat33d) -> wp.vec4d:
    """The turn omega that moves R towards the rotation maximising tr(R^T F); w = 1 if Newton's.

    With B = F R^T, tr((exp([omega]) R)^T F) = tr(B) + omega . t - omega^T H omega / 2 + ...,
    where t = sum_i r_i x f_i (the torque of Mueller et al.) and H = tr(B) I - sym(B). Where H
    is safely positive definite (always near the solution, for inverted elements too) the turn
    is Newton's, H^-1 t, which converges quadratically; elsewhere (far from it, H indefinite)
    the gradient turn t / tr(B) of Mueller et al., which always heads uphill.
    """
    b = f * wp.transpose(r)
    torque = wp.vec3d(b[2, 1] - b[1, 2], b[0, 2] - b[2, 0], b[1, 0] - b[0, 1])
    tr = wp.trace(b)
    h = tr * wp.identity(n=3, dtype=wp.float64) - wp.float64(0.5) * (b + wp.transpose(b))
    minor = h[0, 0] * h[1, 1] - h[0, 1] * h[1, 0]
    det = wp.determinant(h)
    if h[0, 0] > wp.float64(0.0) and minor > wp.float64(0.0) and det > _PD_MARGIN * tr * tr * tr:
        w = wp.inverse(h) * torque
        return wp.vec4d(w[0], w[1], w[2], wp.float64(1.0))
    w = torque / (wp.abs(tr) + wp.float64(1.0e-12))
    return wp.vec4d(w[0], w[1], w[2], wp.float64(0.0))


@wp.func
def extract_rotation(f: wp.mat33d, q: wp.quatd, iterations: int, settled: wp.float64) -> wp.quatd:
    """Rotation nearest to F, as a quaternion, refined from the guess ``q``.

    Maximises tr(R^T F) over SO(3) (Mueller, Bender, Chentanez & Macklin, "A robust method to
    extract the rotational part of deformations", MIG 2016): the polar rotation for det F > 0
    and the inversion-safe (reflection-free) rotation for an inverted element. Each pass turns
    R by ``rotation_turn``; passes stop after ``iterations``, or once a Newton turn of at most
    ``settled`` rad^2 has been taken (Newton's error after a turn of size d is about c d^2,
    so a small Newton turn leaves the rotation converged), or once a turn is negligible. The
    turn is applied as the quaternion (omega / 2, 1), normalised: a rotation about omega by
    2 atan(|omega| / 2), equal to exp([omega]) to second order (no sin/cos).
    """
    for _ in range(iterations):
        turn = rotation_turn(f, wp.quat_to_matrix(q))
        half = wp.float64(0.5) * wp.vec3d(turn[0], turn[1], turn[2])
        size = wp.float64(4.0) * wp.dot(half, half)
        if size < wp.float64(1.0e-30):
            break
        q = wp.normalize(wp.quatd(half[0], half[1], half[2], wp.float64(1.0)) * q)
        if turn[3] > wp.float64(0.5) and size <= settled:
            break
    return q


@wp.func
def deformation(pos: wp.array(dtype=wp.vec3d), idx: wp.vec4i, dm_inv: wp.mat33d) -> wp.mat33d:
    """Deformation gradient F = Ds Dm^-1 of one tetrahedron."""
    x0 = pos[idx[0]]
    ds = wp.matrix_from_cols(pos[idx[1]] - x0, pos[idx[2]] - x0, pos[idx[3]] - x0)
    return ds * dm_inv


@wp.func
def scatter(out: wp.array(dtype=wp.vec3d), idx: wp.vec4i, h: wp.mat33d, sign: wp.float64):
    """Add the columns of H to nodes 1..3 and minus their sum to node 0, times ``sign``."""
    c0 = wp.vec3d(h[0, 0], h[1, 0], h[2, 0])
    c1 = wp.vec3d(h[0, 1], h[1, 1], h[2, 1])
    c2 = wp.vec3d(h[0, 2], h[1, 2], h[2, 2])
    wp.atomic_add(out, idx[1], sign * c0)
    wp.atomic_add(out, idx[2], sign * c1)
    wp.atomic_add(out, idx[3], sign * c2)
    wp.atomic_add(out, idx[0], -sign * (c0 + c1 + c2))


@wp.kernel
def elastic_forces(
    pos: wp.array(dtype=wp.vec3d),
    tets: wp.array(dtype=wp.vec4i),
    dm_inv: wp.array(dtype=wp.mat33d),
    rest_volume: wp.array(dtype=wp.float64),
    mu: wp.array(dtype=wp.float64),
    lam: wp.array(dtype=wp.float64),
    active: wp.array(dtype=wp.int32),
    rotation: wp.array(dtype=wp.mat33d),
    quaternion: wp.array(dtype=wp.quatd),
    iterations: int,
    settled: wp.float64,
    forces: wp.array(dtype=wp.vec3d),
    energy: wp.array(dtype=wp.float64),
):
    """Co-rotational linear elasticity: forces -dE/dx, rotations R, and the total energy E.

    E = V (mu |F - R|^2 + lam/2 tr(R^T F - I)^2), P = 2 mu (F - R) + lam tr(R^T F - I) R
    (the exact gradient once R is the polar rotation, R^T F symmetric; ``iterations`` rotation
    passes from the stored quaternion get there).
    """
    t = wp.tid()
    if active[t] == 0:
        return
    idx = tets[t]
    f = deformation(pos, idx, dm_inv[t])
    q = extract_rotation(f, quaternion[t], iterations, settled)
    quaternion[t] = q
    r = wp.quat_to_matrix(q)
    rotation[t] = r
    strain_trace = wp.trace(wp.transpose(r) * f) - wp.float64(3.0)
    diff = f - r
    vol = rest_volume[t]
    psi = mu[t] * wp.ddot(diff, diff) + wp.float64(0.5) * lam[t] * strain_trace * strain_trace
    wp.atomic_add(energy, 0, vol * psi)
    p = wp.float64(2.0) * mu[t] * diff + lam[t] * strain_trace * r
    scatter(forces, idx, vol * p * wp.transpose(dm_inv[t]), wp.float64(-1.0))


@wp.kernel
def step_forces(
    pos: wp.array(dtype=wp.vec3d),
    tets: wp.array(dtype=wp.vec4i),
    dm_inv: wp.array(dtype=wp.mat33d),
    rest_volume: wp.array(dtype=wp.float64),
    mu: wp.array(dtype=wp.float64),
    lam: wp.array(dtype=wp.float64),
    active: wp.array(dtype=wp.int32),
    rotation: wp.array(dtype=wp.mat33d),
    quaternion: wp.array(dtype=wp.quatd),
    iterations: int,
    settled: wp.float64,
    forces: wp.array(dtype=wp.vec3d),
):
    """One pass of a time step: elastic forces and this step's rotations (no energy)."""
    t = wp.tid()
    if active[t] == 0:
        return
    idx = tets[t]
    dmi = dm_inv[t]
    f = deformation(pos, idx, dmi)
    q = extract_rotation(f, quaternion[t], iterations, settled)
    quaternion[t] = q
    r = wp.quat_to_matrix(q)
    rotation[t] = r
    strain_trace = wp.trace(wp.transpose(r) * f) - wp.float64(3.0)
    p = wp.float64(2.0) * mu[t] * (f - r) + lam[t] * strain_trace * r
    scatter(forces, idx, rest_volume[t] * p * wp.transpose(dmi), wp.float64(-1.0))


@wp.kernel
def implicit_rhs(
    pos: wp.array(dtype=wp.vec3d),
    vel: wp.array(dtype=wp.vec3d),
    forces: wp.array(dtype=wp.vec3d),
    row_start: wp.array(dtype=wp.int32),
    columns: wp.array(dtype=wp.int32),
    blocks: wp.array(dtype=wp.mat33d),
    mass: wp.array(dtype=wp.float64),
    fixed: wp.array(dtype=wp.int32),
    spring_k: wp.array(dtype=wp.float64),
    spring_target: wp.array(dtype=wp.vec3d),
    gravity: wp.vec3d,
    coeffs: wp.vec4d,
    rhs: wp.array(dtype=wp.vec3d),
):
    """Backward-Euler right-hand side b = h f - (h^2 + h beta) K v - h alpha M v - h^2 k_s v.

    ``coeffs`` = (h, alpha, beta, unused); f holds elastic + gravity + grasp-spring forces.
    """
    i = wp.tid()
    if fixed[i] != 0:
        rhs[i] = wp.vec3d()
        return
    h = coeffs[0]
    m = mass[i]
    ks = spring_k[i]
    f = forces[i] + m * gravity + ks * (spring_target[i] - pos[i])
    k_vel = row_product(vel, row_start, columns, blocks, i)
    damp_v = (h * h + h * coeffs[2]) * k_vel + (h * coeffs[1] * m + h * h * ks) * vel[i]
    rhs[i] = h * f - damp_v


@wp.kernel
def system_product(
    p: wp.array(dtype=wp.vec3d),
    row_start: wp.array(dtype=wp.int32),
    columns: wp.array(dtype=wp.int32),
    blocks: wp.array(dtype=wp.mat33d),
    mass: wp.array(dtype=wp.float64),
    fixed: wp.array(dtype=wp.int32),
    spring_k: wp.array(dtype=wp.float64),
    coeffs: wp.vec4d,
    out: wp.array(dtype=wp.vec3d),
    scalars: wp.array(dtype=wp.float64),
):
    """A p = (1 + h alpha) M p + (h^2 + h beta) K p + h^2 k_s p; accumulates p.Ap in scalars[1].

    K p is the row product of the assembled stiffness blocks (``blocks.row_product``).

    ``coeffs`` = (h, alpha, beta, static): with static = 1, A = K + k_s (no inertia).
    """
    i = wp.tid()
    if fixed[i] != 0:
        out[i] = wp.vec3d()
        return
    h = coeffs[0]
    a_mass = (wp.float64(1.0) + h * coeffs[1]) * mass[i]
    a_stiff = h * h + h * coeffs[2]
    a_spring = h * h * spring_k[i]
    if coeffs[3] > wp.float64(0.5):
        a_mass = wp.float64(0.0)
        a_stiff = wp.float64(1.0)
        a_spring = spring_k[i]
    ap = a_mass * p[i] + a_stiff * row_product(p, row_start, columns, blocks, i) + a_spring * p[i]
    out[i] = ap
    wp.atomic_add(scalars, 1, wp.dot(p[i], ap))


@wp.kernel
def cg_start(
    rhs: wp.array(dtype=wp.vec3d),
    inv_diag: wp.array(dtype=wp.float64),
    x: wp.array(dtype=wp.vec3d),
    r: wp.array(dtype=wp.vec3d),
    z: wp.array(dtype=wp.vec3d),
    p: wp.array(dtype=wp.vec3d),
    scalars: wp.array(dtype=wp.float64),
):
    """X = 0, r = b, z = p = D^-1 r; scalars[0] = r.z (from zero), scalars[3] = b.b."""
    i = wp.tid()
    x[i] = wp.vec3d()
    r[i] = rhs[i]
    zi = inv_diag[i] * rhs[i]
    z[i] = zi
    p[i] = zi
    wp.atomic_add(scalars, 0, wp.dot(rhs[i], zi))
    wp.atomic_add(scalars, 3, wp.dot(rhs[i], rhs[i]))


@wp.kernel
def cg_update(
    inv_diag: wp.array(dtype=wp.float64),
    p: wp.array(dtype=wp.vec3d),
    ap: wp.array(dtype=wp.vec3d),
    x: wp.array(dtype=wp.vec3d),
    r: wp.array(dtype=wp.vec3d),
    z: wp.array(dtype=wp.vec3d),
    scalars: wp.array(dtype=wp.float64),
):
    """X += a p, r -= a Ap, z = D^-1 r with a = r.z / p.Ap; accumulates new r.z and r.r."""
    i = wp.tid()
    alpha = scalars[0] / wp.max(scalars[1], _TINY)
    x[i] = x[i] + alpha * p[i]
    ri = r[i] - alpha * ap[i]
    r[i] = ri
    zi = inv_diag[i] * ri
    z[i] = zi
    wp.atomic_add(scalars, 2, wp.dot(ri, zi))
    wp.atomic_add(scalars, 4, wp.dot(ri, ri))


@wp.kernel
def cg_direction(
    z: wp.array(dtype=wp.vec3d), p: wp.array(dtype=wp.vec3d), scalars: wp.array(dtype=wp.float64)
):
    """P = z + b p with b = new r.z / old r.z."""
    i = wp.tid()
    beta = scalars[2] / wp.max(scalars[0], _TINY)
    p[i] = z[i] + beta * p[i]


@wp.kernel
def cg_roll(scalars: wp.array(dtype=wp.float64)):
    """One thread: old r.z <- new r.z; clear the accumulators for the next iteration."""
    scalars[0] = scalars[2]
    scalars[1] = wp.float64(0.0)
    scalars[2] = wp.float64(0.0)
    scalars[5] = scalars[4]
    scalars[4] = wp.float64(0.0)


@wp.kernel
def integrate(
    pos: wp.array(dtype=wp.vec3d),
    vel: wp.array(dtype=wp.vec3d),
    dv: wp.array(dtype=wp.vec3d),
    fixed: wp.array(dtype=wp.int32),
    h: wp.float64,
    static_step: wp.int32,
):
    """Dynamic: v += dv, x += h v. Static (Newton step): x += dv. Fixed nodes never move."""
    i = wp.tid()
    if fixed[i] != 0:
        vel[i] = wp.vec3d()
        return
    if static_step != 0:
        pos[i] = pos[i] + dv[i]
        return
    v = vel[i] + dv[i]
    vel[i] = v
    pos[i] = pos[i] + h * v


@wp.kernel
def sphere_contact(
    pos: wp.array(dtype=wp.vec3d),
    vel: wp.array(dtype=wp.vec3d),
    fixed: wp.array(dtype=wp.int32),
    sphere: wp.array(dtype=wp.vec4d),
):
    """Push nodes out of the tool's rigid sphere and remove their velocity into it.

    ``sphere[0]`` holds the centre and the radius (radius 0: no tool in contact).
    """
    i = wp.tid()
    s = sphere[0]
    radius = s[3]
    if fixed[i] != 0 or radius <= wp.float64(0.0):
        return
    center = wp.vec3d(s[0], s[1], s[2])
    d = pos[i] - center
    dist = wp.length(d)
    if dist >= radius or dist < wp.float64(1.0e-12):
        return
    n = d / dist
    pos[i] = center + radius * n
    vn = wp.dot(vel[i], n)
    if vn < wp.float64(0.0):
        vel[i] = vel[i] - vn * n


@wp.kernel
def tet_jacobians(
    pos: wp.array(dtype=wp.vec3d),
    tets: wp.array(dtype=wp.vec4i),
    dm_inv: wp.array(dtype=wp.mat33d),
    out: wp.array(dtype=wp.float64),
):
    """Det F per tetrahedron (<= 0: inverted)."""
    t = wp.tid()
    out[t] = wp.determinant(deformation(pos, tets[t], dm_inv[t]))
