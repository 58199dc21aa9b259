#!/usr/bin/env python3
"""The layering check: docs/architecture.md's module table is the law, and both the code and the
build must obey it.

  1. every `#include "tessera/<m>/..."` in src/<module>/ and include/tessera/<module>/ names the
     module itself, core, or a module the table lists under "uses" for it (direct edges only: a
     module that wants another's headers says so in the table);
  2. the tessera_<m> libraries each module links in CMakeLists.txt are exactly the table's
     modules for it (core may be implied);
  3. every module edge in the table is used by at least one include (no stale edges).

Run by every build (the `layering_check` target: a forbidden include fails `cmake --build`), by
ctest (`layering`), and with --self-test on a copy of the tree with a forbidden include added
(`layering.forbidden_include_fails`). Exit status 1 and one line per problem.
usage: check_layering.py [--root DIR] [--self-test]
"""
import argparse
import pathlib
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*"(?:tessera/)?(\w+)/[^"]+"', re.M)
# kernels is the one module outside src/: its headers live in kernels/ and are included as
# "kernels/<file>" or "tessera/kernels/<file>".


def parse_table(doc: str):
    """{module: set(modules it uses)} from the `| module | holds | uses |` table."""
    rows = {}
    in_table = False
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] == "module" and cells[2] == "uses":
            in_table = True
            continue
        if not in_table:
            continue
        if not line.startswith("|"):
            break
        if set(cells[0]) <= set("-"):
            continue
        rows[cells[0]] = cells[2]
    modules = set(rows)
    table = {}
    for m, uses in rows.items():
        deps = set()
        for item in uses.split(","):
            words = item.strip().split()
            if words and words[0] in modules:
                deps.add(words[0])
        table[m] = deps
    return table


def parse_cmake(text: str, modules):
    """{module: set(modules it links)} from tessera_module(...) and target_link_libraries(...)."""
    links = {}
    text = re.sub(r"#[^\n]*", "", text)
    for m in re.finditer(r"tessera_module\(\s*(\w+)\s+DEPS\s+([^)]*)\)", text):
        links.setdefault(m.group(1), set()).update(
            d[len("tessera_"):] for d in m.group(2).split()
            if d.startswith("tessera_") and d[len("tessera_"):] in modules)
    for m in re.finditer(r"target_link_libraries\(\s*tessera_(\w+)\s+([^)]*)\)", text):
        if m.group(1) not in modules:
            continue
        links.setdefault(m.group(1), set()).update(
            d[len("tessera_"):] for d in m.group(2).split()
            if d.startswith("tessera_") and d[len("tessera_"):] in modules)
    return links


def module_files(root: pathlib.Path, m: str):
    dirs = [root / "src" / m, root / "include" / "tessera" / m]
    if m == "kernels":
        dirs = [root / "kernels"]
    for d in dirs:
        if d.is_dir():
            for f in sorted(d.rglob("*")):
                if f.suffix in (".h", ".hpp", ".cpp", ".cu", ".cuh"):
                    yield f


def self_test(root: pathlib.Path) -> int:
    """Copies the tree, adds one forbidden include (kv_cache may use only core; it now includes a
    server header) and one stale table edge, and checks that both are reported and fail."""
    import shutil
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        copy = pathlib.Path(tmp)
        for part in ("docs", "src", "include", "kernels"):
            shutil.copytree(root / part, copy / part, ignore=shutil.ignore_patterns("*.o"))
        shutil.copy(root / "CMakeLists.txt", copy / "CMakeLists.txt")
        clean = subprocess.run([sys.executable, __file__, "--root", str(copy)],
                               capture_output=True, text=True)
        if clean.returncode != 0:
            print("self-test: the unmodified copy fails:\n" + clean.stdout)
            return 1
        victim = sorted((copy / "src" / "kv_cache").glob("*.cpp"))[0]
        victim.write_text('#include "tessera/server/http_server.h"\n' + victim.read_text())
        bad = subprocess.run([sys.executable, __file__, "--root", str(copy)],
                             capture_output=True, text=True)
        want = f"src/kv_cache/{victim.name}:1: module 'kv_cache' includes 'server'"
        print(bad.stdout, end="")
        if bad.returncode != 1 or want not in bad.stdout:
            print(f"self-test: the forbidden include was not reported (wanted: {want})")
            return 1
    print("self-test: the forbidden include fails the check, as it must")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=pathlib.Path(__file__).resolve().parent.parent)
    ap.add_argument("--self-test", action="store_true",
                    help="show on a copy of the tree that a forbidden include fails the check")
    args = ap.parse_args()
    root = pathlib.Path(args.root)
    if args.self_test:
        return self_test(root)
    table = parse_table((root / "docs" / "architecture.md").read_text())
    if not table:
        print("layering: no module table in docs/architecture.md")
        return 1
    modules = set(table)
    problems = []
    used = {m: set() for m in modules}
    for m in sorted(modules):
        allowed = table[m] | {m, "core"}
        for f in module_files(root, m):
            for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
                hit = INCLUDE.match(line)
                if not hit or hit.group(1) not in modules:
                    continue
                d = hit.group(1)
                used[m].add(d)
                if d not in allowed:
                    problems.append(f"{f.relative_to(root)}:{n}: module '{m}' includes '{d}' "
                                    f"({line.strip()}), which docs/architecture.md does not let "
                                    f"it use (uses: {', '.join(sorted(table[m])) or 'nothing'})")
    links = parse_cmake((root / "CMakeLists.txt").read_text(), modules)
    kernels_cmake = root / "kernels" / "CMakeLists.txt"
    if kernels_cmake.exists():
        for m, d in parse_cmake(kernels_cmake.read_text(), modules).items():
            links.setdefault(m, set()).update(d)
    for m in sorted(modules):
        linked = links.get(m, set()) - {m}
        for d in sorted(linked - table[m] - {"core"}):
            problems.append(f"CMakeLists.txt: tessera_{m} links tessera_{d}, which "
                            f"docs/architecture.md does not list under its uses")
        for d in sorted(table[m] - linked - {"core"}):
            if m in links:
                problems.append(f"CMakeLists.txt: docs/architecture.md says '{m}' uses '{d}', "
                                f"but tessera_{m} does not link tessera_{d}")
        for d in sorted(table[m] - used[m] - {"core"}):
            problems.append(f"docs/architecture.md: '{m}' lists '{d}' under uses, but no file "
                            f"of {m} includes a {d} header (a stale edge)")
    for p in problems:
        print("layering:", p)
    edges = sum(len(v - {"core"}) for v in table.values())
    print(f"layering: {len(modules)} modules, {edges} edges in the table, "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
