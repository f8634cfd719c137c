"""XSPEC save files (``.xcm``): read and write.

An XCM file is an XSPEC command script (REFERENCE section 9; XSPEC manual,
commands ``save``, ``data``, ``response``, ``arf``, ``ignore``, ``model``,
``newpar``). The reader understands what ``save all`` writes, what the
original nuskybgd writes and what this package writes:

- settings kept verbatim: ``method``, ``abund``, ``xsect``, ``cosmo``,
  ``xset``, ``systematic``, ``query``, ``bayes``, ``weight``, ``chatter``;
  ``statistic`` is parsed;
- ``data <group>:<spectrum> <file> ...``, ``response [<source>:]<spectrum>
  <file>``, ``arf [<source>:]<spectrum> <file>``;
- ``ignore <spectra>:<bins>,... `` (1-based bin numbers, ranges ``a-b``;
  ``<spectra>`` may be a range) and ``ignore bad``;
- ``model [<source>:<name>] <expression>`` followed by one line per
  parameter per data group: ``value [delta [min bottom top max]]`` (a negative
  or zero delta means frozen) or ``= <link>``, where a link is one parameter
  reference (``pN``, ``name:pN``, ``name:N``, or a bare ``N`` alone) times
  and/or divided by numbers (``= apbgd:p3*0.42``, ``=1.2e-01 * apbgd:3``).

Anything else stops the reader with a one-line error naming the file and the
line.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from ..errors import NuskybgdError
from ..parameters import COMPONENT_PARAMS
from .fitsfile import check_input_file
from .output import write_text
from .state import FitState, Link, Param, Source, SpectrumEntry

__all__ = ["read_xcm", "parse_xcm", "format_xcm", "write_xcm", "parse_link", "format_link",
           "check_spectrum_order", "resolve_path"]

_SETTINGS = {"method", "abund", "xsect", "cosmo", "xset", "systematic", "query", "weight",
             "chatter", "parallel", "energies", "setplot"}
_TRAILER = {"bayes"}
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eEdD][-+]?\d+)?"
_NUM_RE = re.compile(rf"^{_NUM}$")
_REF_RE = re.compile(r"^(?:([A-Za-z_][A-Za-z0-9_]*):)?[pP]?(\d+)$")
_SPEC_PAIR = re.compile(r"^(\d+):(\d+)$")
#: value, delta, hard_min, soft_min, soft_max, hard_max of XSPEC gain slope and offset (keV)
_GAIN_DEFAULTS = ((1.0, 0.001, 0.8, 0.8, 1.2, 1.2), (0.0, 0.001, -2.0, -2.0, 2.0, 2.0))
_GAIN_LINK_RE = re.compile(r"^#\s*nuskybgd:\s*gain of spectrum (\d+) linked to spectrum (\d+)")


def _float(tok):
    return float(tok.replace("d", "e").replace("D", "e"))


def parse_link(expr, where="link"):
    """Parse a link expression into a :class:`~nuskybgd.fitting.model.Link`.

    Parameters
    ----------
    expr : str
        Text after ``=``, e.g. ``"apbgd:p3*0.42"``, ``"1.2e-01 * apbgd:3"``,
        ``"p2"``.
    where : str
        Location used in error messages (``"file:line"``).

    Returns
    -------
    Link

    Raises
    ------
    NuskybgdError
        For anything other than one parameter reference multiplied or
        divided by numbers.
    """
    text = expr.strip()
    if not text:
        raise NuskybgdError(f"{where}: empty link expression")
    tokens = re.split(r"\s*([*/])\s*", text)
    terms = tokens[0::2]
    ops = ["*"] + tokens[1::2]
    ref = None
    factor = 1.0
    for op, term in zip(ops, terms):
        term = term.strip()
        if not term:
            raise NuskybgdError(f"{where}: cannot parse link expression '{text}'")
        is_num = _NUM_RE.match(term) is not None
        m = _REF_RE.match(term)
        bare_int = is_num and re.match(r"^\d+$", term) is not None
        if m and not bare_int:
            if ref is not None or op != "*":
                raise NuskybgdError(f"{where}: unsupported link expression '{text}' (one parameter times a number)")
            ref = (m.group(1), int(m.group(2)))
        elif is_num:
            v = _float(term)
            if op == "*":
                factor *= v
            else:
                if v == 0:
                    raise NuskybgdError(f"{where}: division by zero in link expression '{text}'")
                factor /= v
        else:
            raise NuskybgdError(f"{where}: unsupported link expression '{text}' (one parameter times a number)")
    if ref is None:
        if len(terms) == 1 and re.match(r"^\d+$", terms[0].strip()):
            ref = (None, int(terms[0]))
            factor = 1.0
        else:
            raise NuskybgdError(f"{where}: link expression '{text}' names no parameter")
    if ref[1] < 1:
        raise NuskybgdError(f"{where}: link to parameter {ref[1]} (numbers start at 1)")
    if not math.isfinite(factor):
        raise NuskybgdError(f"{where}: link factor of '{text}' is not a finite number")
    return Link(ref[0], ref[1], factor)


def _fmt(x):
    x = float(x)
    if x == int(x) and abs(x) < 1e15:
        return repr(x).replace(".0", "") if repr(x).endswith(".0") else repr(x)
    return repr(x)


def format_link(link):
    """Text of a link after ``= `` (``apbgd:p3*0.42``, ``p2``).

    Parameters
    ----------
    link : Link

    Returns
    -------
    str
        The factor is written with full double precision (shortest text that
        reads back to the same number).
    """
    ref = f"{link.source}:p{link.index}" if link.source else f"p{link.index}"
    if link.factor == 1.0:
        return ref
    return f"{ref}*{_fmt(link.factor)}"


def _param_line(p):
    if p.link is not None:
        return f"= {format_link(p.link)}"
    nums = p.numbers()
    if p.delta == 0:
        nums = (p.value, -0.0, *nums[2:])
    return f"{_fmt(nums[0]):>15}" + "".join(f" {_fmt(x):>10}" for x in nums[1:])


def _ranges_text(ranges):
    return ",".join(f"{a}-{b}" if a != b else f"{a}" for a, b in ranges)


def format_xcm(state):
    """Render a fit state as an XCM file.

    Parameters
    ----------
    state : FitState

    Returns
    -------
    str
        The file text: ``statistic``, data/response/arf blocks, ``ignore``,
        settings, models with one parameter line per parameter per data group,
        trailer. The text is a function of the state only, so writing what
        :func:`parse_xcm` read from our own file gives the same text.
    """
    out = [f"statistic {state.statistic}"]
    for k, s in enumerate(state.spectra):
        if k:
            out.append("")
        out.append(f"data {s.group}:{s.number} {s.file}")
        for src in sorted(set(s.responses) | set(s.arfs)):
            if src in s.responses:
                out.append(f"response  {src}:{s.number} {s.responses[src]}")
            if src in s.arfs:
                out.append(f"arf  {src}:{s.number} {s.arfs[src]}")
    if any(s.ignore_bad for s in state.spectra):
        out.append("ignore bad")
    ign = [f"{s.number}:{_ranges_text(s.ignore)}" for s in state.spectra if s.ignore]
    if ign:
        out.append("ignore " + " ".join(ign))
    out.append("")
    out.extend(state.settings)
    for src in state.sources:
        head = f"{src.number}:{src.name} " if src.name else ""
        out.append(f"model  {head}{src.expression}")
        out.extend(_param_line(p) for p in src.params)
    out.extend(_gain_lines(state))
    out.extend(state.trailer)
    return "\n".join(out) + "\n"


def _gain_lines(state):
    """XSPEC ``gain fit`` blocks: one gain per spectrum, on every response of it."""
    if not any(s.gain for s in state.spectra):
        return []
    out = ["# gain: E' = E/slope - offset on every response of a spectrum (nuskybgd fits one gain per",
           "# spectrum: the responses after the first carry the same values, frozen)"]
    for k, s in enumerate(state.spectra):
        if not s.gain:
            continue
        values = []
        for w in (0, 1):
            p, kk = s.gain[w], k
            seen = 0
            while p.link is not None and seen < 2 * len(state.spectra):
                kk = (p.link.index - 1) // 2
                p = state.spectra[kk].gain[w]
                seen += 1
            values.append((p, kk))
        if s.gain[0].link is not None:
            out.append(f"# nuskybgd: gain of spectrum {s.number} linked to spectrum {state.spectra[values[0][1]].number}")
        srcs = sorted(s.responses) or [1]
        for j, src in enumerate(srcs):
            out.append(f"gain fit {src}:{s.number}")
            for w in (0, 1):
                p = values[w][0]
                q = Param(p.value, p.delta if (j == 0 and s.gain[w].link is None) else -abs(p.delta or 0.001),
                          p.hard_min, p.soft_min, p.soft_max, p.hard_max)
                out.append(_param_line(q))
    return out


def write_xcm(state, path, clobber=False):
    """Write a fit state as an XCM file (atomic, clobber-aware).

    Parameters
    ----------
    state : FitState
    path : str or os.PathLike
    clobber : bool
        Replace an existing file.
    """
    write_text(format_xcm(state), path, clobber=clobber)


def _spec_numbers(tok, nspec, where):
    if re.match(r"^\d+$", tok):
        return [int(tok)]
    m = re.match(r"^(\d+)-(\d+)$", tok)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        if b < a:
            raise NuskybgdError(f"{where}: bad spectrum range '{tok}'")
        return list(range(a, b + 1))
    if tok == "*" or tok == "**":
        return list(range(1, nspec + 1))
    raise NuskybgdError(f"{where}: cannot parse spectrum selection '{tok}'")


def _bin_ranges(text, where):
    out = []
    for part in text.split(","):
        part = part.strip()
        m = re.match(r"^(\d+)(?:-(\d+))?$", part)
        if not m:
            raise NuskybgdError(f"{where}: ignore range '{part}' is not a bin number or range "
                                "(energy ranges are not supported in save files)")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        if b < a:
            raise NuskybgdError(f"{where}: bad bin range '{part}'")
        out.append((a, b))
    return out


def _merge_ranges(ranges):
    out = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def parse_xcm(text, path="<xcm>"):
    """Parse the text of an XCM file.

    Parameters
    ----------
    text : str
        File content.
    path : str
        File name for error messages.

    Returns
    -------
    FitState
        Spectra (sorted by spectrum number), sources in file order, settings
        and trailer lines verbatim.

    Raises
    ------
    NuskybgdError
        ``<path>:<line>: <problem>`` for unknown commands, malformed parameter
        lines or links, or a parameter count that does not fit the number of
        data groups.
    """
    state = FitState(statistic="chi")
    lines = text.splitlines()
    specs = {}
    pending = []  # (kind, src, spec, file, where)
    ignores = []  # (spec, ranges, where)
    ignore_bad = False
    models = []  # (number, name, expr, [(lineno, text)], where)
    gains = []  # (src, spec, [Param, Param], where)
    gain_links = {}  # spectrum -> root spectrum
    i = 0
    while i < len(lines):
        raw = lines[i]
        lineno = i + 1
        where = f"{path}:{lineno}"
        line = raw.strip()
        i += 1
        if not line or line.startswith("#"):
            m = _GAIN_LINK_RE.match(line)
            if m:
                gain_links[int(m.group(1))] = int(m.group(2))
            continue
        toks = line.split()
        cmd = toks[0].lower()
        if cmd == "statistic":
            if len(toks) < 2:
                raise NuskybgdError(f"{where}: 'statistic' without a value")
            state.statistic = " ".join(toks[1:])
        elif cmd == "data":
            args = toks[1:]
            if len(args) % 2 or not args:
                raise NuskybgdError(f"{where}: expected 'data <group>:<spectrum> <file>' pairs")
            for a, f in zip(args[0::2], args[1::2]):
                m = _SPEC_PAIR.match(a)
                if not m:
                    raise NuskybgdError(f"{where}: expected '<group>:<spectrum>' before {f}, got '{a}'")
                g, n = int(m.group(1)), int(m.group(2))
                if g < 1 or n < 1:
                    raise NuskybgdError(f"{where}: data group and spectrum numbers start at 1, got '{a}'")
                if n in specs:
                    raise NuskybgdError(f"{where}: spectrum {n} loaded twice")
                specs[n] = SpectrumEntry(group=g, number=n, file=f)
        elif cmd in ("response", "arf"):
            args = toks[1:]
            if len(args) != 2:
                raise NuskybgdError(f"{where}: expected '{cmd} [<source>:]<spectrum> <file>'")
            m = _SPEC_PAIR.match(args[0])
            if m:
                src, n = int(m.group(1)), int(m.group(2))
            elif re.match(r"^\d+$", args[0]):
                src, n = 1, int(args[0])
            else:
                raise NuskybgdError(f"{where}: cannot parse '{args[0]}' (expected <source>:<spectrum>)")
            pending.append((cmd, src, n, args[1], where))
        elif cmd == "ignore":
            for tok in toks[1:]:
                if tok.lower() == "bad":
                    ignore_bad = True
                    continue
                if ":" not in tok:
                    raise NuskybgdError(f"{where}: ignore '{tok}' names no spectrum (expected <spectra>:<bins>)")
                sel, rng = tok.split(":", 1)
                ignores.append((sel, _bin_ranges(rng, where), where))
        elif cmd == "model":
            rest = line[len(toks[0]):].strip()
            m = re.match(r"^(\d+):([A-Za-z_][A-Za-z0-9_]*)\s+(.+)$", rest)
            if m:
                number, name, expr = int(m.group(1)), m.group(2), m.group(3)
            else:
                if re.match(r"^\d+:", rest):
                    raise NuskybgdError(f"{where}: cannot parse model command '{line}'")
                number, name, expr = 1, None, rest
            if not expr:
                raise NuskybgdError(f"{where}: model without an expression")
            plines = []
            while i < len(lines):
                t = lines[i].strip()
                if t.startswith("=") or (t and _NUM_RE.match(t.split()[0] or "") and
                                         all(_NUM_RE.match(x) for x in t.split())):
                    plines.append((i + 1, t))
                    i += 1
                elif not t:
                    i += 1
                    # a blank line ends the parameter list only if a command follows
                    continue
                else:
                    break
            models.append((number, name, expr, plines, where))
        elif cmd == "gain":
            args = toks[1:]
            if args and args[0].lower() in ("off", "nofit"):
                continue
            fitted = bool(args) and args[0].lower() == "fit"
            if fitted:
                args = args[1:]
            if not args:
                raise NuskybgdError(f"{where}: 'gain' needs [<source>:]<spectrum>")
            m = _SPEC_PAIR.match(args[0])
            if m:
                src, n = int(m.group(1)), int(m.group(2))
            elif re.match(r"^\d+$", args[0]):
                src, n = 1, int(args[0])
            else:
                raise NuskybgdError(f"{where}: cannot parse '{args[0]}' (expected <source>:<spectrum>)")
            pars = []
            if fitted:
                for w in (0, 1):
                    while i < len(lines) and not lines[i].strip():
                        i += 1
                    t = lines[i].strip() if i < len(lines) else ""
                    if not t or not all(_NUM_RE.match(x) for x in t.split()):
                        raise NuskybgdError(f"{where}: 'gain fit' must be followed by the slope and offset lines")
                    full = list(_GAIN_DEFAULTS[w])
                    vals = [_float(x) for x in t.split()][:6]
                    full[:len(vals)] = vals
                    pars.append(Param(*full))
                    i += 1
            else:
                if len(args) != 3:
                    raise NuskybgdError(f"{where}: expected 'gain [<source>:]<spectrum> <slope> <offset>'")
                for w in (0, 1):
                    full = list(_GAIN_DEFAULTS[w])
                    full[0] = _float(args[1 + w])
                    full[1] = -abs(full[1])
                    pars.append(Param(*full))
            gains.append((src, n, pars, where))
        elif cmd in _SETTINGS:
            state.settings.append(" ".join(toks))
        elif cmd in _TRAILER:
            state.trailer.append(" ".join(toks))
        else:
            raise NuskybgdError(f"{where}: unsupported command '{toks[0]}'")
    if not specs:
        raise NuskybgdError(f"{path}: no 'data' command")
    state.spectra = [specs[n] for n in sorted(specs)]
    nspec = len(state.spectra)
    if sorted(specs) != list(range(1, nspec + 1)):
        raise NuskybgdError(f"{path}: spectrum numbers must run 1..{nspec} without gaps, got {sorted(specs)}")
    groups = sorted({s.group for s in state.spectra})
    if groups != list(range(1, len(groups) + 1)):
        raise NuskybgdError(f"{path}: data group numbers must run 1..{len(groups)} without gaps, got {groups}")
    for kind, src, n, f, where in pending:
        if n not in specs:
            raise NuskybgdError(f"{where}: {kind} for spectrum {n}, which is not loaded")
        (specs[n].responses if kind == "response" else specs[n].arfs)[src] = f
    for sel, rng, where in ignores:
        for n in _spec_numbers(sel, nspec, where):
            if n not in specs:
                raise NuskybgdError(f"{where}: ignore for spectrum {n}, which is not loaded")
            specs[n].ignore = _merge_ranges(specs[n].ignore + rng)
    for s in state.spectra:
        s.ignore_bad = ignore_bad
    _attach_gains(state, specs, gains, gain_links, path)
    ngroups = state.n_groups
    for number, name, expr, plines, where in models:
        n = len(plines)
        if n == 0 or n % ngroups:
            raise NuskybgdError(f"{where}: {n} parameter lines do not divide among {ngroups} data groups")
        npar = n // ngroups
        try:
            src = Source.from_expression(number, name, expr, npar)
        except ValueError as exc:
            raise NuskybgdError(f"{where}: {exc}") from None
        defaults = []
        for c in src.components:
            defaults += [d for _, d in COMPONENT_PARAMS.get(c, [])]
        if len(defaults) != npar:
            defaults = [(0.0, 0.01, -1e24, -1e24, 1e24, 1e24)] * npar
        for k, (ln, t) in enumerate(plines):
            pw = f"{path}:{ln}"
            d = defaults[k % npar]
            if t.startswith("="):
                p = Param(*d)
                p.link = parse_link(t[1:], pw)
            else:
                vals = [_float(x) for x in t.split()]
                if not all(math.isfinite(v) for v in vals):
                    raise NuskybgdError(f"{pw}: parameter line with a NaN or infinite number")
                if len(vals) > 6:
                    raise NuskybgdError(f"{pw}: parameter line with {len(vals)} numbers (at most 6)")
                full = list(d)
                full[:len(vals)] = vals
                p = Param(*full)
            src.params.append(p)
        state.sources.append(src)
    names = [s.name for s in state.sources if s.name]
    if len(names) != len(set(names)):
        raise NuskybgdError(f"{path}: two models with the same name")
    # check every link target exists
    for s in state.sources:
        for k in range(len(s.params)):
            state.resolve(s, k)
    state.update_linked_values()
    return state


def _attach_gains(state, specs, gains, gain_links, path):
    """One gain per spectrum from the ``gain`` commands (checked)."""
    first = {}
    for src, n, pars, where in gains:
        if n not in specs:
            raise NuskybgdError(f"{where}: gain on spectrum {n}, which is not loaded")
        if src != 1 and src not in specs[n].responses:
            raise NuskybgdError(f"{where}: gain on response {src}:{n}, which does not exist "
                                f"(spectrum {n} has responses {sorted(specs[n].responses) or [1]})")
        for w, (name, lo, hi) in enumerate((("slope", 0.8, 1.2), ("offset", -2.0, 2.0))):
            v = pars[w].value
            if not lo <= v <= hi:
                unit = " keV" if w else ""
                raise NuskybgdError(f"{where}: gain {name} {v:g}{unit} outside {lo:g}..{hi:g}{unit}")
        if n not in first:
            first[n] = (src, pars, where)
        else:
            p0 = first[n][1]
            if any(abs(a.value - b.value) > 1e-9 * max(1.0, abs(a.value)) for a, b in zip(p0, pars)):
                raise NuskybgdError(f"{where}: gain on response {src}:{n} differs from that on "
                                    f"{first[n][0]}:{n}; nuskybgd applies one gain to all responses of a spectrum")
    for n, (_, pars, _) in first.items():
        specs[n].gain = pars
    numbers = [s.number for s in state.spectra]
    for n, root in gain_links.items():
        if n in specs and root in specs and specs[n].gain and specs[root].gain and n != root:
            for w in (0, 1):
                p = specs[n].gain[w]
                p.link = Link("gain", 2 * numbers.index(root) + w + 1, 1.0)


def read_xcm(path):
    """Read an XCM file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    FitState
        See :func:`parse_xcm`; ``info["xcm_path"]`` holds the path.

    Raises
    ------
    NuskybgdError
        Missing or unreadable file, or unsupported content (one line naming
        the file and line).
    """
    p = check_input_file(path, "XCM file")
    try:
        text = p.read_text(encoding="utf-8", errors="surrogateescape")
    except (OSError, UnicodeDecodeError) as exc:
        raise NuskybgdError(f"{p}: cannot read XCM file ({exc})") from None
    state = parse_xcm(text, str(p))
    state.info["xcm_path"] = str(p)
    return state


def resolve_path(name, base_dir):
    """Resolve a file name from an XCM or bgdinfo relative to a folder.

    Parameters
    ----------
    name : str
    base_dir : str or os.PathLike

    Returns
    -------
    pathlib.Path
        ``name`` itself when absolute, else ``base_dir / name``.
    """
    q = Path(name)
    return q if q.is_absolute() else Path(base_dir) / q


def _same(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def check_spectrum_order(state, bgfiles, xcm_dir, bgdinfo_dir, xcm_path="XCM", bgdinfo_path="bgdinfo"):
    """Check that the XCM's spectra are bgdinfo's background spectra, in order.

    Parameters
    ----------
    state : FitState
        Read from the XCM.
    bgfiles : list of str
        ``bgfiles`` of bgdinfo.json.
    xcm_dir, bgdinfo_dir : str or os.PathLike
        Folders that relative names are relative to.
    xcm_path, bgdinfo_path : str
        Names for messages.

    Raises
    ------
    NuskybgdError
        Naming the first spectrum that differs (or the count mismatch).
    """
    if len(state.spectra) < len(bgfiles):
        raise NuskybgdError(f"{xcm_path}: {len(state.spectra)} spectra but {bgdinfo_path} lists "
                            f"{len(bgfiles)} background spectra")
    for k, (s, b) in enumerate(zip(state.spectra, bgfiles), start=1):
        if not _same(resolve_path(s.file, xcm_dir), resolve_path(b, bgdinfo_dir)):
            raise NuskybgdError(f"{xcm_path}: spectrum {k} is {s.file} but {bgdinfo_path} bgfiles[{k - 1}] is {b}")
