"""The tissue solver: co-rotational FEM on tetrahedra, backward Euler with a preconditioned CG.

Why backward Euler: soft tissue on a surgical mesh is stiff against the 60 Hz frame step
(h^2 K / M is 10-1000 for millimetre elements), so an explicit scheme would need tens of
substeps per frame and still blow up when a user yanks the tool. One linearised backward-Euler
step per frame (Baraff & Witkin 1998; stiffness warping, Mueller & Gross 2004) is
unconditionally stable for the warped stiffness, which is positive semi-definite by
construction; the linear system (1 + h alpha) M + (h^2 + h beta) K, with K assembled once per
step from that step's rotations (``blocks``), is solved by a Jacobi-preconditioned conjugate
gradient running entirely in Warp kernels (no host sync per iteration, so the same code runs
on CPU and CUDA). A truncated CG from zero never overshoots in energy norm, so a fixed
iteration budget keeps the step stable, just more damped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import warp as wp

from medverse.core.errors import ConfigError
from medverse.sim import blocks as kb
from medverse.sim import kernels as k
from medverse.sim.materials import Material
from medverse.sim.tetmesh import TetMesh

# Rotation-extraction passes per step (warm-started from the last step's rotation), and for
# exact evaluations (energy_and_forces, static solves), which iterate to convergence. A step
# stops after a Newton turn under 0.05 rad (STEP_SETTLED_TURN2 is its square): on the bench's
# pull one such pass leaves the rotations within 3e-6 of converged (four passes of the earlier
# gradient turn left 5e-4).
STEP_ROTATION_PASSES = 2
STEP_SETTLED_TURN2 = 0.05**2
EXACT_ROTATION_PASSES = 100
# Scalars shared by the CG kernels: r.z, p.Ap, new r.z, b.b, r.r (accumulating), last r.r.
_N_SCALARS = 6


@dataclass(frozen=True)
class SolverSettings:
    """Time step, loads and damping of a simulation.

    Attributes:
        dt: Time step in seconds (one step per 60 Hz frame by default).
        gravity: Gravity vector in m/s^2, in the mesh's frame.
        mass_damping: Rayleigh alpha (1/s): damps rigid and slow motion.
        stiffness_damping: Rayleigh beta (s): damps fast elastic oscillation.
        cg_iterations: CG iterations per step (a fixed budget: same cost every frame).
        device: Warp device ("cpu", "cuda:0"); None for Warp's default.
    """

    dt: float = 1.0 / 60.0
    gravity: tuple[float, float, float] = (0.0, 0.0, -9.81)
    mass_damping: float = 2.0
    stiffness_damping: float = 0.01
    cg_iterations: int = 10
    device: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.dt <= 0.1:
            raise ConfigError(f"dt must be in (0, 0.1] s, got {self.dt}")
        if self.mass_damping < 0 or self.stiffness_damping < 0:
            raise ConfigError("damping coefficients must be >= 0")
        if self.cg_iterations < 1:
            raise ConfigError(f"cg_iterations must be >= 1, got {self.cg_iterations}")


class TissueSolver:
    """One deformable body: state on the Warp device, stepped by backward Euler.

    Args:
        mesh: Rest mesh in metres (positively oriented tetrahedra).
        material: Its material (uniform over the body).
        fixed: Indices of nodes held in place (boundary conditions); may be empty.
        settings: Time step, loads, damping, device.

    Raises:
        ConfigError: If the mesh has degenerate tetrahedra.
    """

    def __init__(
        self,
        mesh: TetMesh,
        material: Material,
        *,
        fixed: np.ndarray | None = None,
        settings: SolverSettings | None = None,
    ) -> None:
        wp.init()
        self.settings = settings or SolverSettings()
        self.device = wp.get_device(self.settings.device)
        self.mesh = mesh
        self.material = material
        rest = mesh.points[mesh.tets]
        dm = np.stack([rest[:, c] - rest[:, 0] for c in (1, 2, 3)], axis=2)
        volumes = np.linalg.det(dm) / 6.0
        if np.any(volumes <= 0):
            raise ConfigError(f"{int(np.sum(volumes <= 0))} tetrahedra are flat or inverted")
        self.rest_volume = volumes
        self.active = np.ones(len(mesh.tets), dtype=np.int32)
        self.fixed = np.zeros(len(mesh.points), dtype=np.int32)
        if fixed is not None and len(fixed):
            self.fixed[np.asarray(fixed)] = 1
        self.spring_k = np.zeros(len(mesh.points))
        self._upload(mesh, np.linalg.inv(dm), volumes, material)
        self._update_mass()

    def _array(self, data: np.ndarray, dtype: object) -> wp.array:
        return wp.array(data, dtype=dtype, device=self.device)

    def _upload(self, mesh: TetMesh, dm_inv: np.ndarray, vol: np.ndarray, mat: Material) -> None:
        n, m = len(mesh.points), len(mesh.tets)
        mu, lam = mat.lame
        vec, f64 = wp.vec3d, wp.float64
        self.pos = self._array(mesh.points, vec)
        self.vel = wp.zeros(n, dtype=vec, device=self.device)
        self.tets = self._array(mesh.tets, wp.vec4i)
        self.dm_inv = self._array(dm_inv, wp.mat33d)
        self.vol = self._array(vol, f64)
        self.mu = self._array(np.full(m, mu), f64)
        self.lam = self._array(np.full(m, lam), f64)
        self.active_d = self._array(self.active, wp.int32)
        self.fixed_d = self._array(self.fixed, wp.int32)
        self.rotation = self._array(np.tile(np.eye(3), (m, 1, 1)), wp.mat33d)
        self.quaternion = self._array(np.tile([0.0, 0.0, 0.0, 1.0], (m, 1)), wp.quatd)
        self.spring_k_d = self._array(self.spring_k, f64)
        self.spring_target = wp.zeros(n, dtype=vec, device=self.device)
        self.forces, self.rhs = (wp.zeros(n, dtype=vec, device=self.device) for _ in "ab")
        self.x, self.r, self.z, self.p, self.ap = (
            wp.zeros(n, dtype=vec, device=self.device) for _ in range(5)
        )
        pattern = kb.block_pattern(mesh.tets, n)
        self.row_start = self._array(pattern.row_start, wp.int32)
        self.columns = self._array(pattern.columns, wp.int32)
        self.block_of: wp.array = wp.array(pattern.block_of, dtype=wp.int32, device=self.device)
        self.blocks = wp.zeros(len(pattern.columns), dtype=wp.mat33d, device=self.device)
        self.energy = wp.zeros(1, dtype=f64, device=self.device)
        self.contact_d = wp.zeros(1, dtype=wp.vec4d, device=self.device)  # centre, radius
        self.scalars = wp.zeros(_N_SCALARS, dtype=f64, device=self.device)
        self.inv_diag = wp.zeros(n, dtype=f64, device=self.device)
        self.mass = wp.zeros(n, dtype=f64, device=self.device)
        self._commands: dict[str, wp.Launch] = {}
        self.jacobian = wp.zeros(m, dtype=f64, device=self.device)
        # trace/3 of each node's diagonal stiffness block: rotation-invariant, so the Jacobi
        # preconditioner needs no update while the body rotates
        grads = np.concatenate([-dm_inv.sum(axis=1, keepdims=True), dm_inv], axis=1)
        self._node_stiffness_per_tet = (
            vol[:, None] * (mu + (mu + lam) / 3.0) * (grads**2).sum(axis=2)
        )

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return len(self.mesh.points)

    def positions(self) -> np.ndarray:
        """Current node positions (copy), metres."""
        return np.asarray(self.pos.numpy())

    def set_positions(self, points: np.ndarray) -> None:
        """Overwrite node positions (tests, resets); velocities are zeroed."""
        self.pos.assign(self._array(np.asarray(points, dtype=np.float64), wp.vec3d))
        self.vel.zero_()

    def _update_mass(self) -> None:
        """Lumped masses of active tetrahedra; nodes left without any are frozen (cut away)."""
        act = self.active.astype(bool)
        mass = np.zeros(self.n_nodes)
        np.add.at(mass, self.mesh.tets[act].ravel(), np.repeat(self.rest_volume[act] / 4.0, 4))
        self.mass_np = mass * self.material.density_kg_m3
        kdiag = np.zeros(self.n_nodes)
        np.add.at(kdiag, self.mesh.tets[act].ravel(), self._node_stiffness_per_tet[act].ravel())
        self.kdiag_np = kdiag
        orphan = self.mass_np == 0
        self.fixed[orphan] = 1
        self.mass.assign(self._array(self.mass_np, wp.float64))
        self.fixed_d.assign(self._array(self.fixed, wp.int32))
        self.active_d.assign(self._array(self.active, wp.int32))
        self._diag_mode: tuple[float, bool] | None = None

    def _set_diagonal(self, static: bool) -> None:
        h, s = self.settings.dt, self.settings
        mode = (h, static)
        if self._diag_mode == mode:
            return
        if static:
            diag = self.kdiag_np + self.spring_k
        else:
            diag = (
                (1 + h * s.mass_damping) * self.mass_np
                + (h * h + h * s.stiffness_damping) * (self.kdiag_np)
                + h * h * self.spring_k
            )
        inv = np.where(diag > 0, 1.0 / np.maximum(diag, 1e-300), 0.0)
        inv[self.fixed.astype(bool)] = 0.0
        self.inv_diag.assign(self._array(inv, wp.float64))
        self._diag_mode = mode

    # -- boundary conditions and tools -----------------------------------------------------
    def set_springs(self, nodes: np.ndarray, stiffness: float, targets: np.ndarray) -> None:
        """Attach ``nodes`` to ``targets`` by springs of ``stiffness`` N/m each (0 releases)."""
        self.spring_k[:] = 0.0
        self.spring_k[np.asarray(nodes, dtype=np.int64)] = stiffness
        self.spring_k_d.assign(self._array(self.spring_k, wp.float64))
        self.move_spring_targets(nodes, targets)
        self._diag_mode = None

    def move_spring_targets(self, nodes: np.ndarray, targets: np.ndarray) -> None:
        """Move the spring anchors of ``nodes`` (the grasping tool moved)."""
        full = np.zeros((self.n_nodes, 3))
        full[np.asarray(nodes, dtype=np.int64)] = targets
        self.spring_target.assign(self._array(full, wp.vec3d))

    def remove_tets(self, mask: np.ndarray) -> int:
        """Deactivate the tetrahedra where ``mask`` is true (cutting); return how many."""
        newly = mask.astype(bool) & self.active.astype(bool)
        self.active[newly] = 0
        if newly.any():
            self._update_mass()
        return int(newly.sum())

    def fix_nodes(self, nodes: np.ndarray) -> None:
        """Hold ``nodes`` where they are."""
        self.fixed[np.asarray(nodes, dtype=np.int64)] = 1
        self.fixed_d.assign(self._array(self.fixed, wp.int32))
        self._diag_mode = None

    # -- mechanics -------------------------------------------------------------------------
    def _launch(self, kernel: object, dim: int, inputs: Sequence[object]) -> None:
        wp.launch(kernel, dim=dim, inputs=inputs, device=self.device)

    def _run(self, name: str, kernel: object, dim: int, inputs: Sequence[object]) -> None:
        """Launch through a recorded command: a fifth of a plain launch's Python overhead.

        Recorded commands keep their arguments, so ``name`` must change whenever an argument
        does; arrays are updated in place (``assign``) so their recorded pointers stay valid.
        """
        command = self._commands.get(name)
        if command is None:
            command = wp.launch(kernel, dim=dim, inputs=inputs, device=self.device, record_cmd=True)
            self._commands[name] = command
        command.launch()  # recording does not run it

    def _tet_args(self) -> list[object]:
        return [self.tets, self.dm_inv, self.vol, self.mu, self.lam, self.active_d, self.rotation]

    def compute_forces(self) -> None:
        """Elastic forces, rotations and energy at the current positions (on the device)."""
        self.forces.zero_()
        self.energy.zero_()
        m = len(self.mesh.tets)
        args = [self.pos, *self._tet_args(), self.quaternion, EXACT_ROTATION_PASSES, 0.0]
        self._launch(k.elastic_forces, m, [*args, self.forces, self.energy])

    def energy_and_forces(self) -> tuple[float, np.ndarray]:
        """Elastic energy (J) and elastic forces -dE/dx (N) at the current positions."""
        self.compute_forces()
        return float(self.energy.numpy()[0]), np.asarray(self.forces.numpy())

    def _assemble(self) -> None:
        """Assemble the warped stiffness K at the stored rotations into ``self.blocks``."""
        self.blocks.zero_()
        args = [self.dm_inv, self.vol, self.mu, self.lam, self.active_d, self.rotation]
        args += [self.block_of, self.blocks]
        self._run("assemble", kb.assemble_blocks, len(self.mesh.tets), args)

    def _blocks(self) -> list[object]:
        return [self.row_start, self.columns, self.blocks]

    def _cg(
        self, coeffs: wp.vec4d, iterations: int, stop_rr: float = 0.0, *, static: bool = False
    ) -> int:
        """Solve A x = rhs into ``self.x``; stop early once r.r <= ``stop_rr`` (if given)."""
        n = self.n_nodes
        mode = "static" if static else "dynamic"
        self.scalars.zero_()
        cg_vectors = [self.rhs, self.inv_diag, self.x, self.r, self.z, self.p, self.scalars]
        self._run("cg_start", k.cg_start, n, cg_vectors)
        if stop_rr and self.scalars.numpy()[3] <= stop_rr:
            return 0
        sys_args = [*self._blocks(), self.mass, self.fixed_d, self.spring_k_d, coeffs, self.ap]
        update_args = [self.inv_diag, self.p, self.ap, self.x, self.r, self.z, self.scalars]
        for it in range(1, iterations + 1):
            self._run(f"system_{mode}", k.system_product, n, [self.p, *sys_args, self.scalars])
            self._run("cg_update", k.cg_update, n, update_args)
            self._run("cg_direction", k.cg_direction, n, [self.z, self.p, self.scalars])
            self._run("cg_roll", k.cg_roll, 1, [self.scalars])
            if stop_rr and it % 25 == 0 and self.scalars.numpy()[5] <= stop_rr:
                return it
        return iterations

    def step(self) -> None:
        """Advance one time step: forces, backward-Euler solve, integrate, tool contact.

        The step's launches are recorded once as a Warp graph (CUDA graph, or on the CPU
        Warp's replayed launch list) and replayed each call: one native call per step, which
        also releases the GIL for the whole step, so a haptic thread is never kept waiting.
        """
        self._set_diagonal(static=False)
        if self._graph is None:
            self._step_launches()  # this step; it also loads the kernels and records commands
            self._graph = self._capture()
        elif isinstance(self._graph, wp.Graph):
            wp.capture_launch(self._graph)
        else:
            self._step_launches()

    def _capture(self) -> wp.Graph | bool:
        """Record (not run) the step as a graph; False where this device cannot."""
        try:
            wp.capture_begin(device=self.device)
        except RuntimeError:
            return False
        try:
            self._step_launches()
        finally:
            graph = wp.capture_end(device=self.device)
        return graph

    def _step_launches(self) -> None:
        s, n = self.settings, self.n_nodes
        self.forces.zero_()
        passes = [STEP_ROTATION_PASSES, STEP_SETTLED_TURN2]
        forces_args = [self.pos, *self._tet_args(), self.quaternion, *passes]
        self._run("step_forces", k.step_forces, len(self.mesh.tets), [*forces_args, self.forces])
        self._assemble()
        coeffs = wp.vec4d(s.dt, s.mass_damping, s.stiffness_damping, 0.0)
        self._run("rhs_dynamic", k.implicit_rhs, n, [*self._rhs_args(), coeffs, self.rhs])
        self._cg(coeffs, s.cg_iterations)
        integrate_args = [self.pos, self.vel, self.x, self.fixed_d, s.dt, 0]
        self._run("integrate_dynamic", k.integrate, n, integrate_args)
        contact_args = [self.pos, self.vel, self.fixed_d, self.contact_d]
        self._run("contact", k.sphere_contact, n, contact_args)

    _graph: wp.Graph | bool | None = None

    def set_contact_sphere(self, center: np.ndarray | None, radius: float = 0.0) -> None:
        """Make a rigid sphere (the tool tip) push tissue out of it; None removes it."""
        sphere = (0.0, 0.0, 0.0, 0.0) if center is None else (*map(float, center), radius)
        self.contact_d.assign(self._array(np.asarray([sphere], dtype=np.float64), wp.vec4d))

    def _rhs_args(self) -> list[object]:
        return [
            self.pos,
            self.vel,
            self.forces,
            *self._blocks(),
            self.mass,
            self.fixed_d,
            self.spring_k_d,
            self.spring_target,
            wp.vec3d(*self.settings.gravity),
        ]

    def solve_static(
        self, *, newton_iterations: int = 6, tolerance: float = 1e-9, max_cg: int = 20000
    ) -> int:
        """Move to static equilibrium under gravity and springs (Newton with CG); CG count.

        Inertia and damping are left out: A = K + k_s, b = f. Every solve, and Newton itself,
        stops once the residual is ``tolerance`` times the first Newton step's residual.
        Velocities are zeroed.
        """
        self.vel.zero_()
        self._set_diagonal(static=True)
        coeffs = wp.vec4d(1.0, 0.0, 0.0, 1.0)
        total, stop_rr = 0, 0.0
        for _ in range(newton_iterations):
            self.compute_forces()
            self._assemble()
            self._launch(k.implicit_rhs, self.n_nodes, [*self._rhs_args(), coeffs, self.rhs])
            if not stop_rr:
                b = self.rhs.numpy()
                stop_rr = tolerance**2 * max(float(np.sum(b * b)), 1e-300)
            done = self._cg(coeffs, max_cg, stop_rr, static=True)
            if done == 0:
                break
            total += done
            self._launch(
                k.integrate, self.n_nodes, [self.pos, self.vel, self.x, self.fixed_d, 1.0, 1]
            )
        self._diag_mode = None
        return total

    def inverted_count(self) -> int:
        """Active tetrahedra with det F <= 0 (inverted or flat)."""
        self._launch(
            k.tet_jacobians, len(self.mesh.tets), [self.pos, self.tets, self.dm_inv, self.jacobian]
        )
        det = self.jacobian.numpy()
        return int(np.sum((det <= 0) & self.active.astype(bool)))
