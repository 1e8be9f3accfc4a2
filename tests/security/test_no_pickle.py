"""No pickle: nothing redrelay reads from Redis can run code when it is decoded."""

from __future__ import annotations

import ast
import os
import pickle
from pathlib import Path

import pytest

import redrelay
from redrelay import ConfigurationError, DecodeError, Relay
from redrelay.protocol.envelope import MAGIC, decode_entry

PACKAGE = Path(redrelay.__file__).resolve().parent

#: Modules that deserialize into arbitrary objects (code execution on load).
UNSAFE = {
    "pickle",
    "cPickle",
    "_pickle",
    "pickletools",
    "copyreg",
    "dill",
    "cloudpickle",
    "jsonpickle",
    "joblib",
    "marshal",
    "shelve",
}


def _unsafe_imports(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = getattr(func, "id", None) or getattr(func, "attr", None)
            first = node.args[0]
            if called in ("__import__", "import_module") and isinstance(
                first, ast.Constant
            ):
                names = [str(first.value)]
        for name in names:
            if name.split(".")[0] in UNSAFE:
                line = getattr(node, "lineno", 0)
                found.append(f"{path.relative_to(root)}:{line} {name}")
    return found


def test_the_package_imports_no_unsafe_deserializer() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 20, f"found only {len(sources)} files under {PACKAGE}"
    found = [hit for path in sources for hit in _unsafe_imports(path)]
    assert found == [], "unsafe deserializers imported:\n" + "\n".join(found)


def test_the_check_finds_a_pickle_import(tmp_path: Path) -> None:
    """The AST check itself works (every spelling of the import is caught)."""
    source = tmp_path / "redrelay" / "bad.py"
    source.parent.mkdir()
    source.write_text(
        "import pickle\n"
        "from _pickle import loads\n"
        "import os.path, marshal\n"
        "m = __import__('cloudpickle')\n"
        "import importlib\n"
        "d = importlib.import_module('dill')\n"
        "# import pickle in a comment is fine\n"
        "'''and in a docstring: import pickle'''\n"
    )
    hits = _unsafe_imports(source, root=tmp_path)
    assert [hit.split()[-1] for hit in hits] == [
        "pickle",
        "_pickle",
        "marshal",
        "cloudpickle",
        "dill",
    ]


def test_pickle_is_not_a_codec() -> None:
    with pytest.raises(ConfigurationError):
        Relay("redis://127.0.0.1:1", codec="pickle")


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch /tmp/redrelay-pwned",))


def test_a_pickle_in_a_queue_is_raw_bytes_and_never_loaded() -> None:
    payload = pickle.dumps(_Exploit())
    decoded = decode_entry(payload)  # what a consumer does with an entry
    assert decoded.envelope is None and decoded.raw == payload
    # framed as an envelope with an unknown codec kind: refused, not guessed
    with pytest.raises(DecodeError, match="unknown codec kind"):
        decode_entry(MAGIC + b"0:0:p" + payload)
