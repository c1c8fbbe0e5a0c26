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
