"""The public surface: one import path, sorted __all__, one exception tree."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import redrelay
from redrelay import errors


def test_all_is_sorted_and_complete() -> None:
    public = sorted(name for name in vars(redrelay) if not name.startswith("_"))
    modules = {
        name for name, value in vars(redrelay).items() if inspect.ismodule(value)
    }
    assert redrelay.__all__ == sorted(redrelay.__all__)
    assert set(redrelay.__all__) == set(public) - modules


def test_every_error_is_a_redrelay_error_and_exported() -> None:
    classes = [
        c
        for c in vars(errors).values()
        if inspect.isclass(c) and issubclass(c, Exception)
    ]
    for cls in classes:
        assert issubclass(cls, redrelay.RedrelayError), cls
        assert cls.__name__ in redrelay.__all__, cls
        assert cls.__name__ in (errors.__doc__ or ""), (
            f"{cls.__name__} missing from the drawn tree"
        )
    builtin_names = {"ConnectionError", "TimeoutError"}
    assert not builtin_names & {c.__name__ for c in classes}


def test_argument_errors_are_also_builtin_errors() -> None:
    assert issubclass(redrelay.MessageTooLarge, ValueError)
    assert issubclass(redrelay.InvalidName, ValueError)
    assert issubclass(redrelay.ConfigurationError, ValueError)
    assert issubclass(redrelay.EncodeError, TypeError)


def test_protocol_never_imports_io() -> None:
    import redrelay.protocol

    forbidden = ("redis", "socket", "threading", "asyncio", "flask", "django")
    for info in pkgutil.walk_packages(redrelay.protocol.__path__, "redrelay.protocol."):
        source = inspect.getsource(importlib.import_module(info.name))
        for name in forbidden:
            assert f"import {name}" not in source and f"from {name}" not in source, (
                info.name,
                name,
            )


def test_importing_does_no_io_and_builds_no_relay() -> None:
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise AssertionError('I/O at import')\n"
        "socket.socket.connect = refuse\n"
        "import redrelay, redrelay.testing, redrelay.cli, redrelay.embedded, redrelay.worker.runner\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "ok"


def _glue_imports() -> list[tuple[str, str, str]]:
    """(glue module, imported module, name) for every redrelay import in contrib/."""
    import ast
    from pathlib import Path

    import redrelay.contrib

    root = Path(redrelay.contrib.__path__[0])
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = ["redrelay", "contrib", *path.relative_to(root).with_suffix("").parts]
        package = parts[:-1]  # a module's package; __init__ is its own
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                for alias in node.names:
                    found.append((".".join(parts), module, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    found.append((".".join(parts), alias.name, ""))
    return found


def test_glue_imports_public_names_only() -> None:
    imports = _glue_imports()
    assert ("redrelay.contrib.flask_cli", "redrelay.cli", "Group") in imports
    private = [
        (glue, module, name)
        for glue, module, name in imports
        if module.startswith("redrelay.")
        and not module.startswith("redrelay.contrib")
        and (
            any(part.startswith("_") for part in module.split("."))
            or name.startswith("_")
        )
    ]
    assert private == []


def test_only_the_io_layer_imports_redis() -> None:
    import ast
    from pathlib import Path

    root = Path(redrelay.__path__[0])
    importers = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            if any(name.split(".")[0] == "redis" for name in names):
                importers.add(path.relative_to(root).parts[0])
    assert importers == {"io"}


def test_no_module_over_500_lines() -> None:
    """The house rule (STYLE.md): split a module along its seams before it passes 500."""
    from pathlib import Path

    root = Path(redrelay.__path__[0])
    sizes = {
        str(path.relative_to(root)): len(path.read_text().splitlines())
        for path in root.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 500} == {}
