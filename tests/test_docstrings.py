"""Every public function, class and method of the package has a numpydoc docstring.

The test walks every module of :mod:`nuskybgd`, collects the public objects
*defined* there (name without a leading underscore and ``__module__`` equal
to the module, so re-exports are checked once, where they live), and
validates each with :func:`numpydoc.validate.validate` for a focused set of
codes:

* GL08: no docstring;
* SS01, SS03: no summary line, or one that does not end with a period;
* PR01, PR02: a parameter of the signature is not documented, or a
  documented parameter is not in the signature;
* RT01: no Returns section while the body returns a value (numpydoc
  inspects the source for ``return <value>``).

Exemptions, each for a stated reason:

* the task protocol ``add_arguments(parser)`` / ``run(args)`` of the
  modules in :mod:`nuskybgd.tasks` is documented once in that package's
  docstring; these functions need a docstring (GL08, SS01, SS03) but not a
  Parameters or Returns section repeating the protocol 15 times;
* parameters whose name starts with an underscore are private (e.g. a
  recursion depth) and need not be documented;
* properties are attributes: no Parameters or Returns section.

Dataclasses describe their fields under ``Attributes`` (they are fields
first, constructor arguments second): a field documented there counts as a
documented parameter of the generated ``__init__``.

The failure message lists every offending object with its codes.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
import inspect
import pkgutil

import numpydoc.docscrape as docscrape
import numpydoc.validate as numpydoc_validate

import nuskybgd

CODES = ("GL08", "SS01", "SS03", "PR01", "PR02", "RT01")
#: functions of the task protocol (documented in nuskybgd.tasks).
TASK_PROTOCOL = re.compile(r"^nuskybgd\.tasks\.[a-z_]+\.(add_arguments|run)$")


def _modules():
    names = [nuskybgd.__name__]
    for info in pkgutil.walk_packages(nuskybgd.__path__, prefix=nuskybgd.__name__ + "."):
        if info.name.endswith("__main__"):
            continue   # running it is the command line
        names.append(info.name)
    return sorted(names)


def _public_objects():
    """(import path, object) of every public function, class and method defined in the package."""
    out = []
    for modname in _modules():
        mod = importlib.import_module(modname)
        for name, obj in sorted(vars(mod).items()):
            if name.startswith("_") or getattr(obj, "__module__", None) != modname:
                continue
            if inspect.isfunction(obj):
                out.append((f"{modname}.{name}", obj))
            elif inspect.isclass(obj):
                out.append((f"{modname}.{name}", obj))
                for mname, member in sorted(vars(obj).items()):
                    if mname.startswith("_"):
                        continue
                    fn = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                    if inspect.isfunction(fn) or isinstance(member, property):
                        out.append((f"{modname}.{name}.{mname}", member))
    return out


def _dataclass_fields_documented(obj, errors):
    """Drop PR01 for dataclass fields documented under Attributes."""
    if not (inspect.isclass(obj) and dataclasses.is_dataclass(obj)):
        return errors
    # the raw docstring: ClassDoc would fill Attributes with class attributes (fields with defaults)
    doc = docscrape.NumpyDocString(inspect.getdoc(obj) or "")
    documented = set()
    for section in ("Parameters", "Attributes", "Other Parameters"):
        for item in doc[section]:
            for n in item.name.split(","):
                documented.add(n.strip().lstrip("*"))
    fields = {f.name for f in dataclasses.fields(obj) if f.init}
    missing = sorted(fields - documented)
    out = [(c, m) for c, m in errors if c != "PR01"]
    if missing:
        out.append(("PR01", f"fields {missing} not documented"))
    return out


def _public_parameters(errors):
    """Drop underscore-prefixed (private) names from PR01 messages."""
    out = []
    for code, msg in errors:
        if code == "PR01":
            m = re.match(r"Parameters (\{.*\}) not documented", msg)
            if m:
                names = sorted(n for n in ast.literal_eval(m.group(1)) if not n.lstrip("*").startswith("_"))
                if not names:
                    continue
                msg = f"Parameters {names} not documented"
        out.append((code, msg))
    return out


def _problems():
    problems = []
    objects = _public_objects()
    for path, obj in objects:
        res = numpydoc_validate.validate(path)
        errors = [(c, m) for c, m in res["errors"] if c in CODES]
        errors = _public_parameters(_dataclass_fields_documented(obj, errors))
        if isinstance(obj, property) or TASK_PROTOCOL.match(path):
            errors = [(c, m) for c, m in errors if c not in ("RT01", "PR01", "PR02")]
        for code, msg in errors:
            problems.append(f"{path}: {code} {msg}")
    return objects, problems


def test_public_objects_have_numpydoc_docstrings():
    objects, problems = _problems()
    assert len(objects) > 100   # the walk found the package
    assert not problems, f"{len(problems)} docstring problems:\n" + "\n".join(problems)
