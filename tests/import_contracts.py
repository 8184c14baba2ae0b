"""tandem's own import-linter contract type (registered in ``pyproject.toml``).

``private_modules``: a private module (a dotted name with a segment starting with one
underscore, like ``tandem.workers.backends._bundled``) may be imported only from inside
the package that holds it (here ``tandem.workers.backends`` and its subpackages). Other
packages use that package's public face (``tandem.workers.backends``), so its inside can
change without breaking them. import-linter has no such contract built in (its module
expressions cannot match ``_*``), hence this one.

Not a test module (pytest collects ``test_*.py`` only); ``tests/test_import_contracts.py``
runs ``lint-imports``, which loads this class.
"""

from __future__ import annotations

from typing import Any

import grimp
from importlinter import Contract, ContractCheck, fields, output


def _private_parent(module: str) -> str | None:
    """The package that owns ``module``'s first private segment, or ``None`` if public."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


class PrivateModulesContract(Contract):
    """Private modules are imported only from inside the package that holds them.

    Options:
        containers: The packages whose imports are checked (importers and imported).
    """

    type_name = "private_modules"

    containers = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        containers: list[str] = list(self.containers)  # type: ignore[call-overload]
        illegal: list[dict[str, Any]] = []
        for imported in sorted(graph.modules):
            owner = _private_parent(imported)
            if owner is None or not any(_inside(imported, c) for c in containers):
                continue
            for importer in sorted(graph.find_modules_that_directly_import(imported)):
                if _inside(importer, owner):
                    continue
                details = graph.get_import_details(importer=importer, imported=imported)
                illegal.append(
                    {
                        "importer": importer,
                        "imported": imported,
                        "owner": owner,
                        "lines": [d["line_number"] for d in details],
                    }
                )
        return ContractCheck(kept=not illegal, metadata={"illegal": illegal})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for item in check.metadata["illegal"]:
            lines = ", ".join(map(str, item["lines"]))
            output.print_error(
                f"- {item['importer']} -> {item['imported']} (l.{lines}): private to "
                f"{item['owner']}; import it from {item['owner']}'s public modules",
                bold=False,
            )
            output.new_line()
