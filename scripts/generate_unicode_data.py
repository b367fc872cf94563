#!/usr/bin/env python3
"""Writes runtime/unicode_data.cpp: the Unicode character data that CLIP's text cleaning needs,
taken from the Python that the reference tokenizer ran on (Debian 12's Python 3.11, whose
`unicodedata` is Unicode 14.0.0). The C++ side answers exactly as that Python does: general
categories, str.isspace(), str.lower() (with its final-sigma rule, which needs the Cased and
Case_Ignorable properties), and NFC (canonical combining classes, canonical decompositions and
the primary composites).

Cased and Case_Ignorable are not exposed by `unicodedata`; they are read off str.lower() itself,
so they are the sets Python's final-sigma rule really uses:
  lower('A' + c + 'Σ') ends in 'ς'  <=>  c is case-ignorable or cased
  lower('AΣ' + c)[1] == 'ς'        <=>  c is case-ignorable or not cased
so c is case-ignorable exactly when both hold.
Cased is islower() or isupper() or istitle() of the single character (Lowercase, Uppercase, Lt).

Usage: python3 scripts/generate_unicode_data.py > runtime/unicode_data.cpp
"""
import sys
import unicodedata

EXPECTED_UNICODE_VERSION = "14.0.0"
MAX_CODE_POINT = 0x10FFFF
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3  # composed algorithmically, not from tables

CATEGORIES = ["Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps",
              "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs",
              "Co", "Cn"]


def runs(values):
    """(first, last, value) for each maximal run of equal non-None values over all code points."""
    out = []
    start, current = None, None
    for cp in range(MAX_CODE_POINT + 2):
        value = values(cp) if cp <= MAX_CODE_POINT else None
        if value != current:
            if current is not None:
                out.append((start, cp - 1, current))
            start, current = cp, value
    return out


def is_cased(c):
    return c.islower() or c.isupper() or c.istitle()


def is_case_ignorable(c):
    return ("A" + c + "Σ").lower()[-1] == "ς" and ("AΣ" + c).lower()[1] == "ς"


def check_lowercase(chars):
    """Only U+0130 lowercases to more than one character; the C++ side spells that one out."""
    multi = [cp for cp in chars if len(chr(cp).lower()) != 1]
    assert multi == [0x130], [hex(cp) for cp in multi]
    assert chr(0x130).lower() == "i\u0307"


def emit_table(element, name, items):
    """A constexpr array of `element`, items already formatted, wrapped at 100 columns."""
    print(f"constexpr {element} {name}_table[] = {{")
    line = "   "
    for item in items:
        if len(line) + len(item) + 2 > 100:
            print(line)
            line = "   "
        line += f" {item},"
    print(line)
    print("};")
    print()


def hex_range(first, last):
    return f"0x{first:04X}, 0x{last:04X}"


def main():
    if unicodedata.unidata_version != EXPECTED_UNICODE_VERSION:
        sys.exit(f"needs Unicode {EXPECTED_UNICODE_VERSION} (Python 3.11), this Python has "
                 f"{unicodedata.unidata_version}")
    chars = range(MAX_CODE_POINT + 1)

    def category(cp):
        cat = unicodedata.category(chr(cp))
        return None if cat == "Cn" else cat

    categories = runs(category)
    assert {value for _, _, value in categories} <= set(CATEGORIES)
    python_space = runs(lambda cp: True if chr(cp).isspace() else None)
    cased = runs(lambda cp: True if is_cased(chr(cp)) else None)
    case_ignorable = runs(lambda cp: True if is_case_ignorable(chr(cp)) else None)
    check_lowercase(chars)
    lowercase = [(cp, ord(chr(cp).lower())) for cp in chars
                 if cp != 0x130 and chr(cp).lower() != chr(cp)]
    combining = runs(lambda cp: unicodedata.combining(chr(cp)) or None)

    decompositions = []  # (code point, full canonical decomposition)
    compositions = []    # (first, second, primary composite)
    for cp in chars:
        if HANGUL_FIRST <= cp <= HANGUL_LAST:
            continue
        mapping = unicodedata.decomposition(chr(cp))
        if not mapping or mapping.startswith("<"):
            continue
        decompositions.append((cp, [ord(c) for c in unicodedata.normalize("NFD", chr(cp))]))
        parts = [int(p, 16) for p in mapping.split()]
        # A primary composite is what NFC leaves alone: excluded, singleton and non-starter
        # decompositions all change under NFC.
        if len(parts) == 2 and unicodedata.normalize("NFC", chr(cp)) == chr(cp):
            compositions.append((parts[0], parts[1], cp))
    compositions.sort()

    pool = []     # every decomposition, back to back
    entries = []  # (code point, offset into pool, length)
    for cp, sequence in decompositions:
        entries.append((cp, len(pool), len(sequence)))
        pool.extend(sequence)

    tables = [  # (element type, name, formatted items)
        ("category_range", "category_ranges",
         [f"{{{hex_range(f, l)}, {v}}}" for f, l, v in categories]),
        ("code_point_range", "python_space_ranges", [f"{{{hex_range(f, l)}}}" for f, l, _ in python_space]),
        ("code_point_range", "cased_ranges", [f"{{{hex_range(f, l)}}}" for f, l, _ in cased]),
        ("code_point_range", "case_ignorable_ranges",
         [f"{{{hex_range(f, l)}}}" for f, l, _ in case_ignorable]),
        ("combining_class_range", "combining_class_ranges",
         [f"{{{hex_range(f, l)}, {v}}}" for f, l, v in combining]),
        ("code_point_mapping", "lowercase_mappings", [f"{{{hex_range(s, t)}}}" for s, t in lowercase]),
        ("char32_t", "decomposition_pool", [f"0x{v:04X}" for v in pool]),
        ("canonical_decomposition", "decompositions", [f"{{0x{cp:04X}, {o}, {n}}}" for cp, o, n in entries]),
        ("canonical_composition", "compositions",
         [f"{{0x{a:04X}, 0x{b:04X}, 0x{c:04X}}}" for a, b, c in compositions]),
    ]

    print(f"// Generated by scripts/generate_unicode_data.py from the unicodedata of Python "
          f"{sys.version.split()[0]}")
    print(f"// (Unicode {unicodedata.unidata_version}). Do not edit: rerun the script. Tables are "
          "sorted by code point; ranges are")
    print("// inclusive and never overlap. unicode_data.hpp says what each one holds.")
    print('#include "runtime/unicode_data.hpp"')
    print()
    print("namespace ddactor::unicode_data {")
    print()
    print("namespace {")
    print()
    print("using enum general_category;")
    print()
    for element, name, items in tables:
        emit_table(element, name, items)
    print("} // namespace")
    print()
    for element, name, _ in tables:
        print(f"std::span<const {element}> {name}() {{")
        print(f"  return {name}_table;")
        print("}")
        print()
    print("} // namespace ddactor::unicode_data")


if __name__ == "__main__":
    main()
