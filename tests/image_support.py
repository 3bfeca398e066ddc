"""docker/image_recipe.py for the tests (docker/ is no package), loaded once by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"


def load_recipe_module() -> ModuleType:
    name = "ferry_image_recipe"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "docker" / "image_recipe.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]
