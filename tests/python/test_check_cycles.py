"""infra/check_cycles.py: the workspace has no import cycle between modules,
and the check does fail on one, written the ways Rust writes imports."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "infra" / "check_cycles.py"


def run(*args):
    return subprocess.run([sys.executable, str(CHECK), *map(str, args)], capture_output=True, text=True)


def crate(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_workspace_has_no_import_cycle():
    result = run()
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_cycle_between_siblings_fails(tmp_path):
    c = crate(
        tmp_path,
        {
            "lib.rs": "mod a;\nmod b;\n",
            "a.rs": "use crate::b::Thing;\npub struct Other;\n",
            "b.rs": "pub struct Thing;\nfn f() -> crate::a::Other { todo!() }\n",
        },
    )
    result = run(c)
    assert result.returncode == 1
    assert "src/a.rs -> src/b.rs: Thing" in result.stdout
    assert "src/b.rs -> src/a.rs: Other" in result.stdout


def test_a_cycle_through_super_and_groups_fails(tmp_path):
    c = crate(
        tmp_path,
        {
            "lib.rs": "mod cache;\nmod node;\n",
            "cache/mod.rs": "mod chunks;\nmod budget;\n",
            "cache/chunks.rs": "use super::{budget::{self, decide}, chunks};\n",
            "cache/budget.rs": "use super::chunks::size;\n",
            "node.rs": "use crate::cache;\n",
        },
    )
    result = run(c)
    assert result.returncode == 1
    assert "src/cache/budget.rs -> src/cache/chunks.rs: size" in result.stdout


def test_a_folder_and_its_children_are_one_unit(tmp_path):
    c = crate(
        tmp_path,
        {
            "lib.rs": "pub mod source;\npub mod error;\n",
            "source/mod.rs": "mod origin;\npub use origin::open;\npub struct Source;\n",
            "source/origin.rs": "use super::Source;\nuse crate::error::Error;\npub fn open() {}\n",
            "error.rs": "pub struct Error;\n#[cfg(test)]\nmod tests {\n    use crate::source::Source;\n}\n",
        },
    )
    result = run(c)
    assert result.returncode == 0, result.stdout
