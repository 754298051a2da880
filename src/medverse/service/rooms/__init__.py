"""Shared 3D rooms: one versioned, persisted document per study, live over a WebSocket."""

from __future__ import annotations

from fastapi import FastAPI

from medverse.service.db import Database
from medverse.service.rooms.hub import RoomHub

__all__ = ["RoomHub", "install_rooms"]


def install_rooms(app: FastAPI, db: Database) -> None:
    """Add the room routes to ``app`` and give it a room hub.

    Args:
        app: The service app.
        db: Its database (room documents are stored there).
    """
    from medverse.service.rooms import router
    from medverse.service.rooms.measure import VolumeMeter
    from medverse.service.rooms.rehearsals import Rehearsals

    app.state.rooms = RoomHub(db, VolumeMeter(db, app.state.storage).volume_ml)
    app.state.rehearsals = Rehearsals(db, app.state.storage)
    app.include_router(router.router)
