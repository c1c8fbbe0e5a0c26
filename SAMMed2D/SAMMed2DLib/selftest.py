"""The self-test steps both modules share: a clean scene before each test, and the shipped engine in use."""

from __future__ import annotations

import importlib
import os

from .engine import ENGINE_PACKAGE, engineStatus

#: the engine package that ships with the SAMMed2D module (the training module uses the same one)
SHIPPED_ENGINE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ENGINE_PACKAGE)


class EngineSelfTest:
    """Mixed into each module's ``ScriptedLoadableModuleTest``, which supplies the assertions."""

    def setUp(self) -> None:
        """Start from an empty scene so that tests do not depend on each other."""
        import slicer

        slicer.mrmlScene.Clear()

    def test_EngineVersion(self) -> None:
        """The engine shipped with the module is the one imported, and it reports its version."""
        status = engineStatus()
        self.assertIsNone(status.error)
        engine = importlib.import_module(ENGINE_PACKAGE)
        self.assertEqual(status.version, str(engine.__version__))
        self.assertTrue(os.path.samefile(os.path.dirname(engine.__file__), SHIPPED_ENGINE),
                        f"Slicer imported another {ENGINE_PACKAGE} than the one shipped with the module")
