"""Rehearsals of the open rooms: mesh the study's organ once, run it, route the driver's tool.

A participant starts a rehearsal of a segmented structure (``spleen``, ``liver``...): the
study's newest succeeded job's label map is meshed with ``medverse sim mesh`` (once; the mesh
is kept in the job's results under ``sim/<structure>/``), then a :class:`RoomRehearsal`
streams the deformed surface to the room. The starter drives the tool; every participant,
late joiners included, gets ``rehearsal_start`` and then the frames.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from medverse.core.errors import MedverseError
from medverse.core.logging import get_logger
from medverse.service.db import Database
from medverse.service.errors import NotFoundError, ServiceError
from medverse.service.rooms.hub import Participant, Room
from medverse.service.rooms.messages import encode
from medverse.service.rooms.rehearsal import RoomRehearsal, ToolEvent
from medverse.service.storage import Storage
from medverse.service.tables import Job, JobState
from medverse.sim.materials import material_for, tissue_for_structure
from medverse.sim.mesher import MeshOptions
from medverse.sim.organ_mesh import TETMESH_NAME, mesh_structure
from medverse.sim.tetmesh import TetMesh, read_tetmesh

_LOG = get_logger(__name__)
# Coarse enough to step at 60 Hz beside the service (about 2k nodes for a spleen).
ROOM_MESH = MeshOptions(edge_length_mm=12.0, timeout_s=600.0)
# Share of the organ's depth (from its posterior side) held still: its bed and vessels.
HELD_FRACTION = 0.3


class RehearsalConflictError(ServiceError):
    """A rehearsal is already running (or starting) in this room."""

    status_code = 409


@dataclass
class _Running:
    """One room's rehearsal: the simulation (None while meshing) and its start message."""

    starter: str
    structure: str
    rehearsal: RoomRehearsal | None = None
    start_message: str | None = None


class Rehearsals:
    """The rehearsals of every open room of this process.

    Args:
        db: The service database (to find the study's newest succeeded job).
        storage: Where job results are (the mesh is kept beside them).
    """

    def __init__(self, db: Database, storage: Storage) -> None:
        self.db = db
        self.storage = storage
        self.running: dict[str, _Running] = {}

    def organ_mesh(self, study_id: str, structure: str) -> TetMesh:
        """The study's tet mesh of ``structure`` (RAS mm), meshed on first use.

        Raises:
            NotFoundError: No succeeded job of the study, or no such structure in its labels.
        """
        with self.db.reading() as session:
            job_id = session.scalar(
                select(Job.id)
                .where(Job.study_id == study_id, Job.state == JobState.SUCCEEDED.value)
                .order_by(Job.finished_at.desc())
                .limit(1)
            )
        if job_id is None:
            raise NotFoundError("no finished segmentation of this study to rehearse on")
        results = self.storage.results_dir(job_id)
        out = results / "sim" / structure
        if not (out / TETMESH_NAME).is_file():
            try:
                mesh_structure(results, structure, out, options=ROOM_MESH)
            except MedverseError as error:
                raise NotFoundError(str(error)) from error
        return read_tetmesh(Path(out / TETMESH_NAME))

    async def start(self, room: Room, participant: Participant, structure: str) -> None:
        """Mesh (if needed) and start a rehearsal of ``structure`` driven by ``participant``.

        Raises:
            RehearsalConflictError: One is already running or starting in this room.
            NotFoundError: Nothing to mesh.
        """
        study_id = room.document.study_id
        if study_id in self.running:
            raise RehearsalConflictError("a rehearsal is already running in this room")
        running = self.running[study_id] = _Running(participant.id, structure)
        room.send_all(encode("rehearsal_status", text=f"meshing {structure}…"))
        try:
            mesh = await run_in_threadpool(self.organ_mesh, study_id, structure)
            material = material_for(tissue_for_structure(structure))
        except (MedverseError, ValueError) as error:
            self.running.pop(study_id, None)
            raise NotFoundError(str(error)) from error
        if participant.id not in room.participants:  # the starter left while it was meshed
            self.running.pop(study_id, None)
            return
        loop = asyncio.get_running_loop()

        def send_all(text: str) -> None:  # called from the physics thread
            loop.call_soon_threadsafe(room.send_all, text)

        y = mesh.points[:, 1]
        held = np.flatnonzero(y < y.min() + HELD_FRACTION * (y.max() - y.min()))
        rehearsal = RoomRehearsal(
            mesh, material, driver=participant.id, send_all=send_all, fixed=held
        )
        await run_in_threadpool(rehearsal.start)
        running.rehearsal, running.start_message = rehearsal, rehearsal.start_text

    def drive(self, room: Room, participant: Participant, event: ToolEvent) -> None:
        """Apply the driver's tool event.

        Raises:
            NotFoundError: No rehearsal is running in this room.
            NotDriverError: ``participant`` does not drive it.
        """
        running = self.running.get(room.document.study_id)
        if running is None or running.rehearsal is None:
            raise NotFoundError("no rehearsal is running in this room")
        running.rehearsal.drive(participant.id, event)

    async def stop(self, room: Room, participant: Participant | None = None) -> bool:
        """Stop the room's rehearsal (its starter, or anyone once the starter left); True if so.

        Raises:
            RehearsalConflictError: Another participant started it and is still here.
        """
        study_id = room.document.study_id
        running = self.running.get(study_id)
        if running is None or running.rehearsal is None:
            return False
        others = participant is not None and participant.id != running.starter
        if others and running.starter in room.participants:
            raise RehearsalConflictError("only the participant who started it may stop it")
        self.running.pop(study_id, None)
        await run_in_threadpool(running.rehearsal.stop)
        return True

    def welcome(self, room: Room, participant: Participant) -> None:
        """Queue the running rehearsal's start for a late joiner."""
        running = self.running.get(room.document.study_id)
        if running is not None and running.start_message is not None:
            participant.outbox.put_nowait(running.start_message)

    async def left(self, room: Room, participant: Participant) -> None:
        """The driver left or the room emptied: its rehearsal stops."""
        running = self.running.get(room.document.study_id)
        if running is None:
            return
        if running.starter == participant.id or not room.participants:
            try:
                await self.stop(room)
            except Exception as error:  # the room goes on either way
                _LOG.warning("rehearsal not stopped cleanly: %s", type(error).__name__)
