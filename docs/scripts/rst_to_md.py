"""Rewrite the reStructuredText in jaxprob's docstrings as the Markdown that mkdocstrings renders.

Usage (from the repository root; re-running on converted files changes nothing)::

    python docs/scripts/rst_to_md.py jaxprob/mixture.py jaxprob/kmeans.py ...
    python docs/scripts/rst_to_md.py --check jaxprob/*.py      # exit 1 if a file would change

What it converts, in every docstring of the file (module, class, function and attribute docstrings):

* ``:math:`x```  -> ``$x$``; ``.. math::`` directives (one-line or block) -> a ``$$ ... $$`` block;
* ``:func:`fit```, ``:class:`~jaxprob.nn.MLP```, ``:mod:``, ``:data:``, ``:meth:``, ``:attr:``, ``:obj:``,
  ``:exc:`` -> a cross-reference ``[`fit`][jaxprob.mixture.fit]`` to the object's documented path (found with
  griffe, the loader mkdocstrings uses; names relative to the module are resolved in it first, then in
  ``jaxprob``). A target that no API page renders (a private helper, a name outside ``__all__``, an object
  without a docstring, another library) becomes plain code and is reported;
* double-backquoted code -> single backquotes;
* reST simple tables (``=====  =====`` borders) -> Markdown pipe tables;
* section titles underlined with ``---``/``===``/``~~~`` -> a bold line.

A docstring that then contains a backslash is written as a raw string (``r\"\"\"...\"\"\"``), and lines that grew
past the line length are wrapped at a space outside maths, code and links (continuation lines of an ``Args:``
item are indented one level deeper). The file is re-parsed afterwards and every docstring is checked to hold
exactly the converted text. Not part of the package; needs griffe (installed with mkdocstrings-python).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINE_LENGTH = 120

ROLE = re.compile(r":(math|func|class|mod|data|meth|attr|obj|exc):`((?:[^`\\]|\\.)+?)`", re.S)
DOUBLE_CODE = re.compile(r"``((?:(?!``).)+?)``", re.S)
TITLED = re.compile(r"^(.*?)\s*<([^>]+)>$", re.S)
ITEM = re.compile(r"^(\s*)([A-Za-z_*][\w*.]*)(\s*\([^)]*\))?:\s")
BULLET = re.compile(r"^(\s*)([*-]|\d+\.)\s")


class Converter:
    """Converts docstrings of one module; `report` collects the targets that could not be linked."""

    def __init__(self, module: str, package):
        self.module = module
        self.package = package
        self.report: list[str] = []

    # ---- cross-references --------------------------------------------------------------------------------------
    def _lookup(self, path: str):
        parts = path.split(".")
        if parts[0] != self.package.name:
            return None
        obj = self.package
        try:
            for part in parts[1:]:
                obj = obj.members[part]
                if obj.is_alias:
                    obj = obj.final_target
        except (KeyError, Exception):  # griffe raises alias-resolution errors of several kinds
            return None
        return obj

    def _rendered(self, obj) -> bool:
        """Whether an API page renders `obj` (public in its parent, with a docstring unless it is a module)."""
        if obj.is_module:
            return not obj.name.startswith("_") and all(not p.startswith("_") for p in obj.path.split("."))
        parent = obj.parent
        if parent is None or not self._rendered(parent) or obj.docstring is None:
            return False
        if parent.is_module:
            return obj.name in (parent.exports or [])
        return not obj.name.startswith("_")

    def resolve(self, target: str) -> str | None:
        target = target.lstrip("~.")
        pkg = self.package.name
        candidates = [target] if target.split(".")[0] == pkg else [f"{self.module}.{target}", f"{pkg}.{target}"]
        for path in candidates:
            obj = self._lookup(path)
            if obj is not None and self._rendered(obj):
                return obj.path
        return None

    def _xref(self, role: str, body: str) -> str:
        title = None
        m = TITLED.match(body)
        if m:
            title, target = m.group(1), m.group(2)
        else:
            target = body
        shown = title or (target.lstrip("~").split(".")[-1] if target.startswith("~") else target.lstrip("."))
        path = self.resolve(target)
        if path is None:
            self.report.append(f"{self.module}: :{role}:`{body}` has no rendered target; left as code")
            return f"`{shown}`"
        return f"[`{shown}`][{path}]"

    # ---- text --------------------------------------------------------------------------------------------------
    def _roles(self, text: str) -> str:
        def sub(m):
            role, body = m.group(1), m.group(2)
            if role == "math":
                return "$" + body.strip() + "$"
            return self._xref(role, " ".join(body.split()))

        return ROLE.sub(sub, text)

    @staticmethod
    def _math_directives(lines: list[str]) -> list[str]:
        out, i = [], 0
        while i < len(lines):
            line = lines[i]
            m = re.match(r"^(\s*)\.\. math::(.*)$", line)
            if not m:
                out.append(line)
                i += 1
                continue
            indent, first = m.group(1), m.group(2).strip()
            body = [first] if first else []
            i += 1
            while i < len(lines):
                nxt = lines[i]
                if nxt.strip() == "":
                    # a blank line ends the one-line form; in the block form it may separate the directive
                    if first or (body and (i + 1 >= len(lines) or _indent(lines[i + 1]) <= len(indent))):
                        break
                    i += 1
                    continue
                if _indent(nxt) <= len(indent):
                    break
                body.append(nxt.strip())
                i += 1
            if out and out[-1].strip():
                out.append("")
            out += [f"{indent}$$", *[f"{indent}{b}" for b in body], f"{indent}$$"]
            if i < len(lines) and lines[i].strip():
                out.append("")
        return out

    @staticmethod
    def _titles(lines: list[str]) -> list[str]:
        out = []
        for i, line in enumerate(lines):
            under = re.fullmatch(r"\s*([-=~^])\1{2,}\s*", line)
            if under and out and out[-1].strip() and len(line.strip()) >= len(out[-1].strip()) - 2 and (
                    i + 1 >= len(lines) or not re.fullmatch(r"\s*=+(\s+=+)+\s*", lines[i + 1] or "")):
                title = out.pop()
                out.append(f"{_lead(title)}**{title.strip()}**")
                out.append("")
                continue
            out.append(line)
        return out

    def _tables(self, lines: list[str]) -> list[str]:
        border = re.compile(r"^\s*=+(\s+=+)+\s*$")
        out, i = [], 0
        while i < len(lines):
            if not border.match(lines[i]):
                out.append(lines[i])
                i += 1
                continue
            indent = _lead(lines[i])
            starts = [m.start() for m in re.finditer(r"=+", lines[i])]
            j = i + 1
            rows, n_borders = [], 1
            while j < len(lines) and n_borders < 3:
                if border.match(lines[j]):
                    n_borders += 1
                elif lines[j].strip():
                    rows.append(lines[j])
                j += 1
            if n_borders < 3:  # not a table with a header: leave it
                out.append(lines[i])
                i += 1
                continue
            cells = [[_slice(r, starts, k) for k in range(len(starts))] for r in rows]
            out.append(indent + "| " + " | ".join(cells[0]) + " |")
            out.append(indent + "|" + "|".join("---" for _ in starts) + "|")
            out += [indent + "| " + " | ".join(c) + " |" for c in cells[1:]]
            i = j
        return out

    def convert(self, doc: str) -> str:
        lines = doc.split("\n")
        lines = self._math_directives(lines)
        lines = self._titles(lines)
        text = "\n".join(self._tables(lines))
        text = self._roles(text)
        return DOUBLE_CODE.sub(lambda m: "`" + m.group(1) + "`", text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _lead(line: str) -> str:
    return line[: _indent(line)]


def _slice(row: str, starts: list[int], k: int) -> str:
    end = starts[k + 1] if k + 1 < len(starts) else None
    return row[starts[k]:end].strip() if len(row) > starts[k] else ""


def _protected(line: str) -> list[tuple[int, int]]:
    """Spans that must not be broken: inline maths, code and the target part of cross-references."""
    spans = []
    for pat in (r"\$[^$]+\$", r"`[^`]+`", r"\[[^\]]*\]\[[^\]]*\]"):
        spans += [(m.start(), m.end()) for m in re.finditer(pat, line)]
    return spans


def wrap_line(line: str, first_col: int, width: int = LINE_LENGTH) -> list[str]:
    """Split `line` (which starts at column `first_col` in the file) at spaces so every piece fits in `width`."""
    out = []
    col = first_col
    cont = _lead(line)
    if ITEM.match(line) or BULLET.match(line):
        cont += "    " if ITEM.match(line) else " " * (len(BULLET.match(line).group(0)) - len(cont))
    while col + len(line) > width:
        spans = _protected(line)
        limit = width - col
        cuts = [i for i, ch in enumerate(line[:limit + 1]) if ch == " " and i > _indent(line)
                and not any(a < i < b for a, b in spans) and line[:i].strip()]
        if not cuts:
            break
        cut = cuts[-1]
        out.append(line[:cut].rstrip())
        line = cont + line[cut + 1:].lstrip()
        col = 0
    out.append(line)
    return out


def _plain(line: str) -> bool:
    """A line that continues a paragraph (text that may take words carried over from the line above)."""
    s = line.strip()
    return bool(s) and not (ITEM.match(line) or BULLET.match(line) or s.startswith(("|", ">>>", "$$", "..."))
                            or s.endswith(":"))


def wrap(doc: str, first_col: int) -> str:
    """Wrap the lines longer than the line length; the words pushed out flow into the paragraph's next line."""
    lines = doc.split("\n")
    result = []
    carry, carry_indent = "", ""
    for n, line in enumerate(lines):
        col = first_col if n == 0 else 0
        if carry:
            if _plain(line) and _lead(line) == carry_indent:
                line = carry_indent + carry + " " + line.lstrip()
            else:
                result.append(carry_indent + carry)
            carry = ""
        if line.lstrip().startswith(("|", ">>>")) or col + len(line) <= LINE_LENGTH:
            result.append(line)
            continue
        pieces = wrap_line(line, col)
        if len(pieces) > 1 and n + 1 < len(lines) and _plain(lines[n + 1]):
            carry_indent = _lead(pieces[-1])
            carry = pieces.pop().strip()
        result += pieces
    if carry:
        result.append(carry_indent + carry)
    return "\n".join(result)


# ---- files -----------------------------------------------------------------------------------------------------
def _docstring_nodes(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            yield node.value


def _offset(lines_start: list[int], lineno: int, col: int) -> int:
    return lines_start[lineno - 1] + col


def _literal(value: str, quote: str) -> str:
    if "\\" in value:
        if quote in value or value.endswith("\\"):
            raise ValueError("cannot write this docstring as a raw string")
        return f"r{quote}{value}{quote}"
    return f"{quote}{value}{quote}"


def module_name(path: Path) -> str:
    rel = path.resolve().relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def convert_file(path: Path, package) -> tuple[str, str, list[str]]:
    """Returns (old source, new source, report)."""
    source = path.read_text()
    tree = ast.parse(source)
    conv = Converter(module_name(path), package)
    edits = []
    # node offsets are in UTF-8 bytes; work on the encoded text
    raw = source.encode()
    starts_b = [0]
    for line in source.encode().splitlines(keepends=True):
        starts_b.append(starts_b[-1] + len(line))
    for node in _docstring_nodes(tree):
        a = _offset(starts_b, node.lineno, node.col_offset)
        b = _offset(starts_b, node.end_lineno, node.end_col_offset)
        literal = raw[a:b].decode()
        m = re.match(r"^([rRuU]*)(\"\"\"|'''|\"|')", literal)
        if m is None:  # implicit concatenation or an f-string: not a docstring to touch
            continue
        quote = m.group(2)
        new_value = conv.convert(node.value)
        first_col = node.col_offset + len(m.group(1).replace("u", "").replace("U", "")) + len(quote) + 1
        new_value = wrap(new_value, first_col)
        if new_value == node.value and ("\\" not in new_value or "r" in m.group(1).lower()):
            continue
        edits.append((a, b, _literal(new_value, quote), new_value))
    out = raw
    for a, b, text, _ in sorted(edits, reverse=True):
        out = out[:a] + text.encode() + out[b:]
    new_source = out.decode()
    check = {n.lineno: n.value for n in _docstring_nodes(ast.parse(new_source))}
    expected = {v for *_, v in edits}
    missing = expected - set(check.values())
    if missing:
        raise RuntimeError(f"{path}: a converted docstring does not read back identically")
    long_lines = [i + 1 for i, line in enumerate(new_source.splitlines()) if len(line) > LINE_LENGTH]
    report = conv.report + [f"{path}:{n}: longer than {LINE_LENGTH} characters" for n in long_lines]
    return source, new_source, report


def main(argv=None) -> int:
    import griffe

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="Python files of the jaxprob package to convert")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    args = parser.parse_args(argv)
    package = griffe.load("jaxprob", search_paths=[str(ROOT)], resolve_aliases=True, resolve_external=False)
    changed = 0
    for path in args.files:
        old, new, report = convert_file(path, package)
        for line in report:
            print(f"  note: {line}")
        if old != new:
            changed += 1
            print(f"{'would convert' if args.check else 'converted'} {path}")
            if not args.check:
                path.write_text(new)
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
