"""Surgical tools acting on a tissue solver: grasp and pull (spring coupling), poke, cut."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from medverse.core.errors import ConfigError
from medverse.sim.solver import TissueSolver


class ToolMode(StrEnum):
    """What the tool does when it touches tissue."""

    GRASP = "grasp"
    POKE = "poke"
    CUT = "cut"


@dataclass(frozen=True)
class GraspState:
    """Nodes held by the tool and the spring that holds them.

    The coupling is one spring of stiffness ``stiffness`` (N/m) between the tool tip and the
    centroid of the grasped nodes, shared evenly over them (each node gets k/n), so the force on
    the tool is exactly F = k * dx with dx = (centroid + offset at grasp) - tip.

    Attributes:
        nodes: Grasped node indices.
        offsets: Each node's position minus the tip position when grasped (m).
        stiffness: Total coupling stiffness k (N/m).
    """

    nodes: np.ndarray
    offsets: np.ndarray
    stiffness: float

    def force_on_tool(self, node_positions: np.ndarray, tip: np.ndarray) -> np.ndarray:
        """F = k * dx: the force the grasped tissue puts on the tool (N).

        Args:
            node_positions: Current positions of ``nodes`` (m), in the same order.
            tip: Current tool tip position (m).
        """
        dx = np.mean(node_positions - self.offsets, axis=0) - tip
        return self.stiffness * dx


class SurgicalTool:
    """A tool tip driven by the user (mouse, VR controller, haptic device) against a body.

    Args:
        solver: The body the tool acts on.
        tip_radius: Radius of the rigid tip sphere for poking (m).
        grasp_radius: Nodes within this distance of the tip are grasped (m).
        grasp_stiffness: Total coupling stiffness k of a grasp (N/m).
    """

    def __init__(
        self,
        solver: TissueSolver,
        *,
        tip_radius: float = 0.004,
        grasp_radius: float = 0.008,
        grasp_stiffness: float = 200.0,
    ) -> None:
        if min(tip_radius, grasp_radius, grasp_stiffness) <= 0:
            raise ConfigError("tool radii and grasp stiffness must be > 0")
        self.solver = solver
        self.tip_radius = tip_radius
        self.grasp_radius = grasp_radius
        self.grasp_stiffness = grasp_stiffness
        self.tip = np.zeros(3)
        self.mode = ToolMode.POKE
        self.grasp_state: GraspState | None = None

    def move_to(self, tip: np.ndarray) -> None:
        """Move the tip; a grasp drags its spring anchors, a poke moves the contact sphere."""
        self.tip = np.asarray(tip, dtype=np.float64).copy()
        if self.grasp_state is not None:
            g = self.grasp_state
            self.solver.move_spring_targets(g.nodes, self.tip + g.offsets)
        elif self.mode == ToolMode.POKE:
            self.solver.set_contact_sphere(self.tip, self.tip_radius)

    def set_mode(self, mode: ToolMode | str) -> None:
        """Switch mode; leaving grasp releases, leaving poke removes the contact sphere."""
        self.mode = ToolMode(mode)
        if self.mode != ToolMode.GRASP:
            self.release()
        if self.mode != ToolMode.POKE:
            self.solver.set_contact_sphere(None)

    def grasp(self) -> GraspState | None:
        """Grasp the free nodes within ``grasp_radius`` of the tip; None if there are none."""
        self.set_mode(ToolMode.GRASP)
        pos = self.solver.positions()
        near = np.linalg.norm(pos - self.tip, axis=1) <= self.grasp_radius
        near &= self.solver.fixed == 0
        nodes = np.flatnonzero(near)
        if len(nodes) == 0:
            return None
        offsets = pos[nodes] - self.tip
        per_node = self.grasp_stiffness / len(nodes)
        self.solver.set_springs(nodes, per_node, self.tip + offsets)
        self.grasp_state = GraspState(nodes, offsets, self.grasp_stiffness)
        return self.grasp_state

    def release(self) -> None:
        """Let go of the grasped nodes."""
        if self.grasp_state is not None:
            self.solver.set_springs(np.zeros(0, dtype=np.int64), 0.0, np.zeros((0, 3)))
            self.grasp_state = None

    def force(self) -> np.ndarray:
        """The force on the tool now (N): F = k * dx for a grasp, else zero."""
        if self.grasp_state is None:
            return np.zeros(3)
        pos = self.solver.positions()[self.grasp_state.nodes]
        return self.grasp_state.force_on_tool(pos, self.tip)

    def cut(self, blade_start: np.ndarray, blade_end: np.ndarray, sweep: np.ndarray) -> int:
        """Remove the tetrahedra the blade passes through; return how many were removed.

        The blade is the segment ``blade_start``-``blade_end`` moved by ``sweep``; it sweeps a
        flat quad. A tetrahedron is cut when its nodes lie on both sides of the quad's plane and
        its centroid projects inside the quad.
        """
        a, b, d = (np.asarray(v, dtype=np.float64) for v in (blade_start, blade_end, sweep))
        edge = b - a
        normal = np.cross(edge, d)
        if np.linalg.norm(normal) < 1e-12:
            raise ConfigError("the blade must sweep sideways (blade and sweep not parallel)")
        normal /= np.linalg.norm(normal)
        pos = self.solver.positions()
        tets = self.solver.mesh.tets
        side = (pos[tets] - a) @ normal
        straddles = (side.min(axis=1) < 0) & (side.max(axis=1) > 0)
        rel = pos[tets].mean(axis=1) - a
        # coordinates of the centroid in the (edge, sweep) frame of the quad
        basis = np.stack([edge, d], axis=1)
        coords, *_ = np.linalg.lstsq(basis, rel.T, rcond=None)
        inside = np.all((coords >= 0) & (coords <= 1), axis=0)
        return self.solver.remove_tets(straddles & inside)
