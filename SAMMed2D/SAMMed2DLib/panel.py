"""Qt pieces both module panels are built from: a titled collapsible form, a selectable status label, a poll timer.

Only the panels import this, inside Slicer (qt and ctk exist there alone); the rest of SAMMed2DLib stays Qt-free.
"""

from __future__ import annotations

from typing import Callable


def collapsibleForm(layout, title: str, collapsed: bool = False):
    """A collapsible section titled ``title`` added to ``layout``; returns the form layout inside it."""
    import ctk
    import qt

    section = ctk.ctkCollapsibleButton()
    section.text = title
    section.collapsed = collapsed
    layout.addWidget(section)
    return qt.QFormLayout(section)


def selectableLabel():
    """A wrapping label whose text (a version, an error to report) the user can select and copy."""
    import qt

    label = qt.QLabel()
    label.wordWrap = True
    label.setTextInteractionFlags(qt.Qt.TextSelectableByMouse)
    return label


def pollTimer(msec: int, onPoll: Callable[[], None]):
    """A timer that brings worker results to the panel every ``msec``; the caller starts it."""
    import qt

    timer = qt.QTimer()
    timer.setInterval(msec)
    timer.connect("timeout()", onPoll)
    return timer


def modelCombo():
    """The registry models the modules offer, labelled for people; the item data is the registry name."""
    import qt

    from .connection import MODEL_CHOICES

    combo = qt.QComboBox()
    for choice in MODEL_CHOICES:
        combo.addItem(choice.label, choice.id)
    return combo


def checkpointEdit():
    """A weights-file picker; both modules keep its history under one setting."""
    import ctk

    edit = ctk.ctkPathLineEdit()
    edit.filters = ctk.ctkPathLineEdit.Files
    edit.nameFilters = ["Checkpoints (*.pth *.pt)", "All files (*)"]
    edit.settingKey = "SAMMed2D/checkpoint"  # the edit keeps its own history there
    edit.toolTip = "Weights file of the chosen model (LiteMedSAM's weights are included)."
    return edit
