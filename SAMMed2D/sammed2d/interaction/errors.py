"""What the interaction refuses, in words for the user: nothing was changed when one of these is raised."""

from __future__ import annotations


class InteractionError(Exception):
    """A request the interaction cannot carry out; ``str()`` says what happened and what to do."""


class ObliqueView(InteractionError):
    """The view's plane is not a slice of the volume's voxel grid, so no slice index exists for it."""
